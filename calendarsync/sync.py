"""A mailbox's sync: fetch → plan → reconcile → push.

Runs of one mailbox never interleave: a run claims the mailbox and holds it by a lease its
process renews (`claims`; a lease run out means the run died).
Triggers only stamp `sync_requested_at` (`stamp_request`, `stamp_requests`) with the moment the
run is due; `tasks` enqueues a run for the mailboxes that had none pending, so a burst of change
notifications costs one run. A request never depends on its message surviving: `sweep` finds
requests overdue by REQUEST_OVERDUE_AFTER (their message was lost) and claims their run
abandoned, and the beat requests them again.

One mailbox (a change notification) runs alone: `sync_mailbox`. Many mailboxes (settings or
rules saved, the periodic reconcile, a first sync) run in chunks of one integration, as many
as its provider reads in one bulk request (`bulk_size`): `sync_mailboxes`. Each mailbox still
has its own lock and outcome.
"""

import enum
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from onex.client import get_client
from onex.operations import AbsenceWriter

from . import actors, claims, planning, providers, reconcile
from .models import Activity, Integration, SyncedUser
from .providers.base import AccessLost, CalendarProvider, ProviderError

logger = logging.getLogger(__name__)

# A request still pending this long after its run was due lost its message (a worker killed,
# Redis restarted): the sweeper requests it again.
REQUEST_OVERDUE_AFTER = timedelta(minutes=1)
# A trigger stamps afresh (and enqueues) a request pending this long.
REQUEST_STALE_AFTER = timedelta(minutes=10)
# The due times of a bulk request's chunks are stamped per step of this many seconds (the
# step's last second), so spreading a resync costs a few UPDATEs, not one per chunk.
DUE_STEP_SECONDS = 10


def default_writer() -> AbsenceWriter:
    return get_client()


class Status(enum.StrEnum):
    OK = "ok"
    BUSY = "busy"  # another run holds the mailbox
    INACTIVE = "inactive"  # the mailbox may not sync now (paused, no consent, no subscription)
    FAILED = "failed"


@dataclass(frozen=True)
class SyncOutcome:
    status: Status
    written: int = 0
    deleted: int = 0
    failed: int = 0
    permanent: bool = False  # retrying soon cannot help; recorded on the user instead
    error: str = ""

    @property
    def retry(self) -> bool:
        return self.status == Status.FAILED and not self.permanent


def _due(now: datetime) -> Q:
    return Q(sync_requested_at__isnull=True) | Q(sync_requested_at__lt=now - REQUEST_STALE_AFTER)


def stamp_request(synced_user_id: int) -> bool:
    """Mark the mailbox dirty. True if no run was pending (the caller enqueues one); a mailbox
    that may not sync now gets no stamp, so nothing waits on a run that would do nothing."""
    now = timezone.now()
    return bool(
        SyncedUser.objects.may_sync()
        .filter(pk=synced_user_id)
        .filter(_due(now))
        .update(sync_requested_at=now)
    )


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
        _drop_requests([synced_user.pk])
        return SyncOutcome(Status.INACTIVE)
    if not claims.claim(synced_user, now):
        return SyncOutcome(Status.BUSY)
    with claims.renewing([synced_user.pk], now):
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
    """sync_mailbox for a chunk of mailboxes of one integration, reading their calendars with
    one bulk fetch instead of one read per mailbox.

    Each mailbox keeps its own lock and outcome: a mailbox another run holds is skipped
    ("busy"), an unknown mailbox is that user's error, and lost access stops the integration
    once (needs attention). Returns each found user's outcome by id (deleted users are left
    out).
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
            outcomes[user.pk] = SyncOutcome(Status.INACTIVE)
        elif not claims.claim(user, now):
            outcomes[user.pk] = SyncOutcome(Status.BUSY)
        else:
            claimed.append(user)
    _drop_requests([pk for pk, outcome in outcomes.items() if outcome.status == Status.INACTIVE])
    if not claimed:
        return outcomes
    with claims.renewing([user.pk for user in claimed], now):
        return _run_group(claimed, integration, provider, writer, now, shared, outcomes)


def _run_group(claimed, integration, provider, writer, now, shared, outcomes):
    try:
        fetched = _fetch_many(
            provider or providers.provider_for(integration), claimed, integration, now
        )
    except AccessLost as exc:
        # The whole integration stops (one Activity); the users' own states stay as they
        # are: nothing is wrong with their mailboxes, and fixing the access resyncs them all.
        integration.needs_attention(exc)
        for user in claimed:
            claims.release(user, now)
            outcomes[user.pk] = SyncOutcome(Status.INACTIVE)
        return outcomes
    except ProviderError as exc:  # the bulk request failed as a whole (e.g. unreachable)
        integration.mark_error(_provider_message(exc))
        fetched = {user.email: exc for user in claimed}
    except Exception as exc:  # a bug: record it on every claimed user, free them, surface it
        logger.exception("Bulk read for integration %s failed", integration.pk)
        for user in claimed:
            _record(user, integration, SyncOutcome(Status.FAILED, error=type(exc).__name__), now)
            claims.release(user, now)
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


def _drop_requests(synced_user_ids) -> None:
    # The run would do nothing: leave no pending request that would hold back the next one.
    if synced_user_ids:
        SyncedUser.objects.filter(pk__in=synced_user_ids).update(sync_requested_at=None)


def _run_claimed(synced_user, integration, now, work, *, reraise=True) -> SyncOutcome:
    """Do `work` for a mailbox this run has claimed: record its outcome, always release the
    lock. An unexpected exception is recorded as a failure, then raised (or, in a bulk run,
    returned as a permanent failure so the other mailboxes carry on)."""
    try:
        outcome = work()
    except DatabaseError:
        # The database went away mid-run: passing, so the mailbox runs again soon.
        logger.warning("Sync of synced user %s: database error", synced_user.pk, exc_info=True)
        claims.drop_broken_connection()
        outcome = SyncOutcome(
            Status.FAILED, error=_("The database could not be reached; the sync runs again soon.")
        )
    except Exception as exc:  # an unexpected bug must not leave the mailbox locked
        logger.exception("Sync of synced user %s failed", synced_user.pk)
        crashed = SyncOutcome(Status.FAILED, permanent=not reraise, error=type(exc).__name__)
        _record(synced_user, integration, crashed, now)
        if reraise:
            raise
        return crashed
    finally:
        claims.release(synced_user, now)
    _record(synced_user, integration, outcome, now)
    return outcome


def _window(integration: Integration, now: datetime) -> tuple[datetime, datetime]:
    return now, now + timedelta(days=integration.days_ahead)


def _fetch_and_push(synced_user, integration, provider, writer, now) -> SyncOutcome:
    provider = provider or providers.provider_for(integration)
    start, end = _window(integration, now)
    try:
        items = provider.fetch(
            synced_user.email,
            start,
            end,
            include_subject=not integration.all_meetings_private,
        )
    except AccessLost as exc:
        integration.needs_attention(exc)
        return SyncOutcome(
            Status.FAILED, permanent=True, error=_("The organisation withdrew the app's access.")
        )
    except ProviderError as exc:
        return _fetch_failed(exc)
    return _push(synced_user, integration, items, writer, now)


def _fetch_many(provider, users, integration, now) -> dict[str, list | ProviderError]:
    """Read the claimed mailboxes' windows: one bulk call when the provider has one.

    Raises AccessLost when the organisation withdrew the app's access (also when the provider
    reports it for any single mailbox: it concerns the whole integration).
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
            except AccessLost:
                raise
            except ProviderError as exc:
                results[mailbox] = exc
    revoked = next((r for r in results.values() if isinstance(r, AccessLost)), None)
    if revoked is not None:
        raise revoked
    return results


def _fetch_failed(exc: ProviderError) -> SyncOutcome:
    return SyncOutcome(Status.FAILED, permanent=exc.permanent, error=_provider_message(exc))


def _push(synced_user, integration, items, writer, now, shared=None) -> SyncOutcome:
    """Plan, reconcile and push one mailbox's fetched items."""
    plan = planning.plan_for_synced_user(synced_user, items, now=now, shared=shared)
    operations = reconcile.diff(plan, reconcile.stored_bookings(synced_user))
    if not operations:
        return SyncOutcome(Status.OK)
    writer = writer or default_writer()
    try:
        results = writer.apply(integration.company.onex_id, operations)
    except Exception as exc:  # the whole call failed: nothing was accepted
        permanent = bool(getattr(exc, "permanent", False))
        return SyncOutcome(Status.FAILED, permanent=permanent, error=_onex_message(exc))
    settlement = reconcile.settle(plan, results)
    try:
        with transaction.atomic():  # all of it or none: the next diff sees one consistent state
            reconcile.record(synced_user, settlement, now)
    except DatabaseError:
        # One X took the operations but their rows were not saved: passing, not permanent. The
        # next run finds the old rows and sends the same puts and deletes again, which One X
        # takes as they are (keyed by the entry's id; deleting a deleted entry is a 404 we want).
        logger.warning("Synced user %s: One X's answer not recorded", synced_user.pk, exc_info=True)
        claims.drop_broken_connection()
        return SyncOutcome(
            Status.FAILED, error=_("The result could not be saved; the sync runs again soon.")
        )
    written, deleted = len(settlement.written), len(settlement.deleted)
    if not settlement.failures:
        return SyncOutcome(Status.OK, written=written, deleted=deleted)
    permanent = settlement.permanent_failures
    first = (permanent or settlement.failures)[0]
    return SyncOutcome(
        Status.FAILED,
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
    """Save the outcome on the user (and in the log). A database error here must not hide the
    outcome from the task, which retries a passing failure: it is logged, and the next run
    records its own outcome."""
    try:
        _save_outcome(synced_user, integration, outcome, now)
    except DatabaseError:
        logger.warning("Could not record the outcome of synced user %s", synced_user.pk)
        claims.drop_broken_connection()


def _save_outcome(synced_user, integration, outcome: SyncOutcome, now) -> None:
    was = synced_user.state
    if outcome.status == Status.OK:
        if integration.status == Integration.Status.ERROR:
            integration.clear_error()
        synced_user.state = SyncedUser.State.OK
        synced_user.last_error = ""
        synced_user.last_synced_at = now
    elif outcome.status == Status.FAILED:
        synced_user.state = SyncedUser.State.ERROR
        synced_user.last_error = outcome.error
    else:
        return
    synced_user.save(update_fields=["state", "last_error", "last_synced_at"])
    counts = {"written": outcome.written, "deleted": outcome.deleted}
    # No email in the entry itself: the link to the user goes when the user is removed.
    if outcome.status == Status.FAILED:
        Activity.record(
            integration,
            "sync_failed",
            actor=actors.SYSTEM,
            params={"error": outcome.error, **counts},
            level=Activity.Level.ERROR if outcome.permanent else Activity.Level.WARNING,
            synced_user=synced_user,
        )
    elif outcome.written or outcome.deleted or was != SyncedUser.State.OK:
        Activity.record(
            integration, "synced", actor=actors.SYSTEM, params=counts, synced_user=synced_user
        )


def stamp_requests(users) -> list[list[int]]:
    """stamp_request for many mailboxes at once: the ids newly requested, in chunks of one
    integration each as large as its provider reads in one bulk request.

    `users` is a SyncedUser queryset (not sliced). One UPDATE stamps every mailbox that may
    sync and has no pending run; only those are returned.
    """
    now = timezone.now()
    if not users.may_sync().filter(_due(now)).update(sync_requested_at=now):
        return []
    # The stamp tells which mailboxes this call requested (an UPDATE returns only a count);
    # a request racing with us either stamped first (and enqueued) or finds ours pending.
    return chunks_of(users.filter(sync_requested_at=now))


def chunks_of(users) -> list[list[int]]:
    """The ids of `users` (a queryset) in chunks of one integration each as large as its
    provider reads in one bulk request."""
    rows = users.order_by("integration_id", "pk").values_list(
        "integration__kind", "integration_id", "pk"
    )
    chunks = []
    for (kind, _integration_id), group in groupby(rows, key=lambda row: row[:2]):
        ids = [pk for *_, pk in group]
        size = providers.bulk_size(kind)
        chunks += [ids[i : i + size] for i in range(0, len(ids), size)]
    return chunks


def stamp_due(chunks: list[list[int]], delays: list[int]) -> None:
    """Stamp each chunk's pending requests with the moment its run is due (`delays`: seconds
    from now, one per chunk), so a run spread minutes ahead is not taken for a lost one."""
    now = timezone.now()
    by_due: dict[int, list[int]] = defaultdict(list)
    for chunk, delay in zip(chunks, delays, strict=True):
        if delay > DUE_STEP_SECONDS:  # sooner ones are far inside REQUEST_OVERDUE_AFTER
            step_end = -(-delay // DUE_STEP_SECONDS) * DUE_STEP_SECONDS
            by_due[step_end] += chunk
    for step_end, ids in by_due.items():
        SyncedUser.objects.filter(pk__in=ids, sync_requested_at__isnull=False).update(
            sync_requested_at=now + timedelta(seconds=step_end)
        )


def stamp_retry(synced_user_ids, delay_seconds: int) -> None:
    """A passing failure's retry is due in `delay_seconds`: stamp it as a request, so the
    sweeper runs the mailbox again if the retry's message is lost. Best effort: when the
    database is what failed, the retry message alone carries it."""
    due = timezone.now() + timedelta(seconds=delay_seconds)
    try:
        SyncedUser.objects.may_sync().filter(pk__in=list(synced_user_ids)).filter(
            sync_requested_at__isnull=True
        ).update(sync_requested_at=due)
    except DatabaseError:
        logger.warning("Could not stamp the retry of %s", list(synced_user_ids))
        claims.drop_broken_connection()


@dataclass(frozen=True)
class Sweep:
    released: list[int]  # mailboxes whose abandoned claim was freed: to be requested
    dropped: int  # overdue requests of mailboxes that may not sync now
    lost: list[list[int]]  # overdue requests to run again, in bulk chunks (stamps kept)


def sweep(now: datetime | None = None) -> Sweep:
    """What the beat's sweeper finds. Claims whose lease ran out (their run died) are
    released. Overdue requests of mailboxes that may not sync are dropped; the other
    overdue, unclaimed ones are run again 1, 3, 7, 15 … minutes after they were due: at once,
    then ever more rarely while their runs keep not coming (no worker running), so messages do
    not pile up meanwhile. Their stamps stay: they tell how long the mailbox has waited."""
    now = now or timezone.now()
    abandoned = claims.abandoned(now)
    candidates = list(abandoned.values_list("pk", flat=True))
    # The same condition again: a run that took an abandoned claim over meanwhile keeps it.
    abandoned.filter(pk__in=candidates).update(sync_started_at=None, sync_renewed_at=None)
    released = SyncedUser.objects.filter(pk__in=candidates, sync_started_at__isnull=True)
    overdue = SyncedUser.objects.filter(
        sync_started_at__isnull=True, sync_requested_at__lt=now - REQUEST_OVERDUE_AFTER
    )
    dropped = overdue.exclude(pk__in=SyncedUser.objects.may_sync().values("pk")).update(
        sync_requested_at=None
    )
    lost = [
        pk
        for pk, requested_at in overdue.values_list("pk", "sync_requested_at")
        if _run_again(now - requested_at)
    ]
    return Sweep(
        released=list(released.values_list("pk", flat=True)),
        dropped=dropped,
        lost=chunks_of(SyncedUser.objects.filter(pk__in=lost)),
    )


def _run_again(late: timedelta) -> bool:
    minutes = int(late.total_seconds() // 60)  # the sweeper runs once a minute
    return minutes >= 1 and (minutes + 1) & minutes == 0  # 1, 3, 7, 15, 31 …
