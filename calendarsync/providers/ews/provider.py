"""The Exchange On Prem provider: window reads and push subscriptions over EWS, impersonated.

A push subscription lives while Exchange can deliver to us: it sends the mailbox's events and a
status event every EWS_STATUS_FREQUENCY minutes. We count it lost when nothing arrived for
LATE_STATUS_GRACE more than that (`expires_at`), and then (the per-minute sweeper asks) subscribe
again from the last watermark, so the events of the gap are delivered after all; a
watermark Exchange no longer knows means a new subscription and a full resync of the window.
Exchange has no Unsubscribe for push: a subscription ends when we answer its next
notification with Unsubscribe (webhooks.py).
"""

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from exchangelib import EWSDateTime
from exchangelib import errors as ews_errors

from calendarsync import logcontext
from calendarsync.models import MailboxSubscription

from .. import register
from ..base import (
    AccessLost,
    BadNotification,
    ItemNotFound,
    ProviderError,
    Subscribed,
    SubscriptionGone,
)
from . import client, connection_test
from .mapping import ADDIN_FIELD, items_from_ews, register_addin_property, view_fields

logger = logging.getLogger(__name__)

SUBSCRIBING = "ews-subscribing:"  # cache key prefix: a subscription made, not yet recorded
RESUMING = "ews-resuming:"  # cache key prefix: a watermark being subscribed again from
SUBSCRIBING_SECONDS = 300


# A status event this late is one Exchange no longer sends (it keeps to its period within
# seconds). Resubscribing from the watermark when one was only late costs one request and
# loses nothing; waiting longer delays every change made while our endpoint was down.
LATE_STATUS_GRACE = timedelta(seconds=20)


def lost_after() -> timedelta:
    """How long without any notification (not even a status event) a subscription counts as
    lost."""
    return timedelta(minutes=settings.EWS_STATUS_FREQUENCY) + LATE_STATUS_GRACE


@register("ews")
class EwsProvider:
    """Exchange on-premises for one integration (the core's CalendarProvider)."""

    bulk_size = 10  # mailboxes read in parallel per request of the core (within throttling)
    renew_before = timedelta(0)  # "renewing" is subscribing again once a subscription is lost

    def __init__(self, integration):
        self.integration = integration
        register_addin_property(settings.MS_ADDIN_ID)

    @classmethod
    def for_integration(cls, integration) -> "EwsProvider":
        return cls(integration)

    def fetch(self, mailbox, start, end, *, include_subject):
        # A day more on each side: all-day items are days, and can fall off the window's edge.
        first, last = start - timedelta(days=1), end + timedelta(days=1)
        try:
            view = (
                client.calendar(self.integration, mailbox)
                .view(start=EWSDateTime.from_datetime(first), end=EWSDateTime.from_datetime(last))
                .only(*view_fields(include_subject=include_subject))
            )
            items = items_from_ews(view, include_subject=include_subject)
        except Exception as exc:  # noqa: BLE001 - classify() re-raises what it does not know
            raise client.classify(exc) from exc
        return [item for item in items if item.start < end and item.end > start]

    def fetch_many(self, mailboxes: Iterable[str], start, end, *, include_subject):
        mailboxes = list(mailboxes)
        results: dict[str, list | ProviderError] = {}
        if not mailboxes:
            return results

        def read(mailbox):
            try:
                return mailbox, self.fetch(mailbox, start, end, include_subject=include_subject)
            except AccessLost:
                raise
            except ProviderError as exc:
                return mailbox, exc

        workers = min(settings.EWS_MAX_CONNECTIONS, len(mailboxes))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for mailbox, result in pool.map(logcontext.carried(read), mailboxes):
                results[mailbox] = result
        return results

    def addin_properties(self, mailbox: str, item_id: str) -> dict:
        """The add-in's custom properties on one of the mailbox's own bookings (GetItem,
        impersonating the mailbox; ReadsAddinProperties)."""
        try:
            calendar = client.calendar(self.integration, mailbox)
            found = list(
                calendar.account.fetch(
                    ids=[(item_id, None)],
                    folder=calendar,
                    only_fields=["my_response_type", ADDIN_FIELD],
                )
            )
        except Exception as exc:  # noqa: BLE001 - classify() re-raises what it does not know
            raise client.classify(exc) from exc
        item = found[0] if found else ews_errors.ErrorItemNotFound("no item")
        if isinstance(item, ews_errors.ErrorItemNotFound | ews_errors.ErrorInvalidIdMalformed):
            raise ItemNotFound(type(item).__name__)
        if isinstance(item, Exception):
            raise client.classify(item)
        if getattr(item, "my_response_type", None) != "Organizer":
            return {}  # an invitation: its properties came from the organiser's copy
        try:
            properties = json.loads(getattr(item, ADDIN_FIELD, None) or "{}")
        except ValueError:
            return {}
        return properties if isinstance(properties, dict) else {}

    def verify(self) -> None:
        """The URL, TLS and the service account (exchangelib's version probe), then
        impersonation of the first synced mailbox, if there is one."""
        try:
            client.server_version(self.integration)
            first = self.integration.users.order_by("pk").values_list("email", flat=True).first()
            if first:
                client.account(self.integration, first).calendar.refresh()
        except Exception as exc:  # noqa: BLE001 - classify() re-raises what it does not know
            raise client.classify(exc) from exc

    def test_connection(self, mailbox: str) -> list[connection_test.Step]:
        """Testa anslutningen, step by step (the UI shows each with what to do)."""
        return connection_test.run(self.integration, mailbox)

    def subscribe(self, mailbox: str, watermark: str | None = None) -> Subscribed:
        if watermark:
            # Resumed, Exchange delivers the backlog at once, even before it answers us with
            # the new id; its first notification names our watermark as its previous one.
            cache.set(RESUMING + watermark, True, SUBSCRIBING_SECONDS)
        try:
            # Subscribing needs the fetched folder (its id); reads do not (client.calendar).
            calendar = client.account(self.integration, mailbox).calendar
            subscription_id, new_watermark = calendar.subscribe_to_push(
                callback_url=settings.EWS_NOTIFICATION_URL,
                watermark=watermark,
                status_frequency=settings.EWS_STATUS_FREQUENCY,
            )
        except (ews_errors.ErrorInvalidWatermark, ews_errors.ErrorExpiredSubscription) as exc:
            raise SubscriptionGone(f"watermark refused: {type(exc).__name__}") from exc
        except Exception as exc:  # noqa: BLE001 - classify() re-raises what it does not know
            raise client.classify(exc) from exc
        # Exchange may deliver at once (the backlog of a resumed watermark), before the core
        # has recorded the id: the notification service then asks it to retry, not to end it.
        cache.set(SUBSCRIBING + subscription_id, True, SUBSCRIBING_SECONDS)
        return Subscribed(
            subscription_id, timezone.now() + lost_after(), watermark=new_watermark or ""
        )

    def renew(self, subscription_id: str) -> Subscribed:
        """Subscribe again from the last watermark: Exchange then delivers what we missed."""
        lost = (
            MailboxSubscription.objects.filter(provider_subscription_id=subscription_id)
            .values_list("synced_user__email", "watermark")
            .first()
        )
        if lost is None or not lost[1]:
            raise SubscriptionGone()
        return self.subscribe(lost[0], watermark=lost[1])

    def unsubscribe(self, subscription_id: str) -> None:
        # Push subscriptions end when we answer their next notification with Unsubscribe.
        cache.delete(SUBSCRIBING + subscription_id)
        logger.info("EWS subscription %s ends at its next notification", subscription_id[:12])

    @classmethod
    def verified_notices(cls, body: bytes) -> list:
        raise BadNotification("EWS notifications are answered by webhooks.receive")
