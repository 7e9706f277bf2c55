from celery import shared_task

from . import retention, sync
from .models import SyncedUser


@shared_task
def purge_expired_bookings():
    return retention.purge_expired_bookings()


# A run that found its mailbox busy tries again this much later (the pending request stays).
BUSY_RETRY_SECONDS = 30


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
    if outcome.status == "busy" and not self.request.is_eager:
        self.apply_async((synced_user_id,), countdown=BUSY_RETRY_SECONDS)
    elif outcome.retry and self.request.retries < self.max_retries:
        raise self.retry(countdown=min(60 * 2**self.request.retries, 900))
    return outcome.status


@shared_task(bind=True, max_retries=5)
def sync_mailboxes(self, synced_user_ids):
    """A chunk of mailboxes of one integration, read with one bulk fetch (sync.request_syncs)."""
    outcomes = sync.sync_mailboxes(synced_user_ids)
    busy = [pk for pk, outcome in outcomes.items() if outcome.status == "busy"]
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
    return sync.request_all_syncs()


@shared_task(bind=True, max_retries=10)
def remove_synced_user(self, synced_user_id):
    synced_user = _synced_user(synced_user_id)
    if synced_user is None:
        return "gone"
    try:
        sync.remove_synced_user(synced_user)
    except (sync.SyncBusy, sync.RemovalIncomplete) as exc:
        raise self.retry(countdown=60, exc=exc) from exc
    return "removed"


# ----- Exchange Online change notifications (calendarsync.notifications)


@shared_task(bind=True, max_retries=4)
def ensure_graph_subscription(self, synced_user_id):
    from .notifications import ensure_subscription

    user = SyncedUser.objects.select_related("integration").filter(pk=synced_user_id).first()
    if user is None or ensure_subscription(user) is not None or not user.integration.syncing:
        return
    # Not subscribed yet (e.g. our webhook was not reachable for Graph's validation): try a
    # few more times; the renewal beat keeps trying after that.
    if not self.request.is_eager and self.request.retries < self.max_retries:
        raise self.retry(countdown=30 * 2**self.request.retries)


@shared_task
def renew_graph_subscriptions():
    from .notifications import renew_due

    return renew_due()


@shared_task
def handle_graph_lifecycle(mailbox_subscription_id, event):
    from .models import MailboxSubscription
    from .notifications import handle_lifecycle

    subscription = (
        MailboxSubscription.objects.select_related("synced_user__integration")
        .filter(pk=mailbox_subscription_id)
        .first()
    )
    if subscription is not None:
        handle_lifecycle(subscription, event)


@shared_task
def delete_graph_subscription(tenant_id, provider_subscription_id):
    from .notifications import delete_remote

    delete_remote(tenant_id, provider_subscription_id)
