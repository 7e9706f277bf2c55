"""exchangelib calendar items (what `calendar.view` returns) → provider-free `CalendarItem`s.

Pure functions. Private and confidential items are dropped here and go no further. The fields
a window read asks for are named here too, so that the body is never among them and the subject
only when the integration allows it.
"""

import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from exchangelib import CalendarItem as EwsCalendarItem
from exchangelib import ExtendedProperty

from calendarsync.items import CalendarItem, ItemKind, Response, Sensitivity, ShowAs

from ..addin import parse_addin_choice, property_name

logger = logging.getLogger(__name__)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
ADDIN_FIELD = "mss_addin_choice"

EWS_SHOW_AS = {
    "Free": ShowAs.FREE,
    "Tentative": ShowAs.TENTATIVE,
    "Busy": ShowAs.BUSY,
    "OOF": ShowAs.OOF,
    "WorkingElsewhere": ShowAs.WORKING_ELSEWHERE,
    "NoData": ShowAs.UNKNOWN,
}
EWS_SENSITIVITY = {
    "Normal": Sensitivity.NORMAL,
    "Personal": Sensitivity.PERSONAL,
    "Private": Sensitivity.PRIVATE,
    "Confidential": Sensitivity.CONFIDENTIAL,
}
EWS_RESPONSE = {
    "Organizer": Response.ORGANIZER,
    "Accept": Response.ACCEPTED,
    "Tentative": Response.TENTATIVE,
    "Decline": Response.DECLINED,
    "NoResponseReceived": Response.NONE,
    "Unknown": Response.NONE,
}
EWS_KIND = {
    "Single": ItemKind.SINGLE,
    "Occurrence": ItemKind.OCCURRENCE,
    "Exception": ItemKind.EXCEPTION,
}
# What a window read asks for (exchangelib field names). Never `body`, `text_body` or
# `unique_body`; `subject` only when allowed.
VIEW_FIELDS = (
    "id",
    "changekey",
    "start",
    "end",
    "is_all_day",
    "legacy_free_busy_status",
    "sensitivity",
    "is_cancelled",
    "type",
    "my_response_type",
    "categories",
    "uid",
)


class AddinProperty(ExtendedProperty):
    """The add-in's custom properties; `property_name` is set per add-in id on registration."""

    distinguished_property_set_id = "PublicStrings"
    property_type = "String"


def register_addin_property(addin_id: str) -> None:
    """Register the add-in's extended property on CalendarItem once (exchangelib's registry is
    global); a different add-in id replaces it."""
    name = property_name(addin_id)
    registered = getattr(EwsCalendarItem, ADDIN_FIELD, None)  # an ExtendedPropertyField
    if registered is not None:
        if registered.value_cls.property_name == name:
            return
        EwsCalendarItem.deregister(ADDIN_FIELD)
    prop = type("MssAddinProperty", (AddinProperty,), {"property_name": name})
    EwsCalendarItem.register(ADDIN_FIELD, prop)


def view_fields(*, include_subject: bool) -> tuple[str, ...]:
    fields = (*VIEW_FIELDS, ADDIN_FIELD)
    return (*fields, "subject") if include_subject else fields


def items_from_ews(items, *, include_subject: bool) -> list[CalendarItem]:
    """Map exchangelib items; private, confidential and unusable ones are left out."""
    mapped = []
    for item in items:
        if isinstance(item, Exception):  # exchangelib yields per-item errors in line
            logger.warning("Skipping an EWS item that failed: %s", type(item).__name__)
            continue
        result = item_from_ews(item, include_subject=include_subject)
        if result is not None:
            mapped.append(result)
    return mapped


def item_from_ews(item, *, include_subject: bool) -> CalendarItem | None:
    """One item → CalendarItem, or None for a private/confidential item, a series master
    (the view returns its occurrences) or an item too malformed to use."""
    sensitivity = EWS_SENSITIVITY.get(item.sensitivity or "Normal", Sensitivity.PRIVATE)
    if sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL):
        return None  # an unknown sensitivity counts as private: never risk leaking it
    kind = EWS_KIND.get(item.type or "Single")
    if kind is None or not item.id or item.start is None or item.end is None:
        return None
    all_day = bool(item.is_all_day)
    start, end = _times(item.start, item.end, all_day)
    subject = item.subject if include_subject else None
    return CalendarItem(
        provider_item_id=item.id,
        # Occurrences and exceptions of one series share its UID (the series' own id needs
        # a GetItem per series; the UID names the series just as well).
        series_master_id=(getattr(item, "uid", None) or None) if kind != ItemKind.SINGLE else None,
        kind=kind,
        start=start,
        end=end,
        all_day=all_day,
        show_as=EWS_SHOW_AS.get(item.legacy_free_busy_status or "NoData", ShowAs.UNKNOWN),
        sensitivity=sensitivity,
        cancelled=bool(item.is_cancelled),
        my_response=EWS_RESPONSE.get(item.my_response_type or "Unknown", Response.NONE),
        categories=tuple(c for c in item.categories or () if isinstance(c, str)),
        subject=subject if isinstance(subject, str) and subject else None,
        addin_choice=parse_addin_choice(getattr(item, ADDIN_FIELD, None)),
    )


def _times(start, end, all_day: bool) -> tuple[datetime, datetime]:
    """Aware start and exclusive end. exchangelib gives an all-day item's days as dates, the
    end day inclusive; they are Stockholm days from midnight to midnight."""
    if all_day or (isinstance(start, date) and not isinstance(start, datetime)):
        first = start if not isinstance(start, datetime) else start.astimezone(STOCKHOLM).date()
        last = end if not isinstance(end, datetime) else end.astimezone(STOCKHOLM).date()
        begin = datetime.combine(first, time.min, tzinfo=STOCKHOLM)
        finish = datetime.combine(last, time.min, tzinfo=STOCKHOLM)
        if not isinstance(end, datetime):
            finish += timedelta(days=1)  # exchangelib's inclusive end day
        return begin, max(finish, begin + timedelta(days=1))
    return _aware(start), _aware(end)


def _aware(value: datetime) -> datetime:
    # EWSDateTime is a datetime subclass with an EWSTimeZone; keep the instant, plain types.
    return datetime.fromtimestamp(value.timestamp(), tz=STOCKHOLM)
