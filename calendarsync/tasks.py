"""Celery tasks, and the one module that enqueues them.

Every enqueue goes through the `request_*` functions at the top and happens after the
current transaction commits, so a worker always sees the rows it is handed. Tasks take ids,
load rows, and call one plain function of the sync core.
"""

from itertools import groupby

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from . import actors, removal, retention, subscriptions, sync
from .actors import Actor
from .models import Integration, MailboxSubscription, SyncedUser
from .providers.base import Notice, NoticeKind

DEBOUNCE_SECONDS = 5  # a burst of notifications for one mailbox costs one run
# Bulk requests spread their chunks over this many seconds (one chunk a second) so a resync
# of thousands of mailboxes does not start in one second; the periodic reconcile spreads wider.
RESYNC_SPREAD_SECONDS = 60
RECONCILE_SPREAD_SECONDS = 300
# A run that found its mailbox busy tries again this much later (the pending request stays).
BUSY_RETRY_SECONDS = 30
REMOVAL_RETRY_SECONDS = 60


# ----- enqueueing, after commit


def request_sync(synced_user_id: int, *, countdown: int = DEBOUNCE_SECONDS) -> bool:
    """Mark one mailbox dirty; enqueue a run unless one is pending. True if enqueued."""
    if not sync.stamp_request(synced_user_id):
        return False
    transaction.on_commit(lambda: sync_mailbox.apply_async((synced_user_id,), countdown=countdown))
    return True


def request_syncs(
    users, *, countdown: int = DEBOUNCE_SECONDS, spread_seconds: int = RESYNC_SPREAD_SECONDS
) -> int:
    """Mark many mailboxes (a SyncedUser queryset) dirty; the ones without a pending run get
    one, in chunks the provider reads with one bulk request. Returns how many were requested.
    The first chunk starts after `countdown` seconds, one more each second up to
    `spread_seconds`."""
    chunks = sync.stamp_requests(users)

    def enqueue():
        for index, chunk in enumerate(chunks):
            sync_mailboxes.apply_async(
                (chunk,), countdown=countdown + index % max(spread_seconds, 1)
            )

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


def request_user_removal(synced_user_id: int, *, actor: Actor = actors.SYSTEM) -> None:
    remove_synced_user.delay_on_commit(synced_user_id, actor.as_task_arg())


def request_clear(integration: Integration) -> None:
    """Aktiv off: end the integration's subscriptions and delete its One X entries."""
    clear_integration.delay_on_commit(integration.pk)


def request_integration_removal(integration: Integration) -> None:
    remove_integration.delay_on_commit(integration.pk)


def act_on_notices(notices: list[Notice]) -> None:
    """What a provider's notification endpoint hands over: each mailbox is synced once,
    subscriptions are renewed or made again as the provider asked."""
    MailboxSubscription.objects.filter(
        pk__in={notice.mailbox_subscription_id for notice in notices}
    ).update(last_notification_at=timezone.now())
    by_kind: dict[NoticeKind, set[int]] = {}
    for notice in notices:
        by_kind.setdefault(notice.kind, set()).add(notice.synced_user_id)
    for user_id in by_kind.get(NoticeKind.CHANGED, set()) | by_kind.get(NoticeKind.MISSED, set()):
        request_sync(user_id)
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


@shared_task(bind=True, max_retries=5)
def sync_mailbox(self, synced_user_id):
    synced_user = _synced_user(synced_user_id)
    if synced_user is None:
        return "gone"
    outcome = sync.sync_mailbox(synced_user)
    if outcome.status == sync.Status.BUSY and not self.request.is_eager:
        self.apply_async((synced_user_id,), countdown=BUSY_RETRY_SECONDS)
    elif outcome.retry and self.request.retries < self.max_retries:
        raise self.retry(countdown=min(60 * 2**self.request.retries, 900))
    return outcome.status


@shared_task(bind=True, max_retries=5)
def sync_mailboxes(self, synced_user_ids):
    """A chunk of mailboxes of one integration, read with one bulk fetch (request_syncs)."""
    outcomes = sync.sync_mailboxes(synced_user_ids)
    busy = [pk for pk, outcome in outcomes.items() if outcome.status == sync.Status.BUSY]
    if busy and not self.request.is_eager:
        self.apply_async((busy,), countdown=BUSY_RETRY_SECONDS)
    retry = [pk for pk, outcome in outcomes.items() if outcome.retry]
    if retry and self.request.retries < self.max_retries:
        # Only the mailboxes that failed for a passing reason go again.
        raise self.retry(args=(retry,), countdown=min(60 * 2**self.request.retries, 900))
    counts = {}
    for outcome in outcomes.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


@shared_task
def reconcile_all_mailboxes():
    """Beat: every mailbox of every syncing integration, spread over five minutes."""
    return request_syncs(SyncedUser.objects.all(), spread_seconds=RECONCILE_SPREAD_SECONDS)


@shared_task
def purge_expired_bookings():
    return retention.purge_expired_bookings()


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
        result = subscriptions.ensure(list(group), renew_all=renew_all)
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
    failed ones; in parallel chunks. Integrations that do not sync are left alone."""
    return request_subscriptions(subscriptions.due_users())


@shared_task
def resubscribe(synced_user_ids):
    """The provider dropped these subscriptions: forget them, subscribe again, and sync what
    may have been missed meanwhile."""
    MailboxSubscription.objects.filter(synced_user_id__in=synced_user_ids).delete()
    users = SyncedUser.objects.filter(pk__in=synced_user_ids)
    request_subscriptions(users)
    request_syncs(users)


# ----- removing: what is left (a busy mailbox, entries One X did not delete) is retried.

removal_task = shared_task(
    bind=True,
    autoretry_for=(removal.RemovalIncomplete,),
    retry_kwargs={"max_retries": 20, "countdown": REMOVAL_RETRY_SECONDS},
)


@removal_task
def remove_synced_user(self, synced_user_id, actor=None):
    synced_user = _synced_user(synced_user_id)
    if synced_user is None:
        return "gone"
    removal.remove_synced_user(synced_user, actor=Actor.from_task_arg(actor))
    return "removed"


@removal_task
def clear_integration(self, integration_id):
    """Aktiv off: unless it was switched on again meanwhile, its entries and subscriptions go."""
    integration = Integration.objects.filter(pk=integration_id, active=False).first()
    if integration is None or integration.status == Integration.Status.REMOVING:
        return "skipped"
    return removal.clear_integration(integration)


@removal_task
def remove_integration(self, integration_id):
    integration = Integration.objects.filter(
        pk=integration_id, status=Integration.Status.REMOVING
    ).first()
    if integration is None:
        return "gone"
    removal.remove_integration(integration)
    return "removed"
