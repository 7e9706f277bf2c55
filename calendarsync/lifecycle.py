"""An integration's life as the admin drives it: connect, Aktiv on and off, remove.

The state changes are methods of `Integration` (each records its one Activity); this module
adds the work each change sets off, through `tasks`.
"""

from . import tasks
from .models import Integration


def connected(integration: Integration, message: str, *, event="connected", **fields) -> bool:
    """The connection is proven (a consent, a verified login): subscribe and sync everyone."""
    changed = integration.connect(message, event=event, **fields)
    if changed and integration.syncing:
        tasks.start_syncing(integration.users.all())
    return changed


def set_active(integration: Integration, active: bool) -> bool:
    """Aktiv on subscribes every mailbox again and resyncs it; Aktiv off removes the
    integration's One X entries and notification subscriptions (no stale Hänvisning)."""
    if active:
        changed = integration.resume()
        if changed and integration.syncing:
            tasks.start_syncing(integration.users.all())
        return changed
    changed = integration.pause()
    if changed:
        tasks.request_clear(integration)
    return changed


def remove(integration: Integration) -> bool:
    """Start removing the integration; a task deletes what it had, then the integration."""
    changed = integration.start_removal()
    if changed:
        tasks.request_integration_removal(integration)
    return changed
