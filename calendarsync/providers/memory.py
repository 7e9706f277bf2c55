"""An in-memory calendar provider for tests and benchmarks.

It behaves like a real adapter at the boundary: it returns only bookings overlapping the
window, leaves out private and confidential ones, and withholds subjects unless asked.
"""

import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from calendarsync.items import CalendarItem, Sensitivity

from .base import (
    AccessLost,
    ItemNotFound,
    MailboxNotFound,
    ProviderError,
    Subscribed,
    SubscriptionGone,
)

SUBSCRIPTION_LIFETIME = timedelta(days=3)


@dataclass
class InMemoryCalendar:
    bulk_size = 20

    mailboxes: dict[str, list[CalendarItem]] = field(default_factory=dict)
    errors: dict[str, ProviderError] = field(default_factory=dict)  # mailbox → error to raise
    fetches: list[str] = field(default_factory=list)  # mailboxes read, in order
    bulk_fetches: list[list[str]] = field(default_factory=list)  # one entry per fetch_many
    subscriptions: dict[str, str] = field(default_factory=dict)  # subscription id → mailbox
    # (mailbox, item id) → the add-in's custom properties on that booking
    custom_properties: dict[tuple[str, str], dict] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count, repr=False)

    def put(self, mailbox: str, *items: CalendarItem) -> None:
        """Add or replace items (by provider id) in a mailbox."""
        current = {item.provider_item_id: item for item in self.mailboxes.get(mailbox, [])}
        current.update((item.provider_item_id, item) for item in items)
        self.mailboxes[mailbox] = list(current.values())

    def remove(self, mailbox: str, provider_item_id: str) -> None:
        self.mailboxes[mailbox] = [
            item
            for item in self.mailboxes.get(mailbox, [])
            if item.provider_item_id != provider_item_id
        ]

    def fetch(self, mailbox, start, end, *, include_subject):
        self.fetches.append(mailbox)
        if mailbox in self.errors:
            raise self.errors[mailbox]
        if mailbox not in self.mailboxes:
            raise MailboxNotFound()
        return [
            item if include_subject or item.subject is None else replace(item, subject=None)
            for item in self.mailboxes[mailbox]
            if _overlaps(item, start, end)
            and item.sensitivity not in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL)
        ]

    def fetch_many(self, mailboxes, start, end, *, include_subject):
        """Like Graph's bulk read: a failing mailbox maps to its error, except lost access,
        which concerns the whole integration and raises."""
        mailboxes = list(mailboxes)
        self.bulk_fetches.append(mailboxes)
        results = {}
        for mailbox in mailboxes:
            try:
                results[mailbox] = self.fetch(mailbox, start, end, include_subject=include_subject)
            except AccessLost:
                raise
            except ProviderError as exc:
                results[mailbox] = exc
        return results

    def verify(self):
        return None

    def addin_properties(self, mailbox, item_id):
        if mailbox not in self.mailboxes:
            raise MailboxNotFound()
        if not any(item.provider_item_id == item_id for item in self.mailboxes[mailbox]):
            raise ItemNotFound()
        return dict(self.custom_properties.get((mailbox, item_id), {}))

    def subscribe(self, mailbox):
        if mailbox in self.errors:
            raise self.errors[mailbox]
        if mailbox not in self.mailboxes:
            raise MailboxNotFound()
        subscription_id = f"memory-{next(self._ids)}"
        self.subscriptions[subscription_id] = mailbox
        return Subscribed(subscription_id, _now() + SUBSCRIPTION_LIFETIME, secret="memory")

    def renew(self, subscription_id):
        if subscription_id not in self.subscriptions:
            raise SubscriptionGone()
        return Subscribed(subscription_id, _now() + SUBSCRIPTION_LIFETIME)

    def unsubscribe(self, subscription_id):
        self.subscriptions.pop(subscription_id, None)


def _now() -> datetime:
    return datetime.now().astimezone()


def _overlaps(item: CalendarItem, start: datetime, end: datetime) -> bool:
    return item.end > start and item.start < end
