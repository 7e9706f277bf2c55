"""Graph event JSON (what `calendarView` returns) → provider-free `CalendarItem` values.

Pure functions. Private and confidential events are dropped here and go no further.
"""

import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calendarsync.items import AddinChoice, CalendarItem, ItemKind, Response, Sensitivity, ShowAs

from ..addin import ADDIN_PROPERTY_SET, parse_addin_choice, property_name

logger = logging.getLogger(__name__)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
UTC = ZoneInfo("UTC")

GRAPH_SHOW_AS = {
    "free": ShowAs.FREE,
    "tentative": ShowAs.TENTATIVE,
    "busy": ShowAs.BUSY,
    "oof": ShowAs.OOF,
    "workingElsewhere": ShowAs.WORKING_ELSEWHERE,
    "unknown": ShowAs.UNKNOWN,
}
GRAPH_SENSITIVITY = {
    "normal": Sensitivity.NORMAL,
    "personal": Sensitivity.PERSONAL,
    "private": Sensitivity.PRIVATE,
    "confidential": Sensitivity.CONFIDENTIAL,
}
GRAPH_RESPONSE = {
    "organizer": Response.ORGANIZER,
    "accepted": Response.ACCEPTED,
    "tentativelyAccepted": Response.TENTATIVE,
    "declined": Response.DECLINED,
    "none": Response.NONE,
    "notResponded": Response.NONE,
}
GRAPH_KIND = {
    "singleInstance": ItemKind.SINGLE,
    "occurrence": ItemKind.OCCURRENCE,
    "exception": ItemKind.EXCEPTION,
}
# Windows zone names Graph may use when no `Prefer: outlook.timezone` was sent.
WINDOWS_ZONES = {
    "W. Europe Standard Time": "Europe/Stockholm",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "GMT Standard Time": "Europe/London",
    "FLE Standard Time": "Europe/Helsinki",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
}


def addin_property_id(addin_id: str) -> str:
    """The extended property that holds the add-in's custom properties (for `$expand`)."""
    return f"String {ADDIN_PROPERTY_SET} Name {property_name(addin_id)}"


def calendar_view_select(*, include_subject: bool) -> str:
    """The `$select` of a window read: never the body; the subject only when allowed."""
    fields = "id,start,end,isAllDay,showAs,sensitivity,isCancelled,type,seriesMasterId,"
    fields += "responseStatus,categories"
    return fields + ",subject" if include_subject else fields


def items_from_graph(events, *, include_subject: bool) -> list[CalendarItem]:
    """Map Graph events; private, confidential and unusable events are left out."""
    items = []
    for event in events:
        item = item_from_graph(event, include_subject=include_subject)
        if item is not None:
            items.append(item)
    return items


def item_from_graph(event: dict, *, include_subject: bool) -> CalendarItem | None:
    """One Graph event → CalendarItem, or None for a private/confidential event, a series
    master (calendarView returns its occurrences) or an event too malformed to use."""
    sensitivity = GRAPH_SENSITIVITY.get(event.get("sensitivity") or "normal", Sensitivity.PRIVATE)
    if sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL):
        return None  # an unknown sensitivity counts as private: never risk leaking it
    kind = GRAPH_KIND.get(event.get("type") or "singleInstance")
    if kind is None:
        return None
    try:
        item_id = event["id"]
        all_day = bool(event.get("isAllDay"))
        start = _parse_time(event["start"], all_day)
        end = _parse_time(event["end"], all_day)
    except (KeyError, TypeError, ValueError, ZoneInfoNotFoundError) as exc:
        logger.warning("Skipping a Graph event with unusable fields: %s", type(exc).__name__)
        return None
    response = (event.get("responseStatus") or {}).get("response") or "none"
    subject = event.get("subject") if include_subject else None
    return CalendarItem(
        provider_item_id=item_id,
        series_master_id=event.get("seriesMasterId") or None,
        kind=kind,
        start=start,
        end=end,
        all_day=all_day,
        show_as=GRAPH_SHOW_AS.get(event.get("showAs") or "unknown", ShowAs.UNKNOWN),
        sensitivity=sensitivity,
        cancelled=bool(event.get("isCancelled")),
        my_response=GRAPH_RESPONSE.get(response, Response.NONE),
        categories=tuple(c for c in event.get("categories") or () if isinstance(c, str)),
        subject=subject if isinstance(subject, str) and subject else None,
        addin_choice=addin_choice_from_properties(event.get("singleValueExtendedProperties")),
    )


def _parse_time(value: dict, all_day: bool) -> datetime:
    """A Graph dateTimeTimeZone → aware datetime.

    All-day events are midnight-to-midnight *dates*, whatever zone Graph names: read them as
    Stockholm local dates, never as UTC instants.
    """
    text = value["dateTime"]
    if all_day:
        return datetime.combine(date.fromisoformat(text[:10]), time.min, tzinfo=STOCKHOLM)
    naive = datetime.fromisoformat(_trim_fraction(text))
    if naive.tzinfo is not None:
        return naive
    zone_name = value.get("timeZone") or "UTC"
    return naive.replace(tzinfo=_zone(zone_name))


def _trim_fraction(text: str) -> str:
    # Graph sends seven fractional digits ("08:00:00.0000000"); keep at most microseconds.
    head, dot, fraction = text.partition(".")
    return f"{head}.{fraction[:6]}" if dot else head


def _zone(name: str) -> ZoneInfo:
    if name == "UTC":
        return UTC
    return ZoneInfo(WINDOWS_ZONES.get(name, name))


def addin_choice_from_properties(properties) -> AddinChoice | None:
    """The add-in's choice from `singleValueExtendedProperties`, or None.

    Only the add-in's own property (`cecp-…`) is read. A malformed value is logged and ignored.
    """
    for prop in properties or ():
        if not isinstance(prop, dict):
            continue
        if " name cecp-" in str(prop.get("id", "")).lower():
            return parse_addin_choice(prop.get("value"))
    return None


def window_with_margin(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The calendarView range to ask for: a day more on each side, because all-day events are
    stored differently from how they are shown and can fall off the window's edges."""
    return start - timedelta(days=1), end + timedelta(days=1)
