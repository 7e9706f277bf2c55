"""Calendar providers, one package per `Integration.kind`, found through one registry.

A provider class registers its kind: `@register("graph") class GraphProvider: ...`, built with
`GraphProvider.for_integration(integration)`. `provider_for(integration)` is the one place the
core asks for a provider (tests patch exactly that), `provider_class(kind)` answers what a kind
declares on its class (`bulk_size`, `verified_notices`).
"""

from importlib import import_module

from .base import CalendarProvider, GroupDirectory

_CLASSES: dict[str, type] = {}
# Packages that register a kind when imported (imported on first use: they pull in HTTP
# libraries, and the sync core must not import a provider package).
_MODULES = {
    "graph": "calendarsync.providers.graph.provider",
    "ews": "calendarsync.providers.ews.provider",
}


def register(kind: str):
    def decorator(cls):
        _CLASSES[kind] = cls
        return cls

    return decorator


def provider_class(kind: str) -> type:
    if kind not in _CLASSES and kind in _MODULES:
        import_module(_MODULES[kind])  # a broken install should say so, not "no provider"
    try:
        return _CLASSES[kind]
    except KeyError:
        raise LookupError(f"no calendar provider registered for kind {kind!r}") from None


def provider_for(integration) -> CalendarProvider:
    """The provider that reads and subscribes `integration`'s mailboxes."""
    return provider_class(integration.kind).for_integration(integration)


def bulk_size(kind: str) -> int:
    """How many mailboxes of this kind one bulk read takes (one sync task's chunk)."""
    return provider_class(kind).bulk_size


# Katalog Synk's group reads, a module per kind with `for_integration(integration)`.
_GROUP_MODULES = {
    "graph": "calendarsync.providers.graph.groups",
    "ews": "calendarsync.providers.ews.groups",
}


def groups_for(integration) -> GroupDirectory:
    """The directory that finds `integration`'s groups and reads their members."""
    return import_module(_GROUP_MODULES[integration.kind]).for_integration(integration)
