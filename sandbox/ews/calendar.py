"""Mailboxes and their calendars: bookings, series expanded into occurrences and exceptions,
item ids, and each mailbox's change journal (the source of push notifications' watermarks).

Times are kept as aware UTC datetimes. All-day bookings run from midnight to midnight in
Swedish time, as Outlook in Sweden stores them.
"""

import base64
import itertools
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
FREE_BUSY = ("Free", "Tentative", "Busy", "OOF", "WorkingElsewhere", "NoData")
SENSITIVITY = ("Normal", "Personal", "Private", "Confidential")
RESPONSES = ("Unknown", "Organizer", "Tentative", "Accept", "Decline", "NoResponseReceived")
PATTERNS = ("daily", "weekdays", "weekly")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_OCCURRENCES = 999


def encode_id(*parts) -> str:
    return base64.b64encode("|".join(str(p) for p in parts).encode()).decode()


def decode_id(value: str) -> list[str] | None:
    try:
        return base64.b64decode(value.encode(), validate=True).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        return None


def parse_time(value, *, all_day=False) -> datetime:
    """An ISO date or datetime (naive = Swedish time) as aware UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, datetime.min.time())
    elif isinstance(value, str) and value:
        text = value.replace("Z", "+00:00")
        moment = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a date or time: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=STOCKHOLM)
    if all_day:
        local = moment.astimezone(STOCKHOLM)
        moment = datetime.combine(local.date(), datetime.min.time(), STOCKHOLM)
    return moment.astimezone(UTC)


@dataclass
class Booking:
    """A single booking or a series master."""

    id: str
    subject: str
    start: datetime
    end: datetime
    legacy_free_busy_status: str = "Busy"
    sensitivity: str = "Normal"
    is_all_day: bool = False
    categories: list[str] = field(default_factory=list)
    location: str = ""
    body: str = ""
    my_response_type: str = "Organizer"
    organizer: str = ""
    is_cancelled: bool = False
    extended: dict = field(default_factory=dict)  # PublicStrings name -> string value
    recurrence: dict | None = None  # {"pattern": "daily"|"weekdays"|"weekly", "interval", "count"}
    exceptions: dict = field(default_factory=dict)  # occurrence index -> changed fields
    deleted: set = field(default_factory=set)  # occurrence indexes removed from the series
    uid: str = field(default_factory=lambda: secrets.token_hex(16).upper())
    version: int = 1
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    def public(self) -> dict:
        return {
            "id": self.id,
            "subject": self.subject,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "legacy_free_busy_status": self.legacy_free_busy_status,
            "sensitivity": self.sensitivity,
            "is_all_day": self.is_all_day,
            "categories": self.categories,
            "location": self.location,
            "recurrence": self.recurrence,
            "exceptions": {str(k): v for k, v in self.exceptions.items()},
            "deleted": sorted(self.deleted),
        }


@dataclass
class Instance:
    """What a calendar view shows: a single, an occurrence or an exception."""

    booking: Booking
    kind: str  # Single, Occurrence, Exception, RecurringMaster
    start: datetime
    end: datetime
    index: int | None = None
    original_start: datetime | None = None
    changes: dict = field(default_factory=dict)

    def value(self, name):
        return self.changes.get(name, getattr(self.booking, name))

    def extended(self) -> dict:
        """PublicStrings properties: the series' (or single's), with an exception's own on top."""
        return {**self.booking.extended, **self.changes.get("extended", {})}


def occurrence_starts(booking: Booking):
    """(1-based index, start) of each occurrence of a series, in order."""
    rule = booking.recurrence or {}
    pattern, interval = rule.get("pattern", "daily"), max(1, int(rule.get("interval", 1)))
    count = min(int(rule.get("count", 10)), MAX_OCCURRENCES)
    local = booking.start.astimezone(STOCKHOLM)
    index = 0
    for day in itertools.count():
        if index >= count:
            return
        moment = local + timedelta(days=day)
        wall = datetime.combine(moment.date(), local.timetz().replace(tzinfo=None), STOCKHOLM)
        if pattern == "daily" and day % interval:
            continue
        if pattern == "weekdays" and wall.weekday() >= 5:
            continue
        if pattern == "weekly" and (wall.weekday() != local.weekday() or (day // 7) % interval):
            continue
        index += 1
        yield index, wall.astimezone(UTC)


def instances(booking: Booking):
    """What a calendar view shows of a booking (the master itself is never shown)."""
    if not booking.recurrence:
        yield Instance(booking, "Single", booking.start, booking.end)
        return
    duration = booking.end - booking.start
    for index, start in occurrence_starts(booking):
        if index in booking.deleted:
            continue
        changes = booking.exceptions.get(index)
        if changes is None:
            yield Instance(booking, "Occurrence", start, start + duration, index, start)
            continue
        moved_start = changes.get("start", start)
        moved_end = changes.get("end", moved_start + duration)
        kept = {k: v for k, v in changes.items() if k not in ("start", "end")}
        yield Instance(booking, "Exception", moved_start, moved_end, index, start, kept)


def overlaps(instance: Instance, start: datetime, end: datetime) -> bool:
    return instance.start < end and instance.end > start


def clean_booking_fields(payload: dict, *, partial=False) -> dict:
    """Validate a control-plane booking payload; ValueError says what is wrong."""
    if not isinstance(payload, dict):
        raise ValueError("the booking must be a JSON object")
    known = {
        "subject", "start", "end", "legacy_free_busy_status", "sensitivity", "is_all_day",
        "categories", "location", "body", "my_response_type", "organizer", "is_cancelled",
        "extended", "recurrence", "exceptions", "deleted",
    }  # fmt: skip
    unknown = set(payload) - known
    if unknown:
        raise ValueError(f"unknown booking fields: {', '.join(sorted(unknown))}")
    if not partial:
        for name in ("start", "end"):
            if name not in payload:
                raise ValueError(f"{name} is required")
    cleaned = dict(payload)
    all_day = bool(payload.get("is_all_day", False))
    for name in ("start", "end"):
        if name in cleaned:
            cleaned[name] = parse_time(cleaned[name], all_day=all_day)
    for name, choices in (
        ("legacy_free_busy_status", FREE_BUSY),
        ("sensitivity", SENSITIVITY),
        ("my_response_type", RESPONSES),
    ):
        if name in cleaned and cleaned[name] not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}")
    if "categories" in cleaned and not (
        isinstance(cleaned["categories"], list)
        and all(isinstance(c, str) for c in cleaned["categories"])
    ):
        raise ValueError("categories must be a list of strings")
    rule = cleaned.get("recurrence")
    if rule is not None:
        if not isinstance(rule, dict) or rule.get("pattern", "daily") not in PATTERNS:
            raise ValueError(f"recurrence needs a pattern: {', '.join(PATTERNS)}")
        if not 1 <= int(rule.get("count", 10)) <= MAX_OCCURRENCES:
            raise ValueError("recurrence count must be 1-999")
    if "exceptions" in cleaned:
        exceptions = {}
        for key, changes in (cleaned["exceptions"] or {}).items():
            changes = dict(changes)
            for name in ("start", "end"):
                if name in changes:
                    changes[name] = parse_time(changes[name])
            exceptions[int(key)] = changes
        cleaned["exceptions"] = exceptions
    if "deleted" in cleaned:
        cleaned["deleted"] = {int(i) for i in cleaned["deleted"] or ()}
    if "start" in cleaned and "end" in cleaned and cleaned["end"] < cleaned["start"]:
        raise ValueError("end is before start")
    return cleaned


@dataclass
class Change:
    """One entry of a mailbox's change journal; its seq is in the watermark."""

    seq: int
    kind: str  # CreatedEvent, ModifiedEvent, DeletedEvent, MovedEvent
    item_id: str
    timestamp: datetime
    old_item_id: str | None = None


class Mailbox:
    def __init__(self, email: str, name: str, epoch: str):
        self.email = email.lower()
        self.name = name
        self.epoch = epoch  # a reset makes every earlier watermark unknown
        self.bookings: dict[str, Booking] = {}
        self.journal: list[Change] = []
        self.ids = itertools.count(1)

    # ids
    def item_id(self, booking: Booking) -> str:
        return encode_id("item", self.email, booking.id)

    def occurrence_id(self, booking: Booking, index: int) -> str:
        return encode_id("occ", self.email, booking.id, index)

    def folder_id(self, name="calendar") -> str:
        return encode_id("folder", self.email, name)

    def changekey(self, booking: Booking) -> str:
        return encode_id("ck", booking.version)

    def watermark(self, seq: int | None = None) -> str:
        head = self.journal[-1].seq if self.journal else 0
        return encode_id("wm", self.email, self.epoch, head if seq is None else seq)

    def seq_of(self, watermark: str) -> int | None:
        parts = decode_id(watermark or "")
        if not parts or len(parts) != 4 or parts[:3] != ["wm", self.email, self.epoch]:
            return None
        return int(parts[3])

    # changes (as if made in Outlook)
    def record(self, kind: str, item_id: str, old_item_id=None) -> Change:
        seq = (self.journal[-1].seq if self.journal else 0) + 1
        change = Change(seq, kind, item_id, datetime.now(UTC), old_item_id)
        self.journal.append(change)
        return change

    def add(self, fields: dict) -> Booking:
        fields = dict(fields)
        booking = Booking(id=f"b{next(self.ids)}", subject=fields.pop("subject", ""), **fields)
        if not booking.organizer:
            booking.organizer = self.email
        self.bookings[booking.id] = booking
        self.record("CreatedEvent", self.item_id(booking))
        return booking

    def update(self, booking_id: str, fields: dict) -> Booking:
        booking = self.bookings[booking_id]
        for name, value in fields.items():
            setattr(booking, name, value)
        booking.version += 1
        booking.modified = datetime.now(UTC)
        # Moving a booking in time is a modification of the item (a MovedEvent is a move between
        # folders, see move_out).
        self.record("ModifiedEvent", self.item_id(booking))
        return booking

    def delete(self, booking_id: str, *, soft=False) -> Booking:
        """A hard delete (DeletedEvent) or, with soft, Outlook's delete: a move to Deleted
        Items (MovedEvent, the old id in OldItemId)."""
        booking = self.bookings.pop(booking_id)
        item_id = self.item_id(booking)
        if soft:
            new_id = encode_id("item", self.email, f"deleted-{booking.id}")
            self.record("MovedEvent", new_id, old_item_id=item_id)
        else:
            self.record("DeletedEvent", item_id)
        return booking

    def resolve(self, item_id: str):
        """(booking, occurrence index or None) for an ItemId this mailbox issued."""
        parts = decode_id(item_id)
        if not parts or len(parts) < 3 or parts[1] != self.email:
            return None, None
        booking = self.bookings.get(parts[2])
        if booking is None:
            return None, None
        if parts[0] == "occ" and len(parts) == 4:
            return booking, int(parts[3])
        if parts[0] == "item":
            return booking, None
        return None, None

    def locate(self, item_id: str) -> tuple[Booking, int | None]:
        """(booking, occurrence index or None) for an ItemId (or, for the control plane, a
        booking id); KeyError when the item is not in this mailbox (or the occurrence is gone)."""
        booking, index = self.resolve(item_id)
        if booking is None and item_id in self.bookings:
            booking = self.bookings[item_id]
        if booking is None or (index is not None and self.instance(booking, index) is None):
            raise KeyError(item_id)
        return booking, index

    def set_extended(self, booking: Booking, index: int | None, name: str, value: str):
        """Save a PublicStrings property on the item, or on one occurrence (which makes it an
        exception), as Outlook saves an add-in's custom properties: a modification."""
        if index is None:
            booking.extended = {**booking.extended, name: value}
            item_id = self.item_id(booking)
        else:
            changes = dict(booking.exceptions.get(index) or {})
            changes["extended"] = {**changes.get("extended", {}), name: value}
            booking.exceptions[index] = changes
            item_id = self.occurrence_id(booking, index)
        booking.version += 1
        booking.modified = datetime.now(UTC)
        self.record("ModifiedEvent", item_id)

    def instance(self, booking: Booking, index: int | None) -> Instance | None:
        if index is None:
            if booking.recurrence:
                return Instance(booking, "RecurringMaster", booking.start, booking.end)
            return Instance(booking, "Single", booking.start, booking.end)
        for found in instances(booking):
            if found.index == index:
                return found
        return None

    def view(self, start: datetime, end: datetime) -> list[Instance]:
        shown = [
            found
            for booking in self.bookings.values()
            for found in instances(booking)
            if overlaps(found, start, end)
        ]
        return sorted(shown, key=lambda found: (found.start, found.end))


class Directory:
    """All mailboxes and distribution groups the server knows, and a lock around them."""

    def __init__(self):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.epoch = secrets.token_hex(4)
        self.mailboxes: dict[str, Mailbox] = {}
        self.groups: dict[str, dict] = {}  # email -> {"name", "members"} (groups.py)

    def add_mailbox(self, email: str, name: str) -> Mailbox:
        with self.lock:
            box = self.mailboxes.get(email.lower())
            if box is None:
                box = Mailbox(email, name, self.epoch)
                self.mailboxes[box.email] = box
            else:
                box.name = name
            return box

    def mailbox(self, email: str | None) -> Mailbox | None:
        return self.mailboxes.get((email or "").lower())
