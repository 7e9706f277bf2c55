"""Provider-free calendar bookings: what the rules engine sees of a mailbox.

Provider adapters (calendarsync/providers/) build these; nothing outside providers/ knows a
Graph or EWS field name. Private and confidential bookings never become a CalendarItem that
leaves an adapter.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ItemKind(StrEnum):
    SINGLE = "single"
    OCCURRENCE = "occurrence"
    EXCEPTION = "exception"


class ShowAs(StrEnum):
    FREE = "free"
    TENTATIVE = "tentative"
    BUSY = "busy"
    OOF = "oof"
    WORKING_ELSEWHERE = "working_elsewhere"
    UNKNOWN = "unknown"


class Sensitivity(StrEnum):
    NORMAL = "normal"
    PERSONAL = "personal"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class Response(StrEnum):
    ORGANIZER = "organizer"
    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    DECLINED = "declined"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class AddinChoice:
    """The Outlook add-in's per-booking choice (or a user's personal default profile).

    forwarding: "skip" (do not sync), "info" (Frånvaro) or "divert" (Hänvisning).
    """

    forwarding: str
    reason_code: str | None = None
    open_diversion: bool = False


@dataclass(frozen=True, slots=True)
class CalendarItem:
    provider_item_id: str
    series_master_id: str | None
    kind: ItemKind
    start: datetime  # aware
    end: datetime  # aware, exclusive
    all_day: bool
    show_as: ShowAs
    sensitivity: Sensitivity
    cancelled: bool
    my_response: Response
    categories: tuple[str, ...] = ()
    subject: str | None = None  # None unless the integration allows subjects
    addin_choice: AddinChoice | None = None
