"""Celery tasks, and the one module that enqueues them.

Every enqueue goes through the `request_*` functions at the top and happens after the
current transaction commits, so a worker always sees the rows it is handed. Tasks take ids,
load rows, and call one plain function of the sync core.
"""

import logging
import math
from datetime import UTC, datetime, timedelta
from itertools import groupby

from celery import shared_task
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from . import actors, audit, daily, logcontext, membership, removal, retention, subscriptions, sync
from .actors import Actor
from .models import Integration, MailboxSubscription, SyncedUser
from .providers.base import Notice, NoticeKind

logger = logging.getLogger(__name__)

# Bulk requests start this much later, so triggers that come together (settings saved twice)
# join one run. A person's change runs at once (request_interactive, sync.BURST_WINDOW).
DEBOUNCE_SECONDS = 5
# A mailbox's last notification is recorded at most once a minute (subscriptions.quiet_users
# counts hours), so a burst of notifications does not rewrite the row each time.
NOTIFIED_EVERY = timedelta(minutes=1)
# Bulk requests spread their chunks over this many seconds (one chunk a second) so a resync
# of thousands of mailboxes does not start in one second; the periodic reconcile spreads wider.
RESYNC_SPREAD_SECONDS = 60
RECONCILE_SPREAD_SECONDS = 300
# A run that found its mailbox busy tries again this much later (the pending request stays).
BUSY_RETRY_SECONDS = 30
REMOVAL_RETRY_SECONDS = 60
# A passing failure is retried after 1, 2, 4 … minutes, never later than this: a countdown
# message is held unacknowledged by a worker until it runs, so every countdown must stay below
# the broker's visibility timeout (mss/settings.py), or Redis hands the message out twice.
MAX_RETRY_SECONDS = 300
# One membership run per integration at a time (the beat's and Synka nu's would add the same
# users twice); a run that died frees its integration after this long.
MEMBERSHIP_LOCK_SECONDS = 15 * 60
ADD_CHUNK = 500  # users whose first syncs one start_syncing call requests


def retry_countdown(retries: int) -> int:
    return min(60 * 2**retries, MAX_RETRY_SECONDS)


# ----- enqueueing, after commit


def request_sync(synced_user_id: int, *, countdown: float = 0) -> bool:
    """A person's change to one mailbox (an add-in choice): request_interactive. True if a run
    was enqueued."""
    return bool(request_interactive([synced_user_id], countdown=countdown))


def request_interactive(synced_user_ids, *, countdown: float = 0) -> int:
    """A person's changes (notifications, add-in choices), in one UPDATE: each mailbox runs on
    the interactive queue, at once, or at the end of the burst window of its run requested
    last; one whose run is going on or coming gets no second message (sync.stamp_request).
    Returns how many runs were enqueued."""
    ids = set(synced_user_ids)
    if not ids:
        return 0
    not_before = _window_ends(ids)
    if countdown:
        floor = timezone.now() + timedelta(seconds=countdown)
        not_before = {pk: max(not_before.get(pk, floor), floor) for pk in ids}
    due = sync.stamp_request(ids, not_before)
    _enqueue_interactive(due)
    return len(due)


def _enqueue_interactive(due: dict[int, datetime]) -> None:
    if not due:
        return
    _remember_windows(due)

    def enqueue():
        now = timezone.now()
        for pk, at in due.items():
            sync_mailbox.apply_async((pk,), countdown=max(0.0, (at - now).total_seconds()))

    transaction.on_commit(enqueue)


# The burst window lives in the cache (shared through Redis in production): it only saves
# reads, so a cache that is away or per-process (the embedded default) means more runs, never
# a change missed.
def _window_key(synced_user_id: int) -> str:
    return f"mss:sync-window:{synced_user_id}"


def _window_ends(ids) -> dict[int, datetime]:
    try:
        found = cache.get_many([_window_key(pk) for pk in ids])
    except Exception:  # noqa: BLE001 - see above
        logger.warning("Burst windows not read; mailboxes run at once", exc_info=True)
        return {}
    ends = {}
    for pk in ids:
        if (end := found.get(_window_key(pk))) is not None:
            ends[pk] = datetime.fromtimestamp(end, tz=UTC)
    return ends


def _remember_windows(due: dict[int, datetime]) -> None:
    now = timezone.now()
    latest = max(due.values())
    timeout = math.ceil((latest - now + sync.BURST_WINDOW).total_seconds()) + 1
    ends = {_window_key(pk): (at + sync.BURST_WINDOW).timestamp() for pk, at in due.items()}
    try:
        cache.set_many(ends, timeout=timeout)
    except Exception:  # noqa: BLE001 - see above
        logger.warning("Burst windows not recorded", exc_info=True)


def request_syncs(
    users, *, countdown: int = DEBOUNCE_SECONDS, spread_seconds: int = RESYNC_SPREAD_SECONDS
) -> int:
    """Mark many mailboxes (a SyncedUser queryset) dirty; the ones without a pending run get
    one, in chunks the provider reads with one bulk request. Returns how many were requested.
    The first chunk starts after `countdown` seconds, one more each second up to
    `spread_seconds`."""
    chunks = sync.stamp_requests(users)
    delays = [countdown + index % max(spread_seconds, 1) for index in range(len(chunks))]
    sync.stamp_due(chunks, delays)

    def enqueue():
        for chunk, delay in zip(chunks, delays, strict=True):
            sync_mailboxes.apply_async((chunk,), countdown=delay)

    if chunks:
        transaction.on_commit(enqueue)
    return sum(len(chunk) for chunk in chunks)


def request_again(chunks: list[list[int]]) -> int:
    """Enqueue runs for requests already pending whose message was lost (sync.sweep's chunks);
    their stamps stay as they are. Returns how many mailboxes."""

    def enqueue():
        for chunk in chunks:
            sync_mailboxes.apply_async((chunk,), countdown=0)

    if chunks:
        transaction.on_commit(enqueue)
    return sum(len(chunk) for chunk in chunks)


def request_subscriptions(users, *, renew_all: bool = False) -> int:
    """Subscribe (or renew) the mailboxes of `users` in parallel chunks of one integration."""
    rows = users.order_by("integration_id", "pk").values_list("integration_id", "pk")
    chunks = []
    for _integration_id, group in groupby(rows, key=lambda row: row[0]):
        ids = [pk for _, pk in group]
        size = subscriptions.CHUNK_SIZE
        chunks += [ids[i : i + size] for i in range(0, len(ids), size)]

    def enqueue():
        for chunk in chunks:
            ensure_subscriptions.delay(chunk, renew_all)

    if chunks:
        transaction.on_commit(enqueue)
    return sum(len(chunk) for chunk in chunks)


def start_syncing(users) -> int:
    """Every path that adds users or brings them back (added one by one, CSV import, a
    returning One X subscription, a consent, Aktiv on) calls this: subscribe them to change
    notifications and sync them."""
    request_subscriptions(users)
    return request_syncs(users)


def request_user_removal(
    synced_user_id: int, *, actor: Actor = actors.SYSTEM, record: bool = True
) -> None:
    """`record`: log the removal on its own (not when a membership run's entry tells it)."""
    remove_synced_user.delay_on_commit(synced_user_id, actor.as_task_arg(), record)


def request_membership_run(
    integration: Integration, *, actor: Actor = actors.SYSTEM, confirmed=()
) -> None:
    """Katalog Synk now ("Synka nu", or an admin confirming held removals)."""
    follow_groups.delay_on_commit(integration.pk, list(confirmed), actor.as_task_arg())


def request_clear(integration: Integration) -> None:
    """Aktiv off: end the integration's subscriptions and delete its One X entries."""
    clear_integration.delay_on_commit(integration.pk)


def request_integration_removal(integration: Integration) -> None:
    remove_integration.delay_on_commit(integration.pk)


def request_audit(
    integration_id: int, *, after_user_id: int = 0, counts: dict | None = None, countdown: int = 0
) -> None:
    """The One X audit of one integration, or its next step after `after_user_id`."""
    transaction.on_commit(
        lambda: audit_onex.apply_async((integration_id, after_user_id, counts), countdown=countdown)
    )


# What recording a notification raises when the database or the broker is away: it was not
# recorded, and the endpoint answers so that the sender delivers it again.
NOT_RECORDED = (DatabaseError, KombuOperationalError)


def act_on_notices(notices: list[Notice]) -> None:
    """What a provider's notification endpoint hands over: each mailbox is synced once,
    subscriptions are renewed or made again as the provider asked. Raises one of NOT_RECORDED
    when it could not record them."""
    if not notices:
        return
    now = timezone.now()
    MailboxSubscription.objects.filter(
        Q(last_notification_at__isnull=True) | Q(last_notification_at__lt=now - NOTIFIED_EVERY),
        pk__in={notice.mailbox_subscription_id for notice in notices},
    ).update(last_notification_at=now)
    by_kind: dict[NoticeKind, set[int]] = {}
    for notice in notices:
        by_kind.setdefault(notice.kind, set()).add(notice.synced_user_id)
    request_interactive(
        by_kind.get(NoticeKind.CHANGED, set()) | by_kind.get(NoticeKind.MISSED, set())
    )
    if renew := by_kind.get(NoticeKind.RENEW):
        ensure_subscriptions.delay_on_commit(sorted(renew), True)
    if gone := by_kind.get(NoticeKind.RESUBSCRIBE):
        resubscribe.delay_on_commit(sorted(gone))


# ----- syncing


def _synced_user(synced_user_id):
    return (
        SyncedUser.objects.select_related("integration__company", "subscription")
        .filter(pk=synced_user_id)
        .first()
    )


# Outcomes of a run that held the mailbox (a change may have come while it ran).
CLAIMED = {sync.Status.OK, sync.Status.FAILED}


@shared_task(bind=True, max_retries=5)
def sync_mailbox(self, synced_user_id):
    synced_user = _synced_user(synced_user_id)
    if synced_user is None:
        return "gone"
    started = timezone.now()
    outcome = sync.sync_mailbox(synced_user, now=started)
    if outcome.status in CLAIMED:
        # A change that came while it ran: one trailing run, a burst window after this one.
        trailing = sync.take_trailing([synced_user_id], started, started + sync.BURST_WINDOW)
        _enqueue_interactive(dict.fromkeys(trailing, started + sync.BURST_WINDOW))
    if outcome.status == sync.Status.BUSY and not self.request.is_eager:
        # The run holding it reads again after it; if that run ended meanwhile, run now.
        if not sync.mark_trailing(synced_user_id):
            self.apply_async((synced_user_id,), countdown=0)
    elif outcome.retry and self.request.retries < self.max_retries:
        countdown = retry_countdown(self.request.retries)
        sync.stamp_retry([synced_user_id], countdown)
        raise self.retry(countdown=countdown)
    return outcome.status


@shared_task(bind=True, max_retries=5)
def sync_mailboxes(self, synced_user_ids):
    """A chunk of mailboxes of one integration, read with one bulk fetch (request_syncs)."""
    started = timezone.now()
    outcomes = sync.sync_mailboxes(synced_user_ids, now=started)
    # A person's change that came while the chunk ran gets its own run at once.
    claimed = [pk for pk, outcome in outcomes.items() if outcome.status in CLAIMED]
    trailing = sync.take_trailing(claimed, started, started) if claimed else []
    _enqueue_interactive(dict.fromkeys(trailing, timezone.now()))
    busy = [pk for pk, outcome in outcomes.items() if outcome.status == sync.Status.BUSY]
    if busy and not self.request.is_eager:
        self.apply_async((busy,), countdown=BUSY_RETRY_SECONDS)
    retry = [pk for pk, outcome in outcomes.items() if outcome.retry]
    if retry and self.request.retries < self.max_retries:
        # Only the mailboxes that failed for a passing reason go again.
        countdown = retry_countdown(self.request.retries)
        sync.stamp_retry(retry, countdown)
        raise self.retry(args=(retry,), countdown=countdown)
    counts = {}
    for outcome in outcomes.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


@shared_task
def reconcile_all_mailboxes(everyone=False):
    """Beat, 00:00 … 00:25 Stockholm time: the daily read as the window's leading day moves
    in, one sixth of the mailboxes per step (daily.leading_day_users), each step spread over
    five minutes. Run at any other time, every mailbox not read since midnight; `everyone`:
    every mailbox, however lately read (make run, after the sandbox rebuilt its calendars)."""
    users = SyncedUser.objects.all() if everyone else daily.leading_day_users(timezone.now())
    return request_syncs(users, spread_seconds=RECONCILE_SPREAD_SECONDS)


@shared_task
def reconcile_overdue_mailboxes():
    """Beat, hourly: mailboxes whose daily read did not happen (daily.overdue_users)."""
    users = daily.overdue_users(timezone.now())
    return request_syncs(users, spread_seconds=RECONCILE_SPREAD_SECONDS)


def sweep_lock_key(now) -> str:
    return f"mss:sync-sweep:{now:%Y%m%d%H%M}"


@shared_task
def sweep_sync_requests():
    """Beat, every minute: requests whose run never came (its message lost with a killed
    worker or a restarted Redis) run again, and mailboxes whose claim's lease ran out (their
    run died) are freed and requested again; in bulk chunks (sync.sweep). Subscriptions past
    their expiry (an EWS push subscription gone silent) are made again. Once a minute: sweeps
    that piled up behind a backlog of tasks skip."""
    if not cache.add(sweep_lock_key(timezone.now()), 1, timeout=120):
        return "skipped"
    found = sync.sweep()
    requested = request_syncs(SyncedUser.objects.filter(pk__in=found.released), countdown=0)
    return {
        "released": requested,
        "dropped": found.dropped,
        "lost": request_again(found.lost),
        "resubscribed": request_subscriptions(subscriptions.lost_users()),
    }


@shared_task
def purge_expired_bookings():
    return retention.purge_expired_bookings()


# ----- the daily One X audit


@shared_task(bind=True, max_retries=3)
def audit_onex(self, integration_id, after_user_id=0, counts=None):
    """One step of an integration's One X audit (audit.py): a step that used up its time
    hands the rest to the next task; the last one records the Activity."""
    integration = Integration.objects.select_related("company").filter(pk=integration_id).first()
    if integration is None:
        return "gone"
    with logcontext.integration(integration):
        result = audit.audit_integration(
            integration,
            after_user_id=after_user_id,
            carried=audit.AuditCounts.from_dict(counts),
            deadline=audit.step_deadline(),
        )
    if result.outcome == audit.Outcome.CONTINUES:
        request_audit(
            integration_id, after_user_id=result.resume_after, counts=result.counts.as_dict()
        )
    elif result.outcome == audit.Outcome.ONEX_FAILED and self.request.retries < self.max_retries:
        raise self.retry(countdown=audit.RETRY_SECONDS)
    return result.outcome


@shared_task
def audit_all_integrations():
    """Beat, daily: every syncing integration's One X audit, spread (audit.SPREAD_SECONDS)."""
    ids = list(
        Integration.objects.filter(active=True, status__in=Integration.SYNCING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for index, integration_id in enumerate(ids):
        request_audit(integration_id, countdown=index * audit.SPREAD_SECONDS // len(ids))
    return len(ids)


# ----- change-notification subscriptions


@shared_task(bind=True, max_retries=4)
def ensure_subscriptions(self, synced_user_ids, renew_all=False):
    """Subscribe, renew or recreate a chunk's subscriptions (subscriptions.ensure)."""
    users = (
        SyncedUser.objects.select_related("integration")
        .filter(pk__in=synced_user_ids)
        .order_by("integration_id")
    )
    failed = []
    for _integration_id, group in groupby(users, key=lambda user: user.integration_id):
        group = list(group)
        with logcontext.integration(group[0].integration):
            result = subscriptions.ensure(group, renew_all=renew_all)
        if result.resync:
            request_syncs(SyncedUser.objects.filter(pk__in=result.resync))
        failed += result.failed_ids
    # Not subscribed yet (e.g. our endpoint was not reachable for the provider's validation):
    # try a few more times; the renewal beat keeps trying after that.
    if failed and not self.request.is_eager and self.request.retries < self.max_retries:
        raise self.retry(args=(failed, renew_all), countdown=30 * 2**self.request.retries)


@shared_task
def renew_subscriptions():
    """Beat: subscribe mailboxes without a subscription, renew those close to expiry, retry
    failed ones, check those quiet for long (subscriptions.quiet_users); in parallel chunks.
    Integrations that do not sync are left alone."""
    due = request_subscriptions(subscriptions.due_users())
    return due + request_subscriptions(subscriptions.quiet_users(), renew_all=True)


@shared_task
def resubscribe(synced_user_ids):
    """The provider dropped these subscriptions: forget them, subscribe again, and sync what
    may have been missed meanwhile."""
    MailboxSubscription.objects.filter(synced_user_id__in=synced_user_ids).delete()
    users = SyncedUser.objects.filter(pk__in=synced_user_ids)
    request_subscriptions(users)
    request_syncs(users)


# ----- Katalog Synk: the users lists that follow groups


def membership_lock_key(integration_id: int) -> str:
    return f"mss:membership:{integration_id}"


@shared_task
def follow_groups(integration_id, confirmed=(), actor=None):
    """One membership run (calendarsync/membership.py), then the first syncs of the users it
    added and the removals of those who left every group."""
    integration = Integration.objects.filter(pk=integration_id).first()
    if integration is None or not integration.syncing:
        return "skipped"
    key = membership_lock_key(integration_id)
    if not cache.add(key, 1, timeout=MEMBERSHIP_LOCK_SECONDS):
        return "busy"
    try:
        with logcontext.integration(integration):
            outcome = membership.run(
                integration, actor=Actor.from_task_arg(actor), confirmed=confirmed
            )
    finally:
        cache.delete(key)
    ids = outcome.added_ids
    for start in range(0, len(ids), ADD_CHUNK):
        start_syncing(integration.users.filter(pk__in=ids[start : start + ADD_CHUNK]))
    for synced_user_id in outcome.removing_ids:
        request_user_removal(synced_user_id, record=False)
    return {"added": len(ids), "removed": outcome.removed, "held": len(outcome.held)}


@shared_task
def follow_all_groups():
    """Beat, every 15 minutes: every syncing integration that follows groups."""
    ids = (
        Integration.objects.filter(active=True, status__in=Integration.SYNCING)
        .exclude(user_source=Integration.UserSource.MANUAL)
        .filter(groups__isnull=False)
        .distinct()
        .values_list("pk", flat=True)
    )
    for integration_id in ids:
        follow_groups.delay(integration_id)
    return len(ids)


# ----- removing: what is left (a busy mailbox, entries One X did not delete) is retried.

removal_task = shared_task(
    bind=True,
    autoretry_for=(removal.RemovalIncomplete,),
    retry_kwargs={"max_retries": 20, "countdown": REMOVAL_RETRY_SECONDS},
)


@removal_task
def remove_synced_user(self, synced_user_id, actor=None, record=True):
    synced_user = _synced_user(synced_user_id)
    if synced_user is None:
        return "gone"
    with logcontext.integration(synced_user.integration):
        removal.remove_synced_user(synced_user, actor=Actor.from_task_arg(actor), record=record)
    return "removed"


@removal_task
def clear_integration(self, integration_id):
    """Aktiv off: unless it was switched on again meanwhile, its entries and subscriptions go."""
    integration = Integration.objects.filter(pk=integration_id, active=False).first()
    if integration is None or integration.status == Integration.Status.REMOVING:
        return "skipped"
    with logcontext.integration(integration):
        return removal.clear_integration(integration)


@removal_task
def remove_integration(self, integration_id):
    integration = Integration.objects.filter(
        pk=integration_id, status=Integration.Status.REMOVING
    ).first()
    if integration is None:
        return "gone"
    with logcontext.integration(integration):
        removal.remove_integration(integration)
    return "removed"
