"""An integration's life as the admin drives it: connect, Aktiv on and off, remove.

The state changes are methods of `Integration` (each records its one Activity); this module
adds the work each change sets off, through `tasks`.
"""

from . import tasks
from .actors import Actor
from .models import Integration


def connected(integration: Integration, *, actor: Actor, event="connected", **fields) -> bool:
    """The connection is proven (a consent, a verified login): subscribe and sync everyone."""
    changed = integration.connect(actor=actor, event=event, **fields)
    if changed and integration.syncing:
        tasks.start_syncing(integration.users.all())
    return changed


def set_active(integration: Integration, active: bool, *, actor: Actor) -> bool:
    """Aktiv on subscribes every mailbox again and resyncs it; Aktiv off removes the
    integration's One X entries and notification subscriptions (no stale Hänvisning)."""
    if active:
        changed = integration.resume(actor=actor)
        if changed and integration.syncing:
            tasks.start_syncing(integration.users.all())
        return changed
    changed = integration.pause(actor=actor)
    if changed:
        tasks.request_clear(integration)
    return changed


def remove(integration: Integration, *, actor: Actor) -> bool:
    """Start removing the integration; a task deletes what it had, then the integration."""
    changed = integration.start_removal(actor=actor)
    if changed:
        tasks.request_integration_removal(integration)
    return changed
