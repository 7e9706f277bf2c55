"""Events as Exchange Online stores them, and the calendarView Graph computes from them.

Stored events are plain dicts in Graph's own JSON shape. A series master carries `recurrence`
and an `exceptions` map (occurrence date → `{"deleted": True}` or overriding fields); the view
expands it into `occurrence` and `exception` instances, as Graph does.
"""

import copy
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from . import timezones
from .errors import GraphError

UTC = ZoneInfo("UTC")

# Properties of microsoft.graph.event that $select accepts (anything else is a 400).
EVENT_PROPERTIES = {
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "transactionId",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "iCalUId",
    "uid",
    "reminderMinutesBeforeStart",
    "isReminderOn",
    "hasAttachments",
    "subject",
    "bodyPreview",
    "importance",
    "sensitivity",
    "isAllDay",
    "isCancelled",
    "isOrganizer",
    "responseRequested",
    "seriesMasterId",
    "showAs",
    "type",
    "webLink",
    "onlineMeetingUrl",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "allowNewTimeProposals",
    "occurrenceId",
    "isDraft",
    "hideAttendees",
    "responseStatus",
    "body",
    "start",
    "end",
    "originalStart",
    "location",
    "locations",
    "recurrence",
    "attendees",
    "organizer",
    "onlineMeeting",
    "cancelledOccurrences",
    "exceptionOccurrences",
}
# What an unselected read returns (Graph returns everything, the body included).
DEFAULT_PROPERTIES = EVENT_PROPERTIES - {"cancelledOccurrences", "exceptionOccurrences"}


def zone(name: str | None) -> ZoneInfo:
    """Any Windows or IANA zone name; timezones.UnknownTimeZone (a ValueError) otherwise."""
    return timezones.zone(name)


def unknown_zone_error(name) -> GraphError:
    return GraphError(
        400,
        "TimeZoneNotSupportedException",
        "A valid TimeZone value must be specified. The following TimeZone value is not "
        f"supported: '{name}'.",
    )


def parse_graph_datetime(value: dict) -> datetime:
    """A Graph dateTimeTimeZone as an aware datetime."""
    text = value["dateTime"].rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    naive = datetime.fromisoformat(text).replace(tzinfo=None)
    return naive.replace(tzinfo=zone(value.get("timeZone")))


def format_graph_datetime(moment: datetime, tz_name: str) -> dict:
    local = moment.astimezone(zone(tz_name)).replace(tzinfo=None)
    return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": tz_name}


def _all_day_dates(event: dict) -> tuple[date, date]:
    # All-day events are dates; the zone of their midnight is "by design" ignored.
    return (
        datetime.fromisoformat(event["start"]["dateTime"][:10]).date(),
        datetime.fromisoformat(event["end"]["dateTime"][:10]).date(),
    )


def _span_utc(event: dict) -> tuple[datetime, datetime]:
    """Where the event sits on the UTC axis, for overlap tests.

    All-day dates are compared as UTC midnights: that is how they are stored, and why a
    window can gain or lose all-day events at its edges (microsoft.md).
    """
    if event.get("isAllDay"):
        first, after = _all_day_dates(event)
        return (
            datetime.combine(first, time(), UTC),
            datetime.combine(after, time(), UTC),
        )
    return parse_graph_datetime(event["start"]), parse_graph_datetime(event["end"])


def occurrence_dates(master: dict, until: date) -> list[date]:
    """Dates of a series' occurrences up to `until` (daily and weekly patterns)."""
    recurrence = master["recurrence"]
    pattern, rng = recurrence["pattern"], recurrence["range"]
    first = date.fromisoformat(rng["startDate"])
    last = date.fromisoformat(rng["endDate"]) if rng.get("type") == "endDate" else until
    limit = rng.get("numberOfOccurrences") if rng.get("type") == "numbered" else None
    interval = max(1, int(pattern.get("interval", 1)))
    days = {d.lower() for d in pattern.get("daysOfWeek", [])}
    names = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    dates: list[date] = []
    day = first
    while day <= min(last, until):
        if pattern["type"] == "daily":
            if (day - first).days % interval == 0:
                dates.append(day)
        elif pattern["type"] == "weekly":
            week = ((day - first).days + first.weekday()) // 7
            if week % interval == 0 and names[day.weekday()] in days:
                dates.append(day)
        else:
            raise ValueError(f"unsupported recurrence pattern {pattern['type']!r}")
        if limit and len(dates) >= limit:
            break
        day += timedelta(days=1)
    return dates


def expand(master: dict, window_end: datetime, window_start: datetime | None = None) -> list[dict]:
    """The instances (occurrences and exceptions) of a series master."""
    start = parse_graph_datetime(master["start"])
    end = parse_graph_datetime(master["end"])
    local_zone = zone(master["start"].get("timeZone"))
    start_local = start.astimezone(local_zone)
    duration = end - start
    instances = []
    first_day = (window_start - timedelta(days=2)).date() if window_start else None
    for day in occurrence_dates(master, (window_end + timedelta(days=2)).date()):
        if first_day and day < first_day:
            continue  # far before the window: not worth building
        key = day.isoformat()
        override = master.get("exceptions", {}).get(key)
        if override and override.get("deleted"):
            continue
        # Shallow: render() copies what it sends, and nothing here mutates nested values.
        instance = {k: v for k, v in master.items() if k not in ("exceptions", "recurrence")}
        instance["id"] = f"{master['id']}-{day:%Y%m%d}"
        instance["seriesMasterId"] = master["id"]
        instance["type"] = "occurrence"
        if master.get("isAllDay"):
            first, after = _all_day_dates(master)
            span = after - first
            instance["start"] = {"dateTime": f"{day}T00:00:00.0000000", "timeZone": "UTC"}
            instance["end"] = {"dateTime": f"{day + span}T00:00:00.0000000", "timeZone": "UTC"}
        else:
            occ_start = datetime.combine(day, start_local.timetz().replace(tzinfo=None))
            occ_start = occ_start.replace(tzinfo=local_zone)
            instance["start"] = format_graph_datetime(occ_start, "UTC")
            instance["end"] = format_graph_datetime(occ_start + duration, "UTC")
        instance["originalStart"] = instance["start"]["dateTime"][:19] + "Z"
        if override:
            instance.update(copy.deepcopy(override))
            instance["type"] = "exception"
        instances.append(instance)
    return instances


def calendar_view(
    events: list[dict], start: datetime, end: datetime, unreadable: list | None = None
) -> list[dict]:
    """Singles, occurrences and exceptions overlapping [start, end), sorted by start.

    A stored event whose times cannot be read (Graph refuses such events; an old state file or a
    test may still hold one) is left out and its id added to `unreadable`: one bad event never
    breaks the whole mailbox's reads.
    """
    found = []
    for event in events:
        try:
            candidates = expand(event, end, start) if event.get("recurrence") else [event]
            spans = [(_span_utc(candidate), candidate) for candidate in candidates]
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            if unreadable is not None:
                unreadable.append(event.get("id") if isinstance(event, dict) else None)
            continue
        for (first, last), candidate in spans:
            if first < end and last > start:
                found.append((first, candidate["id"], candidate))
    found.sort(key=lambda entry: entry[:2])
    return [candidate for _first, _id, candidate in found]


def readable(events: list[dict], unreadable: list) -> list[dict]:
    """The events whose times can be read; the others' ids go to `unreadable` (see above)."""
    kept = []
    for event in events:
        try:
            _span_utc(event)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            unreadable.append(event.get("id") if isinstance(event, dict) else None)
            continue
        kept.append(event)
    return kept


def sort_key(path: str):
    """A `$orderby` key over instances (times compare on the UTC axis)."""
    if path in ("start/dateTime", "end/dateTime"):
        index = 0 if path.startswith("start") else 1
        return lambda instance: _span_utc(instance)[index]
    return lambda instance: str(instance.get(path) or "").lower()


ORDERABLE = {"start/dateTime", "end/dateTime", "subject", "createdDateTime", "lastModifiedDateTime"}

# What `$filter` on calendarView and events compares (Exchange: simple properties only).
FILTERABLE_BOOLEANS = {
    "isAllDay",
    "isCancelled",
    "isOrganizer",
    "isReminderOn",
    "hasAttachments",
    "responseRequested",
    "isOnlineMeeting",
    "allowNewTimeProposals",
    "isDraft",
    "hideAttendees",
}
FILTERABLE_STRINGS = {
    "id",
    "subject",
    "importance",
    "sensitivity",
    "showAs",
    "type",
    "seriesMasterId",
    "iCalUId",
    "changeKey",
    "onlineMeetingProvider",
    "responseStatus/response",
    "organizer/emailAddress/address",
    "organizer/emailAddress/name",
}
NOT_FILTERABLE = frozenset(
    {"start", "end", "originalStart", "body", "recurrence", "attendees", "location", "locations"}
    | {"categories", "onlineMeeting", "cancelledOccurrences", "exceptionOccurrences"}
    | {"start/dateTime", "end/dateTime", "start/timeZone", "end/timeZone", "bodyPreview"}
)
FILTERABLE = {
    **{name: "Edm.Boolean" for name in FILTERABLE_BOOLEANS},
    **{name: "Edm.String" for name in FILTERABLE_STRINGS},
    "reminderMinutesBeforeStart": "Edm.Int32",
}


# ----- what Graph refuses to store


def check_event(event: dict):
    """Raise GraphError for an event Graph would refuse: unknown zones, unreadable times, an
    end before the start, an all-day event whose times are not midnight in one zone."""
    for key in ("start", "end"):
        value = event.get(key)
        if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
            raise GraphError(
                400, "UnableToDeserializePostBody", f"The event's {key} must be a dateTimeTimeZone."
            )
        try:
            zone(value.get("timeZone"))
        except ValueError:
            raise unknown_zone_error(value.get("timeZone")) from None
        try:
            parse_graph_datetime(value)
        except ValueError:
            raise GraphError(
                400,
                "UnableToDeserializePostBody",
                f"Cannot convert the literal '{value['dateTime']}' to the expected type "
                "'Edm.DateTimeOffset'.",
            ) from None
    start, end = parse_graph_datetime(event["start"]), parse_graph_datetime(event["end"])
    if event.get("isAllDay"):
        midnight = all(
            parse_graph_datetime(event[key]).time() == time() for key in ("start", "end")
        )
        same_zone = zone(event["start"].get("timeZone")) == zone(event["end"].get("timeZone"))
        if not midnight or not same_zone:
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "Your request can't be completed. If the event is an all-day event, the start "
                "and end time must be set to midnight and be in the same time zone.",
            )
        if end - start < timedelta(days=1):
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "The duration of an event marked as All day must be at least 24 hours.",
            )
    elif end < start:
        raise GraphError(
            400,
            "ErrorCalendarEndDateIsEarlierThanStartDate",
            "The end date is earlier than the start date.",
        )


def render(event: dict, fields: set[str], tz_name: str, expand_property: str | None) -> dict:
    """One event as Graph would send it: selected fields, times in the preferred zone."""
    out: dict = {"@odata.etag": f'W/"{event.get("changeKey", "")}"'}
    for field in ["id", *sorted(fields - {"id"})]:
        if field in ("start", "end"):
            if event.get("isAllDay"):
                out[field] = {"dateTime": event[field]["dateTime"][:10] + "T00:00:00.0000000"}
                out[field]["timeZone"] = tz_name
            else:
                out[field] = format_graph_datetime(parse_graph_datetime(event[field]), tz_name)
        elif field in event:
            out[field] = copy.deepcopy(event[field])
        else:
            out[field] = None
    if expand_property is not None:
        # Graph lists the expanded property only on events that have it; on the others the
        # navigation property is left out altogether (not an empty list).
        found = [
            copy.deepcopy(prop)
            for prop in event.get("singleValueExtendedProperties", [])
            if prop["id"].lower() == expand_property.lower()
        ]
        if found:
            out["singleValueExtendedProperties"] = found
    return out


def merge_extended(existing: list[dict] | None, changes: list[dict]) -> list[dict]:
    """Graph's PATCH of singleValueExtendedProperties: each property given replaces the one with
    the same id (ids compare case-insensitively) or is added; the others stay."""
    merged = [copy.deepcopy(prop) for prop in existing or ()]
    for change in changes:
        key = str(change.get("id", "")).lower()
        merged = [prop for prop in merged if str(prop.get("id", "")).lower() != key]
        merged.append(copy.deepcopy(change))
    return merged
