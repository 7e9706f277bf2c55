"""A calendar item as EWS writes it: only the asked-for properties, in the schema's order."""

from datetime import timedelta

from .calendar import STOCKHOLM, WEEKDAYS, Instance, Mailbox, occurrence_starts
from .xml import child, iso, t

PUBLIC_STRINGS = "PublicStrings"
TIME_ZONE = {
    "Id": "W. Europe Standard Time",
    "Name": "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
}


def _item_id(box: Mailbox, found: Instance):
    if found.kind in ("Occurrence", "Exception"):
        item_id = box.occurrence_id(found.booking, found.index)
    else:
        item_id = box.item_id(found.booking)
    return t("ItemId", Id=item_id, ChangeKey=box.changekey(found.booking))


def _categories(box, found):
    element = t("Categories")
    for name in found.value("categories"):
        element.append(t("String", name))
    return element


def _mailbox(email, name=""):
    mailbox = t("Mailbox")
    if name:
        mailbox.append(t("Name", name))
    mailbox.append(t("EmailAddress", email))
    mailbox.append(t("RoutingType", "SMTP"))
    mailbox.append(t("MailboxType", "Mailbox"))
    return mailbox


def _organizer(box, found):
    element = t("Organizer")
    organizer = found.booking.organizer or box.email
    element.append(_mailbox(organizer, box.name if organizer == box.email else ""))
    return element


def _recurrence(box, found):
    if found.kind != "RecurringMaster":
        return None
    rule = found.booking.recurrence
    element = t("Recurrence")
    interval = max(1, int(rule.get("interval", 1)))
    local = found.booking.start.astimezone(STOCKHOLM)
    if rule.get("pattern") == "daily":
        pattern = child(element, t("DailyRecurrence"))
        pattern.append(t("Interval", interval))
    else:
        pattern = child(element, t("WeeklyRecurrence"))
        pattern.append(t("Interval", interval))
        days = WEEKDAYS[:5] if rule.get("pattern") == "weekdays" else [WEEKDAYS[local.weekday()]]
        pattern.append(t("DaysOfWeek", " ".join(days)))
    numbered = child(element, t("NumberedRecurrence"))
    numbered.append(t("StartDate", local.date().isoformat()))
    numbered.append(t("NumberOfOccurrences", int(rule.get("count", 10))))
    return element


def _modified_occurrences(box, found):
    booking = found.booking
    if found.kind != "RecurringMaster" or not booking.exceptions:
        return None
    element = t("ModifiedOccurrences")
    duration = booking.end - booking.start
    for index, start in occurrence_starts(booking):
        changes = booking.exceptions.get(index)
        if changes is None or index in booking.deleted:
            continue
        occurrence = child(element, t("Occurrence"))
        occurrence.append(t("ItemId", Id=box.occurrence_id(booking, index)))
        moved = changes.get("start", start)
        occurrence.append(t("Start", iso(moved)))
        occurrence.append(t("End", iso(changes.get("end", moved + duration))))
        occurrence.append(t("OriginalStart", iso(start)))
    return element


def _deleted_occurrences(box, found):
    booking = found.booking
    if found.kind != "RecurringMaster" or not booking.deleted:
        return None
    element = t("DeletedOccurrences")
    for index, start in occurrence_starts(booking):
        if index in booking.deleted:
            occurrence = child(element, t("DeletedOccurrence"))
            occurrence.append(t("Start", iso(start)))
    return element


def _duration(found):
    seconds = int((found.end - found.start).total_seconds())
    return f"PT{seconds // 3600}H{seconds % 3600 // 60}M"


def _simple(tag, getter):
    return lambda box, found: t(tag, getter(box, found))


# FieldURI -> (the element's place in ItemType + CalendarItemType, builder). Unknown URIs are
# left out of the answer, as Exchange does for properties an item does not have.
FIELDS = {
    "item:ParentFolderId": (10, lambda box, f: t("ParentFolderId", Id=box.folder_id())),
    "item:ItemClass": (20, _simple("ItemClass", lambda b, f: "IPM.Appointment")),
    "item:Subject": (30, _simple("Subject", lambda b, f: f.value("subject"))),
    "item:Sensitivity": (40, _simple("Sensitivity", lambda b, f: f.value("sensitivity"))),
    "item:Body": (50, lambda b, f: t("Body", f.value("body"), BodyType="Text")),
    "item:DateTimeReceived": (60, _simple("DateTimeReceived", lambda b, f: f.booking.created)),
    "item:Categories": (70, _categories),
    "item:Importance": (80, _simple("Importance", lambda b, f: "Normal")),
    "item:DateTimeCreated": (90, _simple("DateTimeCreated", lambda b, f: f.booking.created)),
    "item:HasAttachments": (100, _simple("HasAttachments", lambda b, f: False)),
    # 110: ExtendedProperty (see extended_properties)
    "item:LastModifiedTime": (120, _simple("LastModifiedTime", lambda b, f: f.booking.modified)),
    "calendar:UID": (200, _simple("UID", lambda b, f: f.booking.uid)),
    "calendar:Start": (210, _simple("Start", lambda b, f: iso(f.start))),
    "calendar:End": (220, _simple("End", lambda b, f: iso(f.end))),
    "calendar:OriginalStart": (
        230,
        lambda b, f: t("OriginalStart", iso(f.original_start)) if f.original_start else None,
    ),
    "calendar:IsAllDayEvent": (240, _simple("IsAllDayEvent", lambda b, f: f.value("is_all_day"))),
    "calendar:LegacyFreeBusyStatus": (
        250,
        _simple("LegacyFreeBusyStatus", lambda b, f: f.value("legacy_free_busy_status")),
    ),
    "calendar:Location": (260, _simple("Location", lambda b, f: f.value("location"))),
    "calendar:IsMeeting": (270, _simple("IsMeeting", lambda b, f: f.booking.organizer != b.email)),
    "calendar:IsCancelled": (280, _simple("IsCancelled", lambda b, f: f.value("is_cancelled"))),
    "calendar:IsRecurring": (
        290,
        _simple("IsRecurring", lambda b, f: f.kind in ("Occurrence", "Exception")),
    ),
    "calendar:CalendarItemType": (300, _simple("CalendarItemType", lambda b, f: f.kind)),
    "calendar:MyResponseType": (
        310,
        _simple("MyResponseType", lambda b, f: f.value("my_response_type")),
    ),
    "calendar:Organizer": (320, _organizer),
    "calendar:Duration": (330, lambda b, f: t("Duration", _duration(f))),
    "calendar:AppointmentSequenceNumber": (
        340,
        _simple("AppointmentSequenceNumber", lambda b, f: f.booking.version - 1),
    ),
    "calendar:Recurrence": (350, _recurrence),
    "calendar:ModifiedOccurrences": (360, _modified_occurrences),
    "calendar:DeletedOccurrences": (370, _deleted_occurrences),
    # Outlook in Sweden books in W. Europe time; exchangelib needs it for all-day dates.
    "calendar:StartTimeZone": (380, lambda b, f: t("StartTimeZone", **TIME_ZONE)),
    "calendar:EndTimeZone": (390, lambda b, f: t("EndTimeZone", **TIME_ZONE)),
}
EXTENDED_PLACE = 110


def calendar_item(box: Mailbox, found: Instance, field_uris, extended_uris) -> object:
    """`t:CalendarItem` with ItemId and the asked-for properties (FieldURI strings, and
    ExtendedFieldURI attribute dicts)."""
    element = t("CalendarItem")
    element.append(_item_id(box, found))
    parts = []
    for uri in field_uris:
        known = FIELDS.get(uri)
        if known:
            parts.append((known[0], known[1](box, found)))
    for attrs in extended_uris:
        value = _extended_value(found, attrs)
        if value is not None:
            parts.append((EXTENDED_PLACE, _extended(attrs, value)))
    for _, part in sorted(parts, key=lambda p: p[0]):
        if part is not None:
            element.append(part)
    return element


def _extended_value(found: Instance, attrs: dict):
    if attrs.get("DistinguishedPropertySetId") == PUBLIC_STRINGS or (
        attrs.get("PropertySetId", "").upper() == "00020329-0000-0000-C000-000000000046"
    ):
        return found.extended().get(attrs.get("PropertyName"))
    return None


def _extended(attrs: dict, value: str):
    element = t("ExtendedProperty")
    element.append(t("ExtendedFieldURI", **attrs))
    element.append(t("Value", value))
    return element


# What a calendar view's "AllProperties" answer holds, for callers who ask for no fields.
ALL_PROPERTIES = [uri for uri in FIELDS if uri != "item:Body"] + ["item:Body"]
HOUR = timedelta(hours=1)
