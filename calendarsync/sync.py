"""A mailbox's sync: fetch → plan → reconcile → push, and removing a synced user.

Runs of one mailbox never interleave: a run claims the mailbox with a conditional UPDATE of
`sync_started_at` (a claim older than LOCK_STALE_AFTER counts as abandoned). Triggers only
stamp `sync_requested_at` and enqueue a task when none is pending, so a burst of change
notifications costs one run.

One mailbox (a change notification) runs alone: `request_sync` → `sync_mailbox`. Many mailboxes
(settings or rules saved, the periodic reconcile, a first sync) run in chunks of up to 20 of
one integration whose calendars are read with one bulk fetch (one Graph $batch):
`request_syncs` → `sync_mailboxes`. Each mailbox still has its own lock and outcome.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from onex.operations import AbsenceWriter, DeleteAbsence

from . import planning, reconcile
from .models import Activity, Integration, SyncedUser
from .notifications import mark_consent_revoked
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
    if not _may_sync(synced_user, integration):
        return SyncOutcome("inactive")
    if not claim(synced_user, now):
        return SyncOutcome("busy")
    return _run_claimed(
        synced_user,
        integration,
        now,
        lambda: _fetch_and_push(synced_user, integration, provider, writer, now),
    )


def sync_mailboxes(
    synced_user_ids,
    *,
    provider: CalendarProvider | None = None,
    writer: AbsenceWriter | None = None,
    now: datetime | None = None,
) -> dict[int, SyncOutcome]:
    """sync_mailbox for a chunk of mailboxes (up to CHUNK_SIZE of one integration), reading
    their calendars with one bulk fetch (one Graph $batch) instead of one read per mailbox.

    Each mailbox keeps its own lock and outcome: a mailbox another run holds is skipped
    ("busy"), an unknown mailbox is that user's error, and a revoked consent pauses the
    integration once. Returns each found user's outcome by id (deleted users are left out).
    """
    now = now or timezone.now()
    users = list(
        SyncedUser.objects.select_related("integration__company", "subscription")
        .filter(pk__in=list(synced_user_ids))
        .order_by("integration_id", "pk")
    )
    outcomes: dict[int, SyncOutcome] = {}
    for _integration_id, group in groupby(users, key=lambda user: user.integration_id):
        group = list(group)
        integration = group[0].integration
        for user in group:
            user.integration = integration  # one object: a consent pause is seen by all
        outcomes.update(_sync_group(group, integration, provider, writer, now))
    return outcomes


def _sync_group(users, integration, provider, writer, now) -> dict[int, SyncOutcome]:
    shared = planning.integration_settings(integration)  # rules and reasons: once per chunk
    outcomes, claimed = {}, []
    for user in users:
        if not _may_sync(user, integration):
            outcomes[user.pk] = SyncOutcome("inactive")
        elif not claim(user, now):
            outcomes[user.pk] = SyncOutcome("busy")
        else:
            claimed.append(user)
    if not claimed:
        return outcomes
    try:
        fetched = _fetch_many(provider or provider_for(integration), claimed, integration, now)
    except ConsentRevoked as exc:
        # The whole integration is paused (one Activity); the users' own states stay as they
        # are: nothing is wrong with their mailboxes, and a new consent resyncs them all.
        mark_consent_revoked(integration, exc)
        for user in claimed:
            release(user, now)
            outcomes[user.pk] = SyncOutcome("inactive")
        return outcomes
    except ProviderError as exc:  # the bulk request failed as a whole (e.g. throttled)
        fetched = {user.email: exc for user in claimed}
    except Exception as exc:  # a bug: record it on every claimed user, free them, surface it
        logger.exception("Bulk read for integration %s failed", integration.pk)
        for user in claimed:
            _record(user, integration, SyncOutcome("failed", error=type(exc).__name__), now)
            release(user, now)
        raise
    for user in claimed:
        result = fetched.get(user.email, ProviderError("no result", code="no_result"))
        outcomes[user.pk] = _run_claimed(
            user,
            integration,
            now,
            lambda user=user, result=result: (
                _fetch_failed(result)
                if isinstance(result, ProviderError)
                else _push(user, integration, result, writer, now, shared)
            ),
            reraise=False,  # a bug in one user's run must not stop the others
        )
    return outcomes


def _may_sync(synced_user: SyncedUser, integration: Integration) -> bool:
    # A vanished One X subscription keeps the error the directory import recorded.
    return integration.syncing and synced_user.subscription.active


def _run_claimed(synced_user, integration, now, work, *, reraise=True) -> SyncOutcome:
    """Do `work` for a mailbox this run has claimed: record its outcome, always release the
    lock. An unexpected exception is recorded as a failure, then raised (or, in a bulk run,
    returned as a permanent failure so the other mailboxes carry on)."""
    try:
        outcome = work()
    except Exception as exc:  # an unexpected bug must not leave the mailbox locked
        logger.exception("Sync of synced user %s failed", synced_user.pk)
        crashed = SyncOutcome("failed", permanent=not reraise, error=f"{type(exc).__name__}")
        _record(synced_user, integration, crashed, now)
        if reraise:
            raise
        return crashed
    finally:
        release(synced_user, now)
    _record(synced_user, integration, outcome, now)
    return outcome


def _window(integration: Integration, now: datetime) -> tuple[datetime, datetime]:
    return now, now + timedelta(days=integration.days_ahead)


def _fetch_and_push(synced_user, integration, provider, writer, now) -> SyncOutcome:
    provider = provider or provider_for(integration)
    start, end = _window(integration, now)
    try:
        items = provider.fetch(
            synced_user.email,
            start,
            end,
            include_subject=not integration.all_meetings_private,
        )
    except ConsentRevoked as exc:
        mark_consent_revoked(integration, exc)
        return SyncOutcome("failed", permanent=True, error=_("The organisation revoked consent."))
    except ProviderError as exc:
        return _fetch_failed(exc)
    return _push(synced_user, integration, items, writer, now)


def _fetch_many(provider, users, integration, now) -> dict[str, list | ProviderError]:
    """Read the claimed mailboxes' windows: one bulk call when the provider has one.

    Raises ConsentRevoked when the organisation withdrew the app's access (also when the
    provider reports it for any single mailbox: it concerns the whole integration).
    """
    start, end = _window(integration, now)
    include_subject = not integration.all_meetings_private
    mailboxes = [user.email for user in users]
    if len(mailboxes) > 1 and hasattr(provider, "fetch_many"):
        results = provider.fetch_many(mailboxes, start, end, include_subject=include_subject)
    else:
        results = {}
        for mailbox in mailboxes:
            try:
                results[mailbox] = provider.fetch(
                    mailbox, start, end, include_subject=include_subject
                )
            except ConsentRevoked:
                raise
            except ProviderError as exc:
                results[mailbox] = exc
    revoked = next((r for r in results.values() if isinstance(r, ConsentRevoked)), None)
    if revoked is not None:
        raise revoked
    return results


def _fetch_failed(exc: ProviderError) -> SyncOutcome:
    return SyncOutcome("failed", permanent=exc.permanent, error=_provider_message(exc))


def _push(synced_user, integration, items, writer, now, shared=None) -> SyncOutcome:
    """Plan, reconcile and push one mailbox's fetched items."""
    plan = planning.plan_for_synced_user(synced_user, items, now=now, shared=shared)
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
            "; ".join(changes) or _("Up to date with the calendar."),
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


# A bulk run reads this many mailboxes with one bulk fetch: Graph's $batch limit.
CHUNK_SIZE = 20
# Bulk requests spread their chunks over this many seconds (one chunk a second) so a resync
# of thousands of mailboxes does not start in one second; the periodic reconcile spreads wider.
RESYNC_SPREAD_SECONDS = 60
RECONCILE_SPREAD_SECONDS = 300


def request_syncs(
    users,
    *,
    countdown: int = DEBOUNCE_SECONDS,
    spread_seconds: int = RESYNC_SPREAD_SECONDS,
) -> int:
    """request_sync for many mailboxes at once: returns how many runs were newly requested.

    `users` is a SyncedUser queryset (not sliced). One UPDATE stamps every mailbox without a
    pending run; only those get a run, in tasks of up to CHUNK_SIZE mailboxes of one
    integration (each task reads its mailboxes with one bulk fetch). The tasks are enqueued
    after the transaction commits, the first after `countdown` seconds, one more chunk each
    second up to `spread_seconds`.
    """
    now = timezone.now()
    due = Q(sync_requested_at__isnull=True) | Q(sync_requested_at__lt=now - REQUEST_STALE_AFTER)
    if not users.filter(due).update(sync_requested_at=now):
        return 0
    # The stamp tells which mailboxes this call requested (an UPDATE returns only a count);
    # a request racing with us either stamped first (and enqueued) or finds ours pending.
    requested = (
        users.filter(sync_requested_at=now)
        .order_by("integration_id", "pk")
        .values_list("integration_id", "pk")
    )
    chunks = []
    for _integration_id, rows in groupby(requested, key=lambda row: row[0]):
        ids = [pk for _, pk in rows]
        chunks += [ids[i : i + CHUNK_SIZE] for i in range(0, len(ids), CHUNK_SIZE)]

    def enqueue():
        from .tasks import sync_mailboxes as task

        for index, chunk in enumerate(chunks):
            task.apply_async((chunk,), countdown=countdown + index % max(spread_seconds, 1))

    transaction.on_commit(enqueue)
    return sum(len(chunk) for chunk in chunks)


def request_all_syncs() -> int:
    """Request a run for every mailbox of every syncing integration; returns how many."""
    users = SyncedUser.objects.filter(
        integration__active=True,
        integration__status__in=[Integration.Status.CONNECTED, Integration.Status.ERROR],
        subscription__active=True,
    )
    return request_syncs(users, spread_seconds=RECONCILE_SPREAD_SECONDS)
