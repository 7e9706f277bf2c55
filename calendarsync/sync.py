"""A mailbox's sync: fetch → plan → reconcile → push.

Runs of one mailbox never interleave: a run claims the mailbox and holds it by a lease its
process renews (`claims`; a lease run out means the run died).
Triggers only stamp `sync_requested_at` (`stamp_request`, `stamp_requests`) with the moment the
run is due; `tasks` enqueues a run for the mailboxes that had none pending. A person's change
(`stamp_request`) runs at once on the interactive queue; one that comes while the run goes on
leaves it a trailing request (`take_trailing`), so a burst costs one more read after it. A
request never depends on its message surviving: `sweep` finds requests overdue by
REQUEST_OVERDUE_AFTER (their message was lost) and claims their run abandoned, and the beat
requests them again.

One mailbox (a change notification) runs alone: `sync_mailbox`. Many mailboxes (settings or
rules saved, the periodic reconcile, a first sync) run in chunks of one integration, as many
as its provider reads in one bulk request (`bulk_size`): `sync_mailboxes`. Each mailbox still
has its own lock and outcome, but the chunk does each step once for all of them: one claim,
one read of the stored bookings, one One X apply of all their operations (batches of 100
across mailboxes, each result settled back to its own mailbox), one write of the bookings,
one update of the users' states, one insert of the log entries, one release.
"""

import enum
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from django.db import DatabaseError, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.db.models.lookups import GreaterThanOrEqual
from django.utils import timezone
from django.utils.translation import gettext as _

from onex.budget import Lane
from onex.client import RATE_BUDGET_CODE, get_client
from onex.operations import AbsenceWriter

from . import actors, claims, logcontext, metrics, planning, providers, reconcile
from .models import Activity, Integration, SyncedUser
from .providers.base import AccessLost, CalendarProvider, ProviderError

logger = logging.getLogger(__name__)

# A request still pending this long after its run was due lost its message (a worker killed,
# Redis restarted): the sweeper requests it again.
REQUEST_OVERDUE_AFTER = timedelta(minutes=1)
# A trigger stamps afresh (and enqueues) a request pending this long.
REQUEST_STALE_AFTER = timedelta(minutes=10)
# A resync of an integration's FILL_FROM mailboxes or more runs in chunks of FILL_READS bulk
# reads, so its One X batches fill (≥ 90 operations per request; bench_onex --initial-sync).
FILL_FROM = 200
FILL_READS = 5
# The due times of a bulk request's chunks are stamped per step of this many seconds (the
# step's last second), so spreading a resync costs a few UPDATEs, not one per chunk.
DUE_STEP_SECONDS = 10


def default_writer(lane: Lane = Lane.BULK) -> AbsenceWriter:
    return get_client(lane)


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


# ----- a person's change (a change notification, an add-in choice): runs at once

# A change to a quiet mailbox runs at once; what follows within this window after that run was
# due joins one trailing run at the window's end, so a burst costs one more read, not one each.
BURST_WINDOW = timedelta(seconds=5)
# A pending request due this recently (or within the window ahead) has its run coming: a change
# adds nothing to it. One due earlier (a bulk request stuck behind a resync, a lost message) or
# later (a resync's chunk spread minutes ahead) gets a run of its own. Not much shorter: while
# the interactive queue lags, each mailbox gets at most one more message per this long.
COMING_WITHIN = timedelta(seconds=10)


def _running(now: datetime) -> Q:
    """A run holds the mailbox now: its claim's lease is alive (claims)."""
    alive = GreaterThanOrEqual(Coalesce("sync_renewed_at", "sync_started_at"), now - claims.lease())
    return Q(sync_started_at__isnull=False) & Q(alive)


def stamp_request(synced_user_ids, not_before: dict[int, datetime] | None = None) -> dict:
    """Mark these mailboxes dirty for a person's change, in one UPDATE. Returns the mailboxes
    the caller enqueues a run for, each with the moment it is due: now, or `not_before[pk]`
    (the end of the burst window of the run requested last).

    A mailbox whose run is going on gets a trailing request and no message: its stamp is that
    run's start, and the run's end enqueues it (`take_trailing`); if the run dies, the sweeper
    finds the stamp. A mailbox whose run is coming is left as it is (that run reads the change);
    one that may not sync gets no stamp, so nothing waits on a run that would do nothing."""
    now = timezone.now()
    ids = sorted(set(synced_user_ids))
    due = {pk: max(now, (not_before or {}).get(pk, now)) for pk in ids}
    running = _running(now)
    coming = Q(sync_requested_at__gte=now - COMING_WITHIN) & Q(
        sync_requested_at__lte=now + BURST_WINDOW
    )
    unmarked = Q(sync_requested_at__isnull=True) | ~Q(sync_requested_at=F("sync_started_at"))
    later = [When(pk=pk, then=Value(at)) for pk, at in due.items() if at != now]
    stamped = (
        SyncedUser.objects.may_sync()
        .filter(pk__in=ids)
        .filter((running & unmarked) | (~running & (Q(sync_requested_at__isnull=True) | ~coming)))
        .update(
            sync_requested_at=Case(
                When(running, then=F("sync_started_at")), *later, default=Value(now)
            )
        )
    )
    if not stamped:
        return {}
    # Which of them this call stamped for a run of their own: a due moment is this call's (a
    # racing trigger stamps its own `now`); a trailing stamp is the running claim's start.
    rows = SyncedUser.objects.filter(pk__in=ids, sync_requested_at__in=set(due.values()))
    return {
        pk: due[pk]
        for pk, requested_at, started_at in rows.values_list(
            "pk", "sync_requested_at", "sync_started_at"
        )
        if requested_at == due[pk] and requested_at != started_at
    }


def mark_trailing(synced_user_id: int) -> bool:
    """A run found the mailbox held by another: leave that run a trailing request (its end
    enqueues it) instead of a second message. False if no run holds it now."""
    return bool(
        SyncedUser.objects.filter(pk=synced_user_id)
        .filter(_running(timezone.now()))
        .update(sync_requested_at=F("sync_started_at"))
    )


def take_trailing(synced_user_ids, claimed_at: datetime, due: datetime) -> list[int]:
    """After a run that claimed these mailboxes at `claimed_at` released them: those a change
    reached while it ran (stamped with its start) get their trailing request, due at `due`
    (or now, if later), and are returned for the caller to enqueue. Nobody else takes them: a
    trigger leaves a stamped request alone, and a run that claims the mailbox clears it."""
    due = max(due, timezone.now())
    ids = list(synced_user_ids)
    if not SyncedUser.objects.filter(
        pk__in=ids, sync_started_at__isnull=True, sync_requested_at=claimed_at
    ).update(sync_requested_at=due):
        return []
    if len(ids) == 1:
        return ids
    return list(
        SyncedUser.objects.filter(pk__in=ids, sync_requested_at=due).values_list("pk", flat=True)
    )


@metrics.timed_sync("change")
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
    writer = writer or default_writer(Lane.INTERACTIVE)  # one mailbox: a person's change
    integration = synced_user.integration
    if not _may_sync(synced_user, integration):
        _drop_requests([synced_user.pk])
        return SyncOutcome(Status.INACTIVE)
    if not claims.claim(synced_user, now):
        return SyncOutcome(Status.BUSY)
    with claims.renewing([synced_user.pk], now), logcontext.integration(integration):
        return _run_claimed(
            synced_user,
            integration,
            now,
            lambda: _fetch_and_push(synced_user, integration, provider, writer, now),
        )


@metrics.timed_sync("chunk")
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
    outcomes, candidates = {}, []
    for user in users:
        if _may_sync(user, integration):
            candidates.append(user)
        else:
            outcomes[user.pk] = SyncOutcome(Status.INACTIVE)
    _drop_requests(list(outcomes))
    claimed_ids = claims.claim_many(candidates, now)
    claimed = [user for user in candidates if user.pk in claimed_ids]
    outcomes.update(
        (user.pk, SyncOutcome(Status.BUSY)) for user in candidates if user.pk not in claimed_ids
    )
    if not claimed:
        return outcomes
    with claims.renewing(claimed_ids, now), logcontext.integration(integration):
        try:
            outcomes.update(_run_group(claimed, integration, provider, writer, now, shared))
        finally:  # also after a bug: never leave a mailbox locked
            claims.release_many(claimed_ids, now)
    return outcomes


def _run_group(claimed, integration, provider, writer, now, shared) -> dict[int, SyncOutcome]:
    """Read, plan and push the claimed mailboxes of a chunk together, and record each one's
    outcome; a statement or two per step for the whole chunk, none per mailbox."""
    try:
        fetched = _fetch_many(
            provider or providers.provider_for(integration), claimed, integration, now
        )
    except AccessLost as exc:
        # The whole integration stops (one Activity); the users' own states stay as they
        # are: nothing is wrong with their mailboxes, and fixing the access resyncs them all.
        integration.needs_attention(exc)
        return {user.pk: SyncOutcome(Status.INACTIVE) for user in claimed}
    except ProviderError as exc:  # the bulk request failed as a whole (e.g. unreachable)
        integration.mark_error(_provider_message(exc))
        fetched = {user.email: exc for user in claimed}
    except Exception as exc:  # a bug: record it on every claimed user, surface it
        logger.exception("Bulk read for integration %s failed", integration.pk)
        crashed = SyncOutcome(Status.FAILED, error=type(exc).__name__)
        _record_many(integration, [(user, crashed) for user in claimed], now)
        raise
    outcomes, readable = {}, []
    for user in claimed:
        result = fetched.get(user.email, ProviderError("no result", code="no_result"))
        if isinstance(result, ProviderError):
            outcomes[user.pk] = _fetch_failed(result)
        else:
            readable.append((user, result))
    try:
        outcomes.update(_push_many(readable, integration, writer, now, shared))
    except DatabaseError:
        # The database went away mid-run: passing, so the mailboxes run again soon.
        logger.warning("Chunk of integration %s: database error", integration.pk, exc_info=True)
        claims.drop_broken_connection()
        outcomes.update((user.pk, _database_down()) for user, _items in readable)
    except Exception as exc:  # a bug in the chunk's common steps: no retry storm
        logger.exception("Chunk of integration %s failed", integration.pk)
        crashed = SyncOutcome(Status.FAILED, permanent=True, error=type(exc).__name__)
        outcomes.update((user.pk, crashed) for user, _items in readable)
    _record_many(integration, [(user, outcomes[user.pk]) for user in claimed], now)
    return outcomes


def _push_many(readable, integration, writer, now, shared) -> dict[int, SyncOutcome]:
    """Plan and diff each mailbox, send all their operations to One X in one apply (which fills
    batches of 100 across the mailboxes), and settle each result back to its own mailbox."""
    stored = reconcile.stored_bookings_many([user.pk for user, _items in readable])
    outcomes, pushes = {}, []
    for user, items in readable:
        try:
            plan = planning.plan_for_synced_user(user, items, now=now, shared=shared)
            operations = reconcile.diff(plan, stored[user.pk])
        except Exception as exc:  # a bug in one user's run must not stop the others
            outcomes[user.pk] = _crashed(user, exc)
            continue
        if operations:
            pushes.append((user, plan, operations))
        else:
            outcomes[user.pk] = SyncOutcome(Status.OK)
    if not pushes:
        return outcomes
    operations = [operation for *_, mine in pushes for operation in mine]
    try:
        results = (writer or default_writer()).apply(integration.company.onex_id, operations)
        if len(results) != len(operations):
            raise ValueError(f"{len(results)} results for {len(operations)} operations")
    except Exception as exc:  # the whole call failed: nothing was accepted
        failed = SyncOutcome(
            Status.FAILED,
            permanent=bool(getattr(exc, "permanent", False)),
            error=_onex_message(exc),
        )
        outcomes.update((user.pk, failed) for user, *_ in pushes)
        return outcomes
    settled, offset = [], 0
    for user, plan, mine in pushes:
        answers, offset = results[offset : offset + len(mine)], offset + len(mine)
        try:
            settled.append((user, reconcile.settle(plan, answers)))
        except Exception as exc:
            outcomes[user.pk] = _crashed(user, exc)
    outcomes.update(_record_settled(settled, now))
    return outcomes


def _record_settled(settled, now) -> dict[int, SyncOutcome]:
    """Write the chunk's accepted operations into Booking rows in one transaction. If that
    fails, each mailbox is tried on its own, so a failure stays that mailbox's: One X took the
    operations, and a mailbox whose rows were not saved sends the same ones again next run
    (keyed by the entry's id, One X takes them as they are)."""
    try:
        with transaction.atomic():  # all of it or none: the next diff sees one consistent state
            reconcile.record_many(settled, now)
    except DatabaseError:
        logger.warning("A chunk's One X answers not recorded together", exc_info=True)
        claims.drop_broken_connection()
        return {user.pk: _record_one(user, settlement, now) for user, settlement in settled}
    return {user.pk: _settled_outcome(settlement) for user, settlement in settled}


def _record_one(synced_user, settlement, now) -> SyncOutcome:
    try:
        with transaction.atomic():  # all of it or none: the next diff sees one consistent state
            reconcile.record(synced_user, settlement, now)
    except DatabaseError:
        # One X took the operations but their rows were not saved: passing, not permanent. The
        # next run finds the old rows and sends the same puts and deletes again, which One X
        # takes as they are (keyed by the entry's id; deleting a deleted entry is a 404 we want).
        logger.warning("Synced user %s: One X's answer not recorded", synced_user.pk, exc_info=True)
        claims.drop_broken_connection()
        return _not_saved()
    return _settled_outcome(settlement)


def _crashed(synced_user, exc) -> SyncOutcome:
    logger.exception("Sync of synced user %s failed", synced_user.pk, exc_info=exc)
    return SyncOutcome(Status.FAILED, permanent=True, error=type(exc).__name__)


def _may_sync(synced_user: SyncedUser, integration: Integration) -> bool:
    # A vanished One X subscription keeps the error the directory import recorded.
    return integration.syncing and synced_user.subscription.active


def _drop_requests(synced_user_ids) -> None:
    # The run would do nothing: leave no pending request that would hold back the next one.
    if synced_user_ids:
        SyncedUser.objects.filter(pk__in=synced_user_ids).update(sync_requested_at=None)


def _run_claimed(synced_user, integration, now, work) -> SyncOutcome:
    """Do `work` for a mailbox this run has claimed: record its outcome, always release the
    lock. An unexpected exception is recorded as a failure, then raised."""
    try:
        outcome = work()
    except DatabaseError:
        # The database went away mid-run: passing, so the mailbox runs again soon.
        logger.warning("Sync of synced user %s: database error", synced_user.pk, exc_info=True)
        claims.drop_broken_connection()
        outcome = _database_down()
    except Exception as exc:  # an unexpected bug must not leave the mailbox locked
        logger.exception("Sync of synced user %s failed", synced_user.pk)
        _record(synced_user, integration, SyncOutcome(Status.FAILED, error=type(exc).__name__), now)
        raise
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


def _push(synced_user, integration, items, writer, now) -> SyncOutcome:
    """Plan, reconcile and push one mailbox's fetched items."""
    plan = planning.plan_for_synced_user(synced_user, items, now=now)
    operations = reconcile.diff(plan, reconcile.stored_bookings(synced_user))
    if not operations:
        return SyncOutcome(Status.OK)
    writer = writer or default_writer()
    try:
        results = writer.apply(integration.company.onex_id, operations)
    except Exception as exc:  # the whole call failed: nothing was accepted
        permanent = bool(getattr(exc, "permanent", False))
        return SyncOutcome(Status.FAILED, permanent=permanent, error=_onex_message(exc))
    return _record_one(synced_user, reconcile.settle(plan, results), now)


def _settled_outcome(settlement: reconcile.Settlement) -> SyncOutcome:
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
        error=(
            _rate_budget_message()
            if first.code == RATE_BUDGET_CODE
            else _("One X refused an absence (%(code)s).") % {"code": first.code or "error"}
        ),
    )


def _rate_budget_message() -> str:
    return _("One X's request limit is used up for now; the sync runs again soon.")


def _database_down() -> SyncOutcome:
    return SyncOutcome(
        Status.FAILED, error=_("The database could not be reached; the sync runs again soon.")
    )


def _not_saved() -> SyncOutcome:
    return SyncOutcome(
        Status.FAILED, error=_("The result could not be saved; the sync runs again soon.")
    )


def _provider_message(exc: ProviderError) -> str:
    if exc.code == "mailbox_not_found":
        return _("The mailbox was not found.")
    return _("The calendar could not be read (%(code)s).") % {"code": exc.code or "error"}


def _onex_message(exc: Exception) -> str:
    code = getattr(exc, "code", "") or type(exc).__name__
    if code == RATE_BUDGET_CODE:
        return _rate_budget_message()
    return _("One X could not be reached (%(code)s).") % {"code": code}


def _record(synced_user, integration, outcome: SyncOutcome, now) -> None:
    _record_many(integration, [(synced_user, outcome)], now)


def _record_many(integration, outcomes, now) -> None:
    """Save each (user, outcome) on its user (and in the log). A database error here must not
    hide the outcomes from the task, which retries a passing failure: it is logged, and the
    next run records its own outcome."""
    try:
        _save_outcomes(integration, outcomes, now)
    except DatabaseError:
        logger.warning("Could not record the outcomes of %d synced users", len(outcomes))
        claims.drop_broken_connection()


def _save_outcomes(integration, outcomes, now) -> None:
    """One UPDATE of the users' states and one INSERT of their log entries, for any number."""
    changed, entries = [], []
    for synced_user, outcome in outcomes:
        was = synced_user.state
        if outcome.status == Status.OK:
            synced_user.state = SyncedUser.State.OK
            synced_user.last_error = ""
            synced_user.last_synced_at = now
        elif outcome.status == Status.FAILED:
            synced_user.state = SyncedUser.State.ERROR
            synced_user.last_error = outcome.error
        else:
            continue
        changed.append(synced_user)
        counts = {"written": outcome.written, "deleted": outcome.deleted}
        # No email in the entry itself: the link to the user goes when the user is removed.
        if outcome.status == Status.FAILED:
            entries.append(
                Activity.entry(
                    integration,
                    "sync_failed",
                    actor=actors.SYSTEM,
                    params={"error": outcome.error, **counts},
                    level=Activity.Level.ERROR if outcome.permanent else Activity.Level.WARNING,
                    synced_user=synced_user,
                )
            )
        elif outcome.written or outcome.deleted or was != SyncedUser.State.OK:
            entries.append(
                Activity.entry(
                    integration,
                    "synced",
                    actor=actors.SYSTEM,
                    params=counts,
                    synced_user=synced_user,
                )
            )
    if integration.status == Integration.Status.ERROR and any(
        outcome.status == Status.OK for _user, outcome in outcomes
    ):
        integration.clear_error()
    SyncedUser.objects.bulk_update(changed, ["state", "last_error", "last_synced_at"])
    Activity.objects.bulk_create(entries)


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


def chunks_of(users, *, reads: int | None = None) -> list[list[int]]:
    """The ids of `users` (a queryset) in chunks of one integration each as large as its
    provider reads in one bulk request, or in `reads` of them: a chunk's One X operations go
    out together in batches of 100, so a large resync fills its batches better in chunks of
    several reads (20 mailboxes × ~20 absences leave one part-filled batch of five). By
    default an integration's mailboxes come in chunks of FILL_READS reads once there are
    FILL_FROM of them, else of one read (a small resync keeps its parallel chunks)."""
    rows = users.order_by("integration_id", "pk").values_list(
        "integration__kind", "integration_id", "pk"
    )
    chunks = []
    for (kind, _integration_id), group in groupby(rows, key=lambda row: row[:2]):
        ids = [pk for *_, pk in group]
        if reads is None:
            size = providers.bulk_size(kind) * (FILL_READS if len(ids) >= FILL_FROM else 1)
        else:
            size = providers.bulk_size(kind) * reads
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
