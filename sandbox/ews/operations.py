"""The EWS operations the product (through exchangelib) calls, each as a function from the
request's body element to the response's body element.

`MAILBOX_OPERATIONS` act on the impersonated mailbox; the others (ResolveNames, ExpandDL,
ConvertId) are directory-wide. Field URIs asked for are noted in the request-log entry.
"""

from datetime import datetime

from . import groups
from .calendar import Mailbox, parse_time
from .items import ALL_PROPERTIES, calendar_item
from .xml import child, find, findall, m, response, response_message, t, text_of

MAILBOX_OPERATIONS = {"GetFolder", "FindItem", "GetItem", "Subscribe", "Unsubscribe"}
FOLDERS = {
    # distinguished id: (element, FolderClass, display name, parent)
    "root": ("Folder", None, "", None),
    "msgfolderroot": ("Folder", "IPF.Note", "Top of Information Store", "root"),
    "calendar": ("CalendarFolder", "IPF.Appointment", "Kalender", "msgfolderroot"),
}
MIN_STATUS_FREQUENCY, MAX_STATUS_FREQUENCY = 1, 1440
MAX_RESOLUTIONS = 100  # ResolveNames' candidates per answer


class OperationError(Exception):
    """A whole-request error, answered as a response message with this code."""

    def __init__(self, code, message, values=None):
        super().__init__(message)
        self.code, self.message, self.values = code, message, values


def requested_fields(shape, entry) -> tuple[list[str], list[dict]]:
    """The FieldURIs and ExtendedFieldURIs of an ItemShape/FolderShape, noted in the log."""
    base = text_of(shape, "t:BaseShape", "IdOnly")
    additional = find(shape, "t:AdditionalProperties")
    uris = [e.get("FieldURI") for e in findall(additional, "t:FieldURI")]
    uris += [
        f"{e.get('FieldURI')}:{e.get('FieldIndex')}"
        for e in findall(additional, "t:IndexedFieldURI")
    ]
    extended = [dict(e.attrib) for e in findall(additional, "t:ExtendedFieldURI")]
    entry["base_shape"] = base
    entry.setdefault("fields", []).extend(uris)
    entry.setdefault("extended_fields", []).extend(
        e.get("PropertyName") or e.get("PropertyTag") or e.get("PropertyId") for e in extended
    )
    if base in ("AllProperties", "Default"):
        uris = list(dict.fromkeys(uris + ALL_PROPERTIES))
        entry["fields_implied"] = base
    return uris, extended


# ----- folders


def _folder_name(box: Mailbox, element) -> str | None:
    """The distinguished name a FolderId/DistinguishedFolderId points at in this mailbox."""
    if element.tag.endswith("DistinguishedFolderId"):
        address = text_of(element, "t:Mailbox/t:EmailAddress")
        if address and address.lower() != box.email:
            return None
        return element.get("Id") if element.get("Id") in FOLDERS else None
    for name in FOLDERS:
        if element.get("Id") == box.folder_id(name):
            return name
    return None


def _folder(box: Mailbox, name: str):
    tag, folder_class, display, parent = FOLDERS[name]
    element = t(tag)
    element.append(t("FolderId", Id=box.folder_id(name), ChangeKey="AQAAAA=="))
    if parent:
        element.append(t("ParentFolderId", Id=box.folder_id(parent), ChangeKey="AQAAAA=="))
    if folder_class:
        element.append(t("FolderClass", folder_class))
    element.append(t("DisplayName", display))
    count = len(box.bookings) if name == "calendar" else 0
    element.append(t("TotalCount", count))
    element.append(t("ChildFolderCount", 0 if name == "calendar" else 1))
    if tag == "Folder":
        element.append(t("UnreadCount", 0))
    return element


def get_folder(sandbox, box: Mailbox, request, entry):
    requested_fields(find(request, "m:FolderShape"), entry)
    messages = []
    for element in list(find(request, "m:FolderIds")):
        name = _folder_name(box, element)
        entry.setdefault("folders", []).append(element.get("Id"))
        if name is None:
            messages.append(
                _with(
                    response_message("GetFolderResponseMessage", "ErrorFolderNotFound",
                                     "The specified folder could not be found in the store."),
                    m("Folders"),
                )
            )  # fmt: skip
            continue
        message = response_message("GetFolderResponseMessage")
        folders = child(message, m("Folders"))
        folders.append(_folder(box, name))
        messages.append(message)
    return response("GetFolder", messages)


def _with(message, *children):
    for element in children:
        message.append(element)
    return message


# ----- items


def _window(view) -> tuple[datetime, datetime]:
    try:
        return parse_time(view.get("StartDate")), parse_time(view.get("EndDate"))
    except ValueError as problem:
        raise OperationError("ErrorInvalidRequest", str(problem)) from None


def find_item(sandbox, box: Mailbox, request, entry):
    uris, extended = requested_fields(find(request, "m:ItemShape"), entry)
    parents = list(find(request, "m:ParentFolderIds"))
    messages = []
    view = find(request, "m:CalendarView")
    for parent in parents:
        if _folder_name(box, parent) != "calendar":
            messages.append(
                _with(
                    response_message("FindItemResponseMessage", "ErrorFolderNotFound",
                                     "The specified folder could not be found in the store."),
                )
            )  # fmt: skip
            continue
        if view is not None:
            start, end = _window(view)
            entry["window"] = [start.isoformat(), end.isoformat()]
            found = box.view(start, end)
            limit = view.get("MaxEntriesReturned")
            complete = limit is None or len(found) <= int(limit)
            shown = found if complete else found[: int(limit)]
        else:
            found = [box.instance(b, None) for b in box.bookings.values()]
            paging = find(request, "m:IndexedPageItemView")
            offset = int(paging.get("Offset", 0)) if paging is not None else 0
            shown, complete = found[offset:], True
        message = response_message("FindItemResponseMessage")
        root = child(
            message,
            m("RootFolder", TotalItemsInView=len(found), IncludesLastItemInRange=complete),
        )
        items = child(root, t("Items"))
        for instance in shown:
            items.append(calendar_item(box, instance, uris, extended))
        entry["items"] = len(shown)
        messages.append(message)
    return response("FindItem", messages)


def _lookup(box: Mailbox, element):
    """The instance a t:ItemId / t:OccurrenceItemId / t:RecurringMasterItemId names."""
    name = element.tag.rsplit("}", 1)[-1]
    if name == "ItemId":
        booking, index = box.resolve(element.get("Id", ""))
    elif name == "OccurrenceItemId":
        booking, master_index = box.resolve(element.get("RecurringMasterId", ""))
        index = int(element.get("InstanceIndex", "0") or 0)
        if booking is None or master_index is not None or not booking.recurrence:
            return None
    elif name == "RecurringMasterItemId":
        booking, index = box.resolve(element.get("OccurrenceId", ""))
        if booking is None or not booking.recurrence:
            return None
        index = None
    else:
        return None
    return box.instance(booking, index) if booking is not None else None


def get_item(sandbox, box: Mailbox, request, entry):
    uris, extended = requested_fields(find(request, "m:ItemShape"), entry)
    messages = []
    for element in list(find(request, "m:ItemIds")):
        entry.setdefault("item_ids", []).append(element.tag.rsplit("}", 1)[-1])
        instance = _lookup(box, element)
        if instance is None:
            message = response_message(
                "GetItemResponseMessage",
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            )
            message.append(m("Items"))
            messages.append(message)
            continue
        message = response_message("GetItemResponseMessage")
        items = child(message, m("Items"))
        items.append(calendar_item(box, instance, uris, extended))
        messages.append(message)
    return response("GetItem", messages)


# ----- notifications


def subscribe(sandbox, box: Mailbox, request, entry):
    push = find(request, "m:PushSubscriptionRequest")
    if push is None:
        kind = next((c.tag.rsplit("}", 1)[-1] for c in request), "")
        entry["subscription"] = kind
        return _single(
            "Subscribe",
            "ErrorInvalidSubscriptionRequest",
            "The sandbox supports push subscriptions only.",
        )
    folders = find(push, "t:FolderIds")
    names = {_folder_name(box, f) for f in folders} if folders is not None else {"calendar"}
    if push.get("SubscribeToAllFolders") not in (None, "true", "1") or names != {"calendar"}:
        return _single("Subscribe", "ErrorFolderNotFound",
                       "The specified folder could not be found in the store.")  # fmt: skip
    event_types = [e.text for e in findall(push, "t:EventTypes/t:EventType")]
    watermark = text_of(push, "m:Watermark") or text_of(push, "t:Watermark")
    url = text_of(push, "t:URL", "")
    frequency = int(text_of(push, "t:StatusFrequency", "30"))
    entry["subscription"] = {
        "url": url,
        "status_frequency": frequency,
        "watermark": bool(watermark),
    }
    if not url.startswith(("http://", "https://")):
        return _single("Subscribe", "ErrorInvalidPushSubscriptionUrl", "The URL is not valid.")
    if not MIN_STATUS_FREQUENCY <= frequency <= MAX_STATUS_FREQUENCY:
        return _single("Subscribe", "ErrorInvalidRequest", "StatusFrequency must be 1-1440.")
    cursor = None
    if watermark:
        cursor = box.seq_of(watermark)
        if cursor is None or sandbox.knobs.watermark_expired:
            return _single(
                "Subscribe",
                "ErrorInvalidWatermark",
                "The watermark used for creating this subscription was not found.",
            )
    subscription = sandbox.push.subscribe(box, url, frequency, event_types, cursor)
    entry["subscription_id"] = subscription.id
    message = response_message("SubscribeResponseMessage")
    message.append(m("SubscriptionId", subscription.id))
    message.append(m("Watermark", box.watermark(subscription.cursor)))
    return response("Subscribe", [message])


def unsubscribe(sandbox, box: Mailbox, request, entry):
    subscription_id = text_of(request, "m:SubscriptionId", "")
    entry["subscription_id"] = subscription_id
    if not sandbox.push.unsubscribe(subscription_id, box.email, reason="Unsubscribe"):
        return _single("Unsubscribe", "ErrorSubscriptionNotFound",
                       "The specified subscription was not found.")  # fmt: skip
    return response("Unsubscribe", [response_message("UnsubscribeResponseMessage")])


def _single(operation, code, message, values=None):
    return response(operation, [response_message(f"{operation}ResponseMessage", code, message,
                                                 values)])  # fmt: skip


# ----- directory


def _matches(sandbox, query: str):
    query = query.strip().lower().removeprefix("smtp:")
    people = [
        box
        for box in sandbox.directory.mailboxes.values()
        if box.email.startswith(query) or box.name.lower().startswith(query)
        or any(part.startswith(query) for part in box.name.lower().split())
    ]  # fmt: skip
    dls = [
        (email, group)
        for email, group in sandbox.directory.groups.items()
        if email.startswith(query) or group["name"].lower().startswith(query)
    ]
    return people, dls


def _mailbox_element(name, email, mailbox_type="Mailbox"):
    element = t("Mailbox")
    element.append(t("Name", name))
    element.append(t("EmailAddress", email))
    element.append(t("RoutingType", "SMTP"))
    element.append(t("MailboxType", mailbox_type))
    return element


def _contact(sandbox, box: Mailbox):
    person = sandbox.people.get(box.email, {})
    contact = t("Contact")
    contact.append(t("DisplayName", box.name))
    given, _, surname = box.name.partition(" ")
    contact.append(t("GivenName", given))
    addresses = child(contact, t("EmailAddresses"))
    addresses.append(t("Entry", f"SMTP:{box.email}", Key="EmailAddress1"))
    phones = [("BusinessPhone", person.get("extension")), ("MobilePhone", person.get("mobile"))]
    if any(number for _, number in phones):
        numbers = child(contact, t("PhoneNumbers"))
        for key, number in phones:
            if number:
                numbers.append(t("Entry", number, Key=key))
    contact.append(t("ContactSource", "ActiveDirectory"))
    contact.append(t("Surname", surname))
    return contact


def resolve_names(sandbox, box, request, entry):
    query = text_of(request, "m:UnresolvedEntry", "")
    full = request.get("ReturnFullContactData") in ("true", "1")
    entry["query"] = query
    people, dls = _matches(sandbox, query)
    total = len(people) + len(dls)
    if not total:
        return _single("ResolveNames", "ErrorNameResolutionNoResults",
                       "No results were found.")  # fmt: skip
    if total == 1:
        message = response_message("ResolveNamesResponseMessage")
    else:
        message = response_message(
            "ResolveNamesResponseMessage",
            "ErrorNameResolutionMultipleResults",
            "Multiple results were found.",
        )
        message.set("ResponseClass", "Warning")
    # Exchange answers at most 100 candidates, by display name, and says when it cut the list.
    found = sorted(
        [(person.name, person.email, person) for person in people]
        + [(group["name"], email, None) for email, group in dls],
        key=lambda row: (row[0].lower(), row[1]),
    )[:MAX_RESOLUTIONS]
    resolutions = child(
        message,
        m("ResolutionSet", TotalItemsInView=total, IncludesLastItemInRange=total == len(found)),
    )
    for name, email, person in found:
        resolution = child(resolutions, t("Resolution"))
        resolution.append(_mailbox_element(name, email, "Mailbox" if person else "PublicDL"))
        if full and person:
            resolution.append(_contact(sandbox, person))
    entry["resolutions"] = len(found)
    return response("ResolveNames", [message])


def expand_dl(sandbox, box, request, entry):
    email = (text_of(request, "m:Mailbox/t:EmailAddress", "") or "").lower()
    entry["group"] = email
    members = groups.expansion(sandbox.directory, email)
    if members is None:
        return _single("ExpandDL", "ErrorNameResolutionNoResults", "No results were found.")
    limit = sandbox.knobs.expand_dl_limit
    shown = members if limit is None else members[:limit]
    message = response_message("ExpandDLResponseMessage")
    expansion = child(
        message,
        m(
            "DLExpansion",
            TotalItemsInView=len(members),
            IncludesLastItemInRange=len(shown) == len(members),
        ),
    )
    for name, address, mailbox_type in shown:
        expansion.append(_mailbox_element(name, address, mailbox_type))
    entry["members"] = len(shown)
    return response("ExpandDL", [message])


def convert_id(sandbox, box, request, entry):
    # exchangelib's version probe sends a dummy id: answer as Exchange does, per id.
    messages = []
    for _ in findall(request, "m:SourceIds/*") or [None]:
        messages.append(
            response_message("ConvertIdResponseMessage", "ErrorInvalidIdMalformed",
                             "Id is malformed.")
        )  # fmt: skip
    return response("ConvertId", messages)


OPERATIONS = {
    "GetFolder": get_folder,
    "FindItem": find_item,
    "GetItem": get_item,
    "Subscribe": subscribe,
    "Unsubscribe": unsubscribe,
    "ResolveNames": resolve_names,
    "ExpandDL": expand_dl,
    "ConvertId": convert_id,
}
