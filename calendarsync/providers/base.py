"""Everything the sync core and the UI may ask of a calendar provider, and its error types.

A provider reads one integration's mailboxes (`fetch`, `fetch_many` in requests of
`bulk_size`), proves the connection (`verify`), keeps each mailbox's change notifications alive
(`subscribe`, `renew`, `unsubscribe`) and turns a notification that proved itself into
`Notice`s (`verified_notices`). Some providers can do more (`ReadsAddinProperties`: the
add-in's link step). The core branches on the error types below, never on a
provider's codes, URLs or field names.
"""

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable

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


class ItemNotFound(ProviderError):
    """The mailbox holds no booking with that id (or it is not the mailbox's own)."""

    def __init__(self, message: str = "item not found"):
        super().__init__(message, permanent=True, code="item_not_found")


class Attention(enum.StrEnum):
    """Why an integration needs its administrator (`Integration.attention`)."""

    CONSENT_REVOKED = "consent_revoked"
    CREDENTIALS_REJECTED = "credentials_rejected"
    PERMISSIONS_REMOVED = "permissions_removed"
    SERVER_UNTRUSTED = "server_untrusted"


class AccessLost(ProviderError):
    """The organisation no longer lets the app in: the whole integration stops until an
    administrator acts (`reason` says what to fix)."""

    reason: ClassVar[Attention]

    def __init__(self, message: str = "", *, code: str = ""):
        super().__init__(message or self.reason.value, permanent=True, code=code or self.reason)


class ConsentRevoked(AccessLost):
    """The organisation withdrew the app's consent (or never finished giving it)."""

    reason = Attention.CONSENT_REVOKED


class CredentialsRejected(AccessLost):
    """The server refused the app's own credentials (client secret, service account)."""

    reason = Attention.CREDENTIALS_REJECTED


class PermissionsRemoved(AccessLost):
    """Signed in, but the app may no longer read calendars."""

    reason = Attention.PERMISSIONS_REMOVED


class ServerUntrusted(AccessLost):
    """The server's certificate is not trusted (or is for another host name): nothing is sent
    to it until its administrator fixes the certificate."""

    reason = Attention.SERVER_UNTRUSTED


class SubscriptionGone(ProviderError):
    """The provider no longer knows a change-notification subscription: create a new one."""

    def __init__(self, message: str = "subscription not found"):
        super().__init__(message, permanent=True, code="subscription_gone")


@dataclass(frozen=True)
class Subscribed:
    """A mailbox's change-notification subscription as the provider made or renewed it."""

    id: str
    expires_at: datetime | None  # None: it lives until it is deleted
    secret: str = ""  # what its notifications must carry to prove themselves (stored encrypted)
    watermark: str = ""  # where the mailbox's event stream resumes (EWS)


class NoticeKind(enum.StrEnum):
    CHANGED = "changed"  # a booking changed: sync the mailbox
    MISSED = "missed"  # notifications were lost: sync the mailbox
    RENEW = "renew"  # the subscription must be renewed (reauthorized) now
    RESUBSCRIBE = "resubscribe"  # the provider dropped the subscription: make a new one, sync


@dataclass(frozen=True)
class Notice:
    """A notification that proved itself, about one of our mailbox subscriptions."""

    mailbox_subscription_id: int
    synced_user_id: int
    kind: NoticeKind


class BadNotification(ValueError):
    """A notification body that cannot be parsed (answered 400, never acted on)."""


class CalendarProvider(Protocol):
    bulk_size: ClassVar[int]  # mailboxes that one fetch_many request reads together

    def fetch(
        self, mailbox: str, start: datetime, end: datetime, *, include_subject: bool
    ) -> list[CalendarItem]:
        """Non-private bookings of `mailbox` overlapping [start, end)."""

    def fetch_many(
        self, mailboxes: Iterable[str], start: datetime, end: datetime, *, include_subject: bool
    ) -> dict[str, list[CalendarItem] | ProviderError]:
        """Bulk fetch; a failing mailbox maps to its error and the others carry on. Raises
        AccessLost when the whole integration lost its access."""

    def verify(self) -> None:
        """Prove the connection works now; raises AccessLost or ProviderError."""

    def subscribe(self, mailbox: str) -> Subscribed:
        """Start change notifications for `mailbox`."""

    def renew(self, subscription_id: str) -> Subscribed:
        """Extend (and reauthorize) a subscription; raises SubscriptionGone if it is unknown."""

    def unsubscribe(self, subscription_id: str) -> None:
        """End a subscription; one that is already gone counts as ended."""

    @classmethod
    def verified_notices(cls, body: bytes) -> list[Notice]:
        """The notices in a notification request whose proof checks out (others are logged
        and dropped); raises BadNotification for a body that cannot be parsed."""


@runtime_checkable
class ReadsAddinProperties(Protocol):
    """An optional capability: reading the Outlook add-in's custom properties on one booking
    with the integration's own credentials (the add-in's link step, Exchange On Prem)."""

    def addin_properties(self, mailbox: str, item_id: str) -> dict:
        """The add-in's custom properties (a JSON object, {} when it has none) on the booking
        `item_id` that `mailbox` itself organises: an invitation from someone else counts as
        having none, since its properties were written by its sender. Raises ItemNotFound,
        MailboxNotFound or ProviderError."""


# ----- Katalog Synk: the groups an integration's users list follows


@dataclass(frozen=True)
class Group:
    provider_id: str  # Graph: the group's id; EWS: its primary SMTP address
    name: str


@dataclass(frozen=True)
class MemberRead:
    """A group's members now, {member id: (email, user principal name)}, and where to read
    only the changes from next time."""

    members: dict[str, tuple[str, str]]
    cursor: str = ""
    full: bool = True  # read whole (the first time, or the provider forgot our cursor)


class GroupDirectory(Protocol):
    def find_groups(self, text: str) -> list[Group]: ...

    def read_members(
        self, provider_id: str, known: dict[str, tuple[str, str]], cursor: str
    ) -> MemberRead:
        """The members, from `known` and `cursor` (the last read) where the provider can."""
        ...
