"""The Exchange On Prem provider: window reads over EWS with impersonation.

Push notifications (subscribe, renew, unsubscribe, notices) are not built yet (issue 12): an
EWS integration only syncs once it is connected, and nothing connects one before its
connection test exists, so those calls are never reached; they say so if they are.
"""

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from exchangelib import EWSDateTime

from .. import register
from ..base import AccessLost, BadNotification, ProviderError, Subscribed
from . import client
from .mapping import items_from_ews, register_addin_property, view_fields

logger = logging.getLogger(__name__)

NOT_YET = "EWS push notifications are not built yet"


@register("ews")
class EwsProvider:
    """Exchange on-premises for one integration (the core's CalendarProvider)."""

    bulk_size = 10  # mailboxes read in parallel per request of the core (within throttling)

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
            calendar = client.account(self.integration, mailbox).calendar
            view = calendar.view(
                start=EWSDateTime.from_datetime(first), end=EWSDateTime.from_datetime(last)
            ).only(*view_fields(include_subject=include_subject))
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
            for mailbox, result in pool.map(read, mailboxes):
                results[mailbox] = result
        return results

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

    def subscribe(self, mailbox: str) -> Subscribed:
        raise ProviderError(NOT_YET, permanent=True, code="not_built")

    def renew(self, subscription_id: str) -> Subscribed:
        raise ProviderError(NOT_YET, permanent=True, code="not_built")

    def unsubscribe(self, subscription_id: str) -> None:
        logger.info("No EWS subscription to end (%s)", NOT_YET)

    @classmethod
    def verified_notices(cls, body: bytes) -> list:
        raise BadNotification(NOT_YET)
