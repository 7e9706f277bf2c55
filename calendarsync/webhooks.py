"""Microsoft Graph change-notification endpoints (called by Microsoft, not by people).

Both answer Graph's validation handshake with the token as text/plain. Notifications are
answered 202 at once: each one proves itself with its subscription's clientState (compared in
constant time) and then only marks its mailbox dirty; the sync runs later in a worker. An
unknown subscription or a wrong clientState is logged and never acted on.
"""

import hmac
import json
import logging

from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import MailboxSubscription

logger = logging.getLogger(__name__)

MAX_VALIDATION_TOKEN = 1024


def _validation_response(request) -> HttpResponse | None:
    token = request.GET.get("validationToken")
    if token is None:
        return None
    # Django has already URL-decoded it; echo it verbatim, as plain text, never as HTML.
    return HttpResponse(token[:MAX_VALIDATION_TOKEN], content_type="text/plain; charset=utf-8")


def _notifications(request) -> list | None:
    """The body's `value` list, or None when the body is not the JSON object Graph sends."""
    try:
        notifications = json.loads(request.body or b"{}").get("value") or []
    except (ValueError, AttributeError):
        notifications = None
    if not isinstance(notifications, list):
        logger.warning("Graph webhook: body is not a notification list; ignored")
        return None
    return notifications


def _proven(notifications) -> list[tuple[MailboxSubscription, dict]]:
    """The notifications whose subscription and clientState check out."""
    notifications = [n for n in notifications or [] if isinstance(n, dict)]
    ids = {str(n.get("subscriptionId", "")) for n in notifications}
    known = {
        sub.provider_subscription_id: sub
        for sub in MailboxSubscription.objects.filter(provider_subscription_id__in=ids)
        .filter(synced_user__integration__kind="graph")
        .select_related("synced_user__integration")
    }
    proven = []
    for notification in notifications:
        subscription = known.get(str(notification.get("subscriptionId", "")))
        if subscription is None:
            logger.warning("Graph webhook: unknown subscription; ignored")
            continue
        given = str(notification.get("clientState") or "").encode()
        if not subscription.client_state or not hmac.compare_digest(
            given, subscription.client_state.encode()
        ):
            logger.warning(
                "Graph webhook: wrong clientState for subscription %s; ignored", subscription.pk
            )
            continue
        tenant = notification.get("tenantId")
        if tenant and tenant != subscription.synced_user.integration.tenant_id:
            logger.warning("Graph webhook: tenant mismatch for subscription %s", subscription.pk)
            continue
        proven.append((subscription, notification))
    return proven


def _answer(proven, notifications) -> HttpResponse:
    # 202 once anything proved itself (or there was nothing to prove); else refused.
    if proven or notifications == []:
        return HttpResponse(status=202)
    return HttpResponse(status=403)


@csrf_exempt
@require_POST
def graph_notifications(request):
    validation = _validation_response(request)
    if validation is not None:
        return validation
    notifications = _notifications(request)
    proven = _proven(notifications)
    from .sync import request_sync

    # A burst for one mailbox costs one sync.
    subscriptions = {subscription.pk: subscription for subscription, _ in proven}
    if subscriptions:
        MailboxSubscription.objects.filter(pk__in=subscriptions).update(
            last_notification_at=timezone.now()
        )
    for subscription in subscriptions.values():
        if subscription.synced_user.integration.syncing:
            request_sync(subscription.synced_user)
    return _answer(proven, notifications)


@csrf_exempt
@require_POST
def graph_lifecycle(request):
    validation = _validation_response(request)
    if validation is not None:
        return validation
    notifications = _notifications(request)
    proven = _proven(notifications)
    from .tasks import handle_graph_lifecycle

    for subscription, notification in proven:
        event = str(notification.get("lifecycleEvent", ""))
        logger.info("Graph lifecycle event %s for subscription %s", event, subscription.pk)
        handle_graph_lifecycle.delay_on_commit(subscription.pk, event)
    return _answer(proven, notifications)
