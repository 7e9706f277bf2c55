"""Calendar providers, one module per `Integration.kind`, found through one registry.

A provider module registers a factory: `@register("graph") def make(integration): ...`.
`provider_for(integration)` is the one place the sync asks for a provider.
"""

from collections.abc import Callable
from importlib import import_module

from .base import CalendarProvider

_FACTORIES: dict[str, Callable[[object], CalendarProvider]] = {}
# Modules that register a kind when imported (imported lazily: they pull in HTTP libraries).
_MODULES = {"graph": "calendarsync.providers.graph"}


def register(kind: str):
    def decorator(factory):
        _FACTORIES[kind] = factory
        return factory

    return decorator


def provider_for(integration) -> CalendarProvider:
    """The provider that reads `integration`'s mailboxes."""
    kind = integration.kind
    if kind not in _FACTORIES and kind in _MODULES:
        import_module(_MODULES[kind])  # a broken install should say so, not "no provider"
    try:
        factory = _FACTORIES[kind]
    except KeyError:
        raise LookupError(f"no calendar provider registered for kind {kind!r}") from None
    return factory(integration)
