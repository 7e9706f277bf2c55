"""Change-notification subscriptions, one per synced mailbox, through the provider interface.

`ensure` subscribes the mailboxes of a chunk that have none, renews those close to expiry and
recreates those the provider forgot; `end` unsubscribes. Both send their requests in parallel
threads (the provider's I/O only) and write the database from the calling thread, one row
per mailbox (ending them deletes the chunk's rows with one query).
Tasks run them per chunk (`tasks.request_subscriptions`), so 10,000 mailboxes are spread over
many tasks and workers instead of one long loop.
"""

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from . import providers
from .models import Integration, MailboxSubscription, SyncedUser
from .providers.base import (
    AccessLost,
    MailboxNotFound,
    ProviderError,
    Subscribed,
    SubscriptionGone,
)

logger = logging.getLogger(__name__)

CHUNK_SIZE = 100  # mailboxes per subscription task
PARALLEL = 16  # requests in flight per task
# Renew when less than this is left: late, so a Graph subscription (about 70 hours) costs
# one renewal every 64 hours, and early enough that the half-hourly beat has a dozen tries
# before it lapses.
RENEW_BEFORE = timedelta(hours=6)
LOST_REQUESTED_KEY = "mss:lost-subscription-requested:"
LOST_REQUEST_TTL = 600  # seconds: a request whose task never came is made again after this


@dataclass
class Ensured:
    failed_ids: list[int] = field(default_factory=list)
    resync: list[int] = field(default_factory=list)  # users that may have missed changes


def due_users():
    """Users of syncing integrations without a live subscription, or one expiring soon."""
    return SyncedUser.objects.may_sync().exclude(
        mailbox_subscription__status=MailboxSubscription.Status.ACTIVE,
        mailbox_subscription__expires_at__gt=timezone.now() + RENEW_BEFORE,
    )


def quiet_users():
    """Users of syncing Graph integrations whose live subscription has shown no sign of life
    (a notification, or its creation or last renewal) for longer than MSS_QUIET_MAILBOX_HOURS:
    a subscription Graph dropped without telling us looks just like a quiet mailbox, so these
    are renewed early, which recreates (and resyncs) one Graph no longer has. Renewing is the
    check, so an idle mailbox is checked once per quiet time and no more (its renewal time
    is read off its expiry, which each renewal moves to a full lifetime ahead).

    Rarely needed: Graph says when it drops a subscription (`subscriptionRemoved`) or loses
    notifications (`missed`), redelivering lifecycle events for hours, and the daily read
    brings in whatever was missed meanwhile. EWS subscriptions report in by themselves
    (status events keep their expiry fresh; lost_users catches those gone quiet)."""
    now, quiet = timezone.now(), timedelta(hours=settings.MSS_QUIET_MAILBOX_HOURS)
    lifetime = providers.provider_class(Integration.Kind.GRAPH).subscription_lifetime
    since = now - quiet
    subscriptions = MailboxSubscription.objects.filter(
        Q(last_notification_at__lt=since) | Q(last_notification_at__isnull=True),
        status=MailboxSubscription.Status.ACTIVE,
        expires_at__gt=now + RENEW_BEFORE,  # sooner ones are due_users anyway
        expires_at__lte=since + lifetime,  # renewed (or made) before the quiet time began
        synced_user__integration__kind=Integration.Kind.GRAPH,
        synced_user__in=SyncedUser.objects.may_sync(),
    )
    return SyncedUser.objects.filter(pk__in=subscriptions.values("synced_user_id"))


def lost_users():
    """Users of syncing integrations whose live subscription is past its expiry: an EWS push
    subscription that went silent (Exchange gave it up while our endpoint was down), or a
    Graph one whose renewals kept failing. The per-minute sweeper requests them at once
    (ensure resumes EWS from the watermark), so a gap costs minutes, not the half-hour of the
    renewal beat. Once per expiry: a resumed subscription gets a new one, so it is checked
    again when that passes; the cache remembers the request meanwhile."""
    now = timezone.now()
    subscriptions = MailboxSubscription.objects.filter(
        status=MailboxSubscription.Status.ACTIVE,
        expires_at__lte=now,
        synced_user__in=SyncedUser.objects.may_sync(),
    ).values_list("pk", "synced_user_id", "expires_at")
    due = [
        user_id
        for pk, user_id, expires_at in subscriptions
        if cache.add(f"{LOST_REQUESTED_KEY}{pk}:{expires_at.timestamp()}", 1, LOST_REQUEST_TTL)
    ]
    return SyncedUser.objects.filter(pk__in=due)


def ensure(users: Iterable[SyncedUser], *, renew_all: bool = False, provider=None) -> Ensured:
    """Subscribe, renew or recreate the subscriptions of `users` (one integration's).

    `renew_all` renews every live subscription now (a provider asked to reauthorize). Lost
    access stops the integration (needs attention) and the rest of the chunk.
    """
    users = [user for user in users if user.integration.syncing]
    result = Ensured()
    if not users:
        return result
    integration = users[0].integration
    provider = provider or providers.provider_for(integration)
    existing = {
        sub.synced_user_id: sub for sub in MailboxSubscription.objects.filter(synced_user__in=users)
    }
    # EWS subscriptions are "renewed" only once lost (their provider says 0).
    soon = timezone.now() + getattr(provider, "renew_before", RENEW_BEFORE)

    def work(user: SyncedUser) -> tuple[str, Subscribed | ProviderError]:
        current = existing.get(user.pk)
        live = current is not None and current.status == MailboxSubscription.Status.ACTIVE
        try:
            if live and not renew_all and current.expires_at and current.expires_at > soon:
                return "kept", None
            if live:
                try:
                    return "renewed", provider.renew(current.provider_subscription_id)
                except SubscriptionGone:
                    return "recreated", provider.subscribe(user.email)
            return "subscribed", provider.subscribe(user.email)
        except ProviderError as exc:
            return "failed", exc

    for user, (action, answer) in zip(users, _parallel(work, users), strict=True):
        if isinstance(answer, AccessLost):
            # Graph drops an app's subscriptions itself when its access goes.
            integration.needs_attention(answer)
            break
        if action == "failed":
            result.failed_ids.append(user.pk)
            _record_failure(user, existing.get(user.pk), answer)
        elif action == "renewed":
            _record_renewal(existing[user.pk], answer)
        elif action in ("subscribed", "recreated"):
            if _record_new(user, answer, provider) and action == "recreated":
                result.resync.append(user.pk)
    return result


def _record_new(user: SyncedUser, subscribed: Subscribed, provider) -> bool:
    fields = {
        "provider_subscription_id": subscribed.id,
        "expires_at": subscribed.expires_at,
        "client_state": subscribed.secret,
        "watermark": subscribed.watermark,
        "status": MailboxSubscription.Status.ACTIVE,
        "last_error": "",
    }
    try:
        # Plain UPDATE, else INSERT: no read-then-write transaction (SQLite answers those
        # with "database is locked" at once when another process is writing).
        if not MailboxSubscription.objects.filter(synced_user=user).update(**fields):
            MailboxSubscription.objects.create(synced_user=user, **fields)
    except DatabaseError:
        # The provider has a subscription we could not record (the user was removed
        # meanwhile, say): end it rather than leak it.
        logger.warning("Subscription for user %s not recorded; ending it", user.pk)
        _quietly_unsubscribe(provider, subscribed.id)
        return False
    return True


def _record_renewal(subscription: MailboxSubscription, renewed: Subscribed) -> None:
    # A renewal may come back as a new subscription (EWS subscribes again from its watermark).
    subscription.provider_subscription_id = renewed.id
    subscription.watermark = renewed.watermark or subscription.watermark
    subscription.expires_at = renewed.expires_at
    subscription.status = MailboxSubscription.Status.ACTIVE
    subscription.last_error = ""
    fields = ["provider_subscription_id", "watermark", "expires_at", "status", "last_error"]
    subscription.save(update_fields=fields)


def _record_failure(user, subscription, exc: ProviderError) -> None:
    message = (
        _("The mailbox was not found.")
        if isinstance(exc, MailboxNotFound)
        else _("Change notifications could not be set up: %(error)s") % {"error": exc.code}
    )
    logger.warning("Subscription for user %s failed: %s", user.pk, exc.code)
    if subscription is not None:
        subscription.status = MailboxSubscription.Status.FAILED
        subscription.last_error = message
        subscription.save(update_fields=["status", "last_error"])


def end(subscriptions: Iterable[MailboxSubscription], integration: Integration, provider=None):
    """Unsubscribe and delete these subscription rows (of one integration); returns how many
    ended. Without access the provider has dropped them itself, so they count as ended."""
    subscriptions = list(subscriptions)
    if not subscriptions:
        return 0
    provider = provider or providers.provider_for(integration)

    def work(subscription):
        return _quietly_unsubscribe(provider, subscription.provider_subscription_id)

    ended = [
        sub.pk for sub, ok in zip(subscriptions, _parallel(work, subscriptions), strict=True) if ok
    ]
    MailboxSubscription.objects.filter(pk__in=ended).delete()
    return len(ended)


def _quietly_unsubscribe(provider, subscription_id: str) -> bool:
    try:
        provider.unsubscribe(subscription_id)
    except (AccessLost, SubscriptionGone):
        return True  # without access the provider drops its subscriptions itself
    except ProviderError as exc:
        logger.warning("Could not end subscription: %s", exc.code)
        return False
    return True


def _parallel(work: Callable, items: list) -> list:
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(items)))) as pool:
        return list(pool.map(work, items))
