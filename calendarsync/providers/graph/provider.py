"""The Exchange Online provider: reads, subscriptions and notices through Microsoft Graph."""

import hmac
import json
import logging
import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from calendarsync import logcontext
from calendarsync.models import MailboxSubscription

from .. import register
from ..base import (
    AccessLost,
    BadNotification,
    MailboxNotFound,
    Notice,
    NoticeKind,
    ProviderError,
    Subscribed,
)
from .client import (
    BATCH_LIMIT,
    PAGE_SIZE,
    GraphClient,
    classify_graph_error,
    confirm_tenant,
    graph_time,
    graph_window_time,
)
from .mapping import addin_property_id, calendar_view_select, items_from_graph, window_with_margin

logger = logging.getLogger(__name__)

# Outlook event subscriptions live at most 4,230 minutes; ask for a little less.
SUBSCRIPTION_MINUTES = 4200
# Graph's lifecycle events → what the sync core does about them.
LIFECYCLE_NOTICES = {
    "reauthorizationRequired": NoticeKind.RENEW,
    "subscriptionRemoved": NoticeKind.RESUBSCRIBE,
    "missed": NoticeKind.MISSED,
}
MAX_NOTIFICATION_BYTES = 1_000_000  # Graph sends small batches; refuse anything far larger


@register("graph")
class GraphProvider:
    """Exchange Online for one integration (the core's CalendarProvider)."""

    bulk_size = BATCH_LIMIT  # one $batch
    # What a subscription or renewal asks for, and gets (Outlook events allow 4,230 minutes):
    # subscriptions.quiet_users reads a renewal's time off the expiry it set.
    subscription_lifetime = timedelta(minutes=SUBSCRIPTION_MINUTES)

    def __init__(self, tenant_id: str, *, parallel_batches: int = 8, client=None):
        self.tenant_id = tenant_id
        self.parallel_batches = parallel_batches
        if client is not None:
            self.client = client

    @classmethod
    def for_integration(cls, integration) -> "GraphProvider":
        return cls(integration.tenant_id)

    @cached_property
    def client(self) -> GraphClient:
        return GraphClient(self.tenant_id)  # no tenant yet: ConsentRevoked on first use

    def _view_path(self, mailbox: str, start: datetime, end: datetime, include_subject: bool):
        first, last = window_with_margin(start, end)
        params = {
            "startDateTime": graph_window_time(first),
            "endDateTime": graph_window_time(last),
            "$select": calendar_view_select(include_subject=include_subject),
            "$expand": (
                "singleValueExtendedProperties($filter=id eq "
                f"'{addin_property_id(settings.MS_ADDIN_ID)}')"
            ),
        }
        return f"/users/{mailbox}/calendarView?{urlencode(params)}"

    HEADERS = {"Prefer": f'outlook.timezone="UTC", odata.maxpagesize={PAGE_SIZE}'}

    @staticmethod
    def _in_window(items, start, end):
        return [item for item in items if item.start < end and item.end > start]

    def fetch(self, mailbox, start, end, *, include_subject):
        events, url = [], self._view_path(mailbox, start, end, include_subject)
        while url:
            page = self.client.request("GET", url, mailbox=mailbox, headers=self.HEADERS)
            events.extend(page.get("value", []))
            url = page.get("@odata.nextLink")
        return self._in_window(
            items_from_graph(events, include_subject=include_subject), start, end
        )

    def fetch_many(self, mailboxes: Iterable[str], start, end, *, include_subject):
        """Up to 20 mailboxes per $batch, batches in parallel, pages followed in later rounds.

        A mailbox-level failure is that mailbox's error. Lost access raises: it concerns the
        whole integration.
        """
        mailboxes = list(dict.fromkeys(mailboxes))
        chunks = [mailboxes[i : i + BATCH_LIMIT] for i in range(0, len(mailboxes), BATCH_LIMIT)]
        results: dict = {}
        if not chunks:
            return results
        with ThreadPoolExecutor(max_workers=min(self.parallel_batches, len(chunks))) as pool:
            read = logcontext.carried(
                lambda chunk: self._fetch_chunk(chunk, start, end, include_subject)
            )
            for chunk_result in pool.map(read, chunks):
                results.update(chunk_result)
        return results

    def _fetch_chunk(self, mailboxes, start, end, include_subject):
        events: dict[str, list] = {m: [] for m in mailboxes}
        errors: dict[str, ProviderError] = {}
        next_url = {m: self._view_path(m, start, end, include_subject) for m in mailboxes}
        denied = []
        base = settings.MS_GRAPH_URL.rstrip("/")
        while next_url:
            ids = {str(n): mailbox for n, mailbox in enumerate(next_url)}
            steps = [
                {
                    "id": step_id,
                    "method": "GET",
                    "url": next_url[mailbox].removeprefix(base),
                    "headers": self.HEADERS,
                    "mailbox": mailbox,
                }
                for step_id, mailbox in ids.items()
            ]
            responses = self.client.batch(steps)
            next_url = {}
            for step_id, mailbox in ids.items():
                response = responses[step_id]
                status, body = response.get("status"), response.get("body")
                if status == 200:
                    events[mailbox].extend(body.get("value", []))
                    if body.get("@odata.nextLink"):
                        next_url[mailbox] = body["@odata.nextLink"]
                    continue
                error = classify_graph_error(status, body, mailbox=mailbox)
                if isinstance(error, AccessLost):
                    denied.append((mailbox, error))
                else:
                    errors[mailbox] = error
        if denied and len(denied) == len(mailboxes):
            raise denied[0][1]
        # Some mailboxes readable, some denied: the app's access is scoped (RBAC for
        # Applications), not revoked — the denied ones are those users' errors.
        for mailbox, _ in denied:
            errors[mailbox] = MailboxNotFound("mailbox not readable by the app (access denied)")
        return {
            mailbox: errors.get(mailbox)
            or self._in_window(
                items_from_graph(events[mailbox], include_subject=include_subject), start, end
            )
            for mailbox in mailboxes
        }

    # ----- proving the connection and change notifications

    def verify(self) -> None:
        confirm_tenant(self.tenant_id)

    def subscribe(self, mailbox: str) -> Subscribed:
        client_state = secrets.token_urlsafe(48)  # ≤ 128 characters, as Graph requires
        response = self.client.request(
            "POST",
            "/subscriptions",
            mailbox=mailbox,
            json={
                "changeType": "created,updated,deleted",
                "resource": f"/users/{mailbox}/events",
                "notificationUrl": _public_url("calendarsync:graph_notifications"),
                "lifecycleNotificationUrl": _public_url("calendarsync:graph_lifecycle"),
                "expirationDateTime": graph_time(_wanted_expiry()),
                "clientState": client_state,
            },
        )
        return Subscribed(response["id"], _expiry(response), secret=client_state)

    def renew(self, subscription_id: str) -> Subscribed:
        """PATCH a later expiry; Graph counts a renewal as a reauthorization too."""
        response = self.client.request(
            "PATCH",
            f"/subscriptions/{subscription_id}",
            json={"expirationDateTime": graph_time(_wanted_expiry())},
        )
        return Subscribed(subscription_id, _expiry(response))

    def unsubscribe(self, subscription_id: str) -> None:
        self.client.delete_subscription(subscription_id)

    @classmethod
    def verified_notices(cls, body: bytes) -> list[Notice]:
        """Notices from a change or lifecycle notification POST. Each notification proves
        itself with its subscription's clientState (compared in constant time) and tenant."""
        return cls.read_notices(body).notices

    @classmethod
    def read_notices(cls, body: bytes) -> "ReadNotices":
        """verified_notices, and how many notifications failed their proof (a wrong
        clientState or tenant: not Graph's); those of unknown subscriptions are only logged."""
        notifications = _notification_list(body)
        ids = {str(n.get("subscriptionId", "")) for n in notifications}
        known = {
            sub.provider_subscription_id: sub
            for sub in MailboxSubscription.objects.filter(provider_subscription_id__in=ids)
            .filter(synced_user__integration__kind="graph")
            .select_related("synced_user__integration")
        }
        unknown = unproven = 0
        notices = []
        for notification in notifications:
            subscription = known.get(str(notification.get("subscriptionId", "")))
            if subscription is None:
                unknown += 1
                continue
            given = str(notification.get("clientState") or "").encode()
            if not subscription.client_state or not hmac.compare_digest(
                given, subscription.client_state.encode()
            ):
                logger.warning("Graph notification: wrong clientState for %s", subscription.pk)
                unproven += 1
                continue
            tenant = notification.get("tenantId")
            if tenant and tenant != subscription.synced_user.integration.tenant_id:
                logger.warning("Graph notification: tenant mismatch for %s", subscription.pk)
                unproven += 1
                continue
            event = notification.get("lifecycleEvent")
            kind = LIFECYCLE_NOTICES.get(str(event)) if event else NoticeKind.CHANGED
            if kind is None:
                logger.info("Graph notification: unknown lifecycle event %r ignored", event)
                continue
            notices.append(Notice(subscription.pk, subscription.synced_user_id, kind))
        if unknown:
            logger.warning("Graph notification: %d for unknown subscriptions ignored", unknown)
        return ReadNotices(notices, unproven)


@dataclass(frozen=True)
class ReadNotices:
    notices: list[Notice]
    unproven: int  # notifications of subscriptions we hold whose proof failed


def _notification_list(body: bytes) -> list[dict]:
    """The body's `value` list of objects; BadNotification for anything Graph never sends."""
    if len(body) > MAX_NOTIFICATION_BYTES:
        raise BadNotification("notification body too large")
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise BadNotification("notification body is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("value", []), list):
        raise BadNotification("notification body is not a notification list")
    return [n for n in data.get("value", []) if isinstance(n, dict)]


def _public_url(name: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse(name)


def _wanted_expiry() -> datetime:
    return timezone.now() + timedelta(minutes=SUBSCRIPTION_MINUTES)


def _expiry(response: dict) -> datetime:
    return parse_datetime(str(response.get("expirationDateTime") or "")) or _wanted_expiry()
