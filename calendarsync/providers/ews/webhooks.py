"""The EWS notification service: where customers' Exchange servers POST SendNotification.

Served at /MSS/services/EWSNotificationService (the seed's firewall table). A notification
proves itself by naming a subscription we hold; it is answered at once: OK, with its
watermark kept and its mailbox marked dirty (the sync runs later in a worker), or Unsubscribe
for a subscription we no longer hold, which is how a push subscription ends (one made a moment
ago and not yet recorded gets a 503: Exchange retries it; one resumed from our watermark and
delivering before Exchange answered us is known by that watermark and taken at once). A
notification the product cannot record (database or broker away) gets a 503 too. Status events
only keep the subscription alive.
"""

import logging

from django.core.cache import cache
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from exchangelib.properties import StatusEvent
from exchangelib.services import SendNotification

from calendarsync import metrics, tasks
from calendarsync.models import Integration, MailboxSubscription

from ..base import Notice, NoticeKind
from .provider import RESUMING, SUBSCRIBING, lost_after

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
SOAP = "text/xml; charset=utf-8"


def _answer(payload: bytes) -> HttpResponse:
    return HttpResponse(payload, content_type=SOAP)


@csrf_exempt
@require_POST
@metrics.notification_endpoint(metrics.EWS)
def receive(request) -> HttpResponse:
    if len(request.body) > MAX_BODY_BYTES:
        return HttpResponse(status=400)
    service = SendNotification(protocol=None)
    try:
        notifications = list(service.parse(request.body))
    except Exception:  # noqa: BLE001 - any body exchangelib cannot read is not Exchange's
        logger.info("An EWS notification that could not be parsed; answered 400")
        return HttpResponse(status=400)
    try:
        return _record(service, notifications)
    except tasks.NOT_RECORDED:
        # The database or the broker is away: not recorded, and Exchange delivers it again.
        logger.warning("EWS notification not recorded; answered 503", exc_info=True)
        return HttpResponse(status=503)


def _adopt_resumed(notifications) -> None:
    """A subscription resumed from our watermark delivers its backlog at once, even before
    Exchange answered us with its id: its first notification names that watermark as the
    previous one. Its row takes the new id now (the resume records the same id when Exchange
    answers), so the backlog is taken at once instead of after Exchange's retries."""
    for notification in notifications:
        previous = notification.previous_watermark
        if previous and cache.get(RESUMING + previous):
            MailboxSubscription.objects.filter(
                watermark=previous, synced_user__integration__kind=Integration.Kind.EWS
            ).update(provider_subscription_id=notification.subscription_id)


def _record(service: SendNotification, notifications) -> HttpResponse:
    def held_subscriptions():
        return {
            sub.provider_subscription_id: sub
            for sub in MailboxSubscription.objects.filter(
                provider_subscription_id__in=[n.subscription_id for n in notifications],
                synced_user__integration__kind=Integration.Kind.EWS,
            ).select_related("synced_user")
        }

    held = held_subscriptions()
    if not held:
        _adopt_resumed(notifications)
        held = held_subscriptions()
    if not held:
        if any(cache.get(SUBSCRIBING + str(n.subscription_id)) for n in notifications):
            return HttpResponse(status=503)  # just made, not yet recorded: Exchange retries
        logger.info("EWS notification of %d unknown subscription(s)", len(notifications))
        metrics.NOTIFICATIONS_REFUSED.labels(metrics.EWS, "unsubscribed").inc()
        return _answer(service.unsubscribe_payload())
    notices, now, kept = [], timezone.now(), {}
    for notification in notifications:
        subscription = held.get(notification.subscription_id)
        if subscription is None:
            continue
        events = list(notification.events or ())
        watermarks = [event.watermark for event in events if event.watermark]
        if watermarks:
            subscription.watermark = watermarks[-1]
        subscription.expires_at = now + lost_after()
        kept[subscription.pk] = subscription
        if any(not isinstance(event, StatusEvent) for event in events):
            notices.append(Notice(subscription.pk, subscription.synced_user_id, NoticeKind.CHANGED))
    # One UPDATE for the whole POST's watermarks and expiries.
    MailboxSubscription.objects.bulk_update(kept.values(), ["watermark", "expires_at"])
    tasks.act_on_notices(notices)
    return _answer(service.ok_payload())
