"""The one small interface every calendar provider implements."""

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from calendarsync.items import CalendarItem


class ProviderError(Exception):
    """A provider failure. `permanent` means retrying the same call cannot help."""

    def __init__(self, message: str, *, permanent: bool = False, code: str = ""):
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class MailboxNotFound(ProviderError):
    """The mailbox does not exist (or the app may not read it): that user's error only."""

    def __init__(self, message: str = "mailbox not found"):
        super().__init__(message, permanent=True, code="mailbox_not_found")


class ConsentRevoked(ProviderError):
    """The organisation withdrew the app's access: pause the whole integration."""

    def __init__(self, message: str = "consent revoked", *, code: str = "consent_revoked"):
        super().__init__(message, permanent=True, code=code)


class CalendarProvider(Protocol):
    def fetch(
        self, mailbox: str, start: datetime, end: datetime, *, include_subject: bool
    ) -> list[CalendarItem]:
        """Non-private bookings of `mailbox` overlapping [start, end)."""

    def fetch_many(
        self, mailboxes: Iterable[str], start: datetime, end: datetime, *, include_subject: bool
    ) -> dict[str, list[CalendarItem] | ProviderError]:
        """Bulk fetch; a failing mailbox maps to its error and the others carry on."""
