"""One mailbox's sync: fetch → plan → reconcile → push, and removing a synced user.

Runs of one mailbox never interleave: a run claims the mailbox with a conditional UPDATE of
`sync_started_at` (a claim older than LOCK_STALE_AFTER counts as abandoned). Triggers only
stamp `sync_requested_at` and enqueue a task when none is pending, so a burst of change
notifications costs one run.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from onex.operations import AbsenceWriter, DeleteAbsence

from . import planning, reconcile
from .models import Activity, Integration, SyncedUser
from .providers import provider_for
from .providers.base import CalendarProvider, ConsentRevoked, ProviderError

logger = logging.getLogger(__name__)

LOCK_STALE_AFTER = timedelta(minutes=10)  # well past the Celery task time limit
REQUEST_STALE_AFTER = timedelta(minutes=10)  # a request whose task got lost
DEBOUNCE_SECONDS = 5


def default_writer() -> AbsenceWriter:
    from onex.client import get_client  # the One X client; imported late on purpose

    return get_client()


@dataclass(frozen=True)
class SyncOutcome:
    status: str  # "ok", "busy" (another run holds the mailbox), "inactive", "failed"
    written: int = 0
    deleted: int = 0
    failed: int = 0
    permanent: bool = False  # retrying soon cannot help; recorded on the user instead
    error: str = ""

    @property
    def retry(self) -> bool:
        return self.status == "failed" and not self.permanent


class SyncBusy(Exception):
    """Another run holds the mailbox."""


class RemovalIncomplete(Exception):
    """One X did not delete every entry; the user is kept so a retry can finish the job."""


def claim(synced_user: SyncedUser, now: datetime) -> bool:
    """Take the mailbox's lock; clears the pending request, which this run now serves."""
    return bool(
        SyncedUser.objects.filter(pk=synced_user.pk)
        .filter(Q(sync_started_at__isnull=True) | Q(sync_started_at__lt=now - LOCK_STALE_AFTER))
        .update(sync_started_at=now, sync_requested_at=None)
    )


def release(synced_user: SyncedUser, claimed_at: datetime) -> None:
    # Only our own claim: a run that took over a stale lock keeps its own.
    SyncedUser.objects.filter(pk=synced_user.pk, sync_started_at=claimed_at).update(
        sync_started_at=None
    )


def request_sync(synced_user: SyncedUser, *, countdown: int = DEBOUNCE_SECONDS) -> bool:
    """Mark the mailbox dirty; enqueue a run unless one is already pending. True if enqueued."""
    now = timezone.now()
    first = (
        SyncedUser.objects.filter(pk=synced_user.pk)
        .filter(
            Q(sync_requested_at__isnull=True) | Q(sync_requested_at__lt=now - REQUEST_STALE_AFTER)
        )
        .update(sync_requested_at=now)
    )
    if first:
        from .tasks import sync_mailbox as task

        pk = synced_user.pk
        transaction.on_commit(lambda: task.apply_async((pk,), countdown=countdown))
    return bool(first)


def sync_mailbox(
    synced_user: SyncedUser,
    *,
    provider: CalendarProvider | None = None,
    writer: AbsenceWriter | None = None,
    now: datetime | None = None,
) -> SyncOutcome:
    """Bring One X in step with the mailbox's calendar; the outcome is also recorded on the
    SyncedUser (state, last_error, last_synced_at) and, when something happened, in the log."""
    now = now or timezone.now()
    integration = synced_user.integration
    # A vanished One X subscription keeps the error the directory import recorded.
    if not integration.syncing or not synced_user.subscription.active:
        return SyncOutcome("inactive")
    if not claim(synced_user, now):
        return SyncOutcome("busy")
    try:
        outcome = _run(synced_user, integration, provider, writer, now)
    except Exception as exc:  # an unexpected bug must not leave the mailbox locked
        logger.exception("Sync of synced user %s failed", synced_user.pk)
        outcome = SyncOutcome("failed", error=f"{type(exc).__name__}")
        _record(synced_user, integration, outcome, now)
        raise
    finally:
        release(synced_user, now)
    _record(synced_user, integration, outcome, now)
    return outcome


def _run(synced_user, integration, provider, writer, now) -> SyncOutcome:
    provider = provider or provider_for(integration)
    window_end = now + timedelta(days=integration.days_ahead)
    try:
        items = provider.fetch(
            synced_user.email,
            now,
            window_end,
            include_subject=not integration.all_meetings_private,
        )
    except ConsentRevoked as exc:
        _consent_revoked(integration, exc)
        return SyncOutcome("failed", permanent=True, error=_("The organisation revoked consent."))
    except ProviderError as exc:
        return SyncOutcome("failed", permanent=exc.permanent, error=_provider_message(exc))

    plan = planning.plan_for_synced_user(synced_user, items, now=now)
    operations = reconcile.diff(plan, reconcile.stored_bookings(synced_user))
    if not operations:
        return SyncOutcome("ok")
    writer = writer or default_writer()
    try:
        results = writer.apply(integration.company.onex_id, operations)
    except Exception as exc:  # the whole call failed: nothing was accepted
        permanent = bool(getattr(exc, "permanent", False))
        return SyncOutcome("failed", permanent=permanent, error=_onex_message(exc))
    settlement = reconcile.settle(plan, results)
    reconcile.record(synced_user, settlement, now)
    written, deleted = len(settlement.written), len(settlement.deleted)
    if not settlement.failures:
        return SyncOutcome("ok", written=written, deleted=deleted)
    permanent = settlement.permanent_failures
    first = (permanent or settlement.failures)[0]
    return SyncOutcome(
        "failed",
        written=written,
        deleted=deleted,
        failed=len(settlement.failures),
        # Retry soon only if nothing failed for good: a permanent failure waits for the next
        # periodic run (or a change) instead of a retry storm.
        permanent=bool(permanent),
        error=_("One X refused an absence (%(code)s).") % {"code": first.code or "error"},
    )


def _provider_message(exc: ProviderError) -> str:
    if exc.code == "mailbox_not_found":
        return _("The mailbox was not found.")
    return _("The calendar could not be read (%(code)s).") % {"code": exc.code or "error"}


def _onex_message(exc: Exception) -> str:
    code = getattr(exc, "code", "") or type(exc).__name__
    return _("One X could not be reached (%(code)s).") % {"code": code}


def _consent_revoked(integration: Integration, exc: ProviderError) -> None:
    updated = Integration.objects.filter(pk=integration.pk).exclude(
        status=Integration.Status.CONSENT_REVOKED
    )
    if updated.update(status=Integration.Status.CONSENT_REVOKED, last_error=str(exc)[:500]):
        Activity.record(
            integration,
            "consent_revoked",
            _("The organisation revoked consent; syncing is paused."),
            level=Activity.Level.ERROR,
        )
    integration.status = Integration.Status.CONSENT_REVOKED


def _record(synced_user, integration, outcome: SyncOutcome, now) -> None:
    was = synced_user.state
    if outcome.status == "ok":
        synced_user.state = SyncedUser.State.OK
        synced_user.last_error = ""
        synced_user.last_synced_at = now
    elif outcome.status == "failed":
        synced_user.state = SyncedUser.State.ERROR
        synced_user.last_error = outcome.error
    else:
        return
    synced_user.save(update_fields=["state", "last_error", "last_synced_at"])
    changes = []
    if outcome.written:
        changes.append(
            ngettext("%(n)d absence written", "%(n)d absences written", outcome.written)
            % {"n": outcome.written}
        )
    if outcome.deleted:
        changes.append(
            ngettext("%(n)d absence removed", "%(n)d absences removed", outcome.deleted)
            % {"n": outcome.deleted}
        )
    if outcome.status == "failed":
        Activity.record(
            integration,
            "sync_failed",
            "; ".join([outcome.error, *changes]),
            level=Activity.Level.ERROR if outcome.permanent else Activity.Level.WARNING,
            synced_user=synced_user,
        )
    elif changes or was != SyncedUser.State.OK:
        Activity.record(
            integration,
            "synced",
            "; ".join(changes) or _("In step with the calendar."),
            synced_user=synced_user,
        )


def remove_synced_user(synced_user: SyncedUser, writer: AbsenceWriter | None = None) -> None:
    """Stop syncing a mailbox: delete its One X entries, then its bookings, row and email.

    If One X cannot delete every entry, the user stays (minus the entries that went) and
    RemovalIncomplete is raised so a retry finishes the job. An entry One X no longer knows
    (a permanent failure such as a vanished subscription) counts as deleted.
    """
    now = timezone.now()
    if not claim(synced_user, now):
        raise SyncBusy()
    try:
        subscription_id = synced_user.subscription.onex_id
        operations = [
            DeleteAbsence(subscription_id, external_id)
            for external_id in synced_user.bookings.values_list("external_id", flat=True)
        ]
        if operations:
            writer = writer or default_writer()
            results = writer.apply(synced_user.integration.company.onex_id, operations)
            gone = [r.operation.external_id for r in results if r.ok or r.permanent]
            synced_user.bookings.filter(external_id__in=gone).delete()
            if len(gone) < len(operations):
                raise RemovalIncomplete(f"{len(operations) - len(gone)} entries left")
        integration = synced_user.integration
        synced_user.delete()
    finally:
        release(synced_user, now)
    Activity.record(
        integration,
        "user_removed",
        ngettext(
            "A user was removed; %(n)d One X entry deleted.",
            "A user was removed; %(n)d One X entries deleted.",
            len(operations),
        )
        % {"n": len(operations)},
    )


# Periodic reconcile: spread the runs so thousands of mailboxes do not start in one second.
RECONCILE_SPREAD_SECONDS = 300


def request_all_syncs() -> int:
    """Request a run for every mailbox of every syncing integration; returns how many."""
    users = SyncedUser.objects.filter(
        integration__active=True,
        integration__status__in=[Integration.Status.CONNECTED, Integration.Status.ERROR],
        subscription__active=True,
    ).only("pk")
    requested = 0
    for index, synced_user in enumerate(users.iterator()):
        countdown = DEBOUNCE_SECONDS + index % RECONCILE_SPREAD_SECONDS
        requested += request_sync(synced_user, countdown=countdown)
    return requested
