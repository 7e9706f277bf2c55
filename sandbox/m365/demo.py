"""Demo AB's Microsoft 365 tenant: the One X sandbox's people with a realistic fortnight.

Mailboxes match sandbox/onex/demo.py's people (same emails). Calendars are built relative to
"now" each time the sandbox starts: meetings, lunches, a daily stand-up with one moved and one
cancelled occurrence, an all-day out-of-office, a private appointment, tentative and declined
meetings. Two bookings are going on when the sandbox starts, whatever the hour (see
`happening_now`): Anna is in a meeting, and David is at a customer's with the Outlook add-in's
choice "Hänvisning" on that booking.
"""

import hashlib
import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from . import groups

DEMO_TENANT_ID = "6d656d6f-0000-4000-8000-0000000000ab"
DEMO_TENANT_NAME = "Demo AB"
STOCKHOLM = ZoneInfo("Europe/Stockholm")
UTC = ZoneInfo("UTC")
WINDOWS_ZONE = "W. Europe Standard Time"
# The Outlook add-in's id: keep in step with the default of MS_ADDIN_ID in mss/settings.py.
DEFAULT_ADDIN_ID = "5f3c6d2a-8b1e-4c7a-9d0f-3e2b1a4c5d6e"
# PS_PUBLIC_STRINGS, where Office keeps an add-in's custom properties as one JSON string
# named cecp-<add-in id> ([MS-OXCEXT]).
PUBLIC_STRINGS = "{00020329-0000-0000-C000-000000000046}"

# (email, display name) — keep in step with sandbox/onex/demo.py's PEOPLE.
PEOPLE = [
    ("anna.andersson@demo.se", "Anna Andersson"),
    ("bjorn.berg@demo.se", "Björn Berg"),
    ("cecilia.carlsson@demo.se", "Cecilia Carlsson"),
    ("david.dahl@demo.se", "David Dahl"),
    ("eva.ek@demo.se", "Eva Ek"),
    ("fredrik.forsberg@demo.se", "Fredrik Forsberg"),
]
ANNA, DAVID = PEOPLE[0][0], PEOPLE[3][0]  # David has Hänvisning in the One X demo
# The Entra ID group whose members the integration follows (Katalog Synk): everyone above, and
# a consultant with a mailbox but no One X subscription (the membership report's "no
# subscription" line).
DEMO_GROUP_NAME = "Kalenderkoppling"
CONSULTANT = ("gustav.gran@demo.se", "Gustav Gran (konsult)")

# Directory role template ids, as an ID token's `wids` claim lists them.
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
ROLE_NAMES = {
    GLOBAL_ADMINISTRATOR: "Global Administrator",
    PRIVILEGED_ROLE_ADMINISTRATOR: "Privileged Role Administrator",
}
# Who may grant admin consent in Demo AB: Anna (Global Administrator) and Cecilia (Privileged
# Role Administrator). Björn and the others have no directory role.
ROLES = {
    "anna.andersson@demo.se": [GLOBAL_ADMINISTRATOR],
    "cecilia.carlsson@demo.se": [PRIVILEGED_ROLE_ADMINISTRATOR],
}


def stable_id(*parts: str, prefix: str = "") -> str:
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return prefix + digest[:32]


def user_id(email: str) -> str:
    digest = stable_id("user", email)
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"


def make_user(email: str, name: str) -> dict:
    return {
        "id": user_id(email),
        "displayName": name,
        "mail": email,
        "userPrincipalName": email,
    }


def make_event(owner: str, key: str, subject: str, start: datetime, end: datetime, **extra) -> dict:
    """A stored event in Graph's shape, times in Outlook's Windows zone name."""
    all_day = extra.pop("isAllDay", False)

    def stamp(moment: datetime) -> dict:
        if all_day:
            return {"dateTime": f"{moment:%Y-%m-%d}T00:00:00.0000000", "timeZone": WINDOWS_ZONE}
        local = moment.astimezone(STOCKHOLM)
        return {"dateTime": f"{local:%Y-%m-%dT%H:%M:%S}.0000000", "timeZone": WINDOWS_ZONE}

    event = {
        "id": stable_id(owner, key, prefix="AAMkAD"),
        "changeKey": stable_id(owner, key, "v1")[:16],
        "createdDateTime": "2026-01-01T08:00:00Z",
        "lastModifiedDateTime": "2026-01-01T08:00:00Z",
        "subject": subject,
        "bodyPreview": f"Agenda för {subject.lower()}",
        "body": {"contentType": "html", "content": f"<p>Agenda för {subject.lower()}</p>"},
        "start": stamp(start),
        "end": stamp(end),
        "isAllDay": all_day,
        "showAs": "busy",
        "sensitivity": "normal",
        "isCancelled": False,
        "isOrganizer": True,
        "type": "singleInstance",
        "seriesMasterId": None,
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "categories": [],
        "importance": "normal",
        "location": {"displayName": ""},
        "organizer": {"emailAddress": {"name": owner, "address": owner}},
    }
    event.update(extra)
    return event


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=STOCKHOLM)


def _workdays(today: date, count: int) -> list[date]:
    days, day = [], today
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def standup(owner: str, first_day: date, days: list[date]) -> dict:
    """A weekday 09:00 stand-up series with a moved and a cancelled occurrence."""
    series = make_event(
        owner,
        "standup",
        "Daglig stand-up",
        _at(first_day, 9),
        _at(first_day, 9, 15),
        type="seriesMaster",
        isOrganizer=owner == PEOPLE[0][0],
        responseStatus={"response": "organizer" if owner == PEOPLE[0][0] else "accepted"},
        recurrence={
            "pattern": {
                "type": "weekly",
                "interval": 1,
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "firstDayOfWeek": "monday",
            },
            "range": {
                "type": "endDate",
                "startDate": first_day.isoformat(),
                "endDate": (first_day + timedelta(days=60)).isoformat(),
                "recurrenceTimeZone": WINDOWS_ZONE,
            },
        },
    )
    moved, cancelled = days[2], days[4]
    series["exceptions"] = {
        moved.isoformat(): {
            "start": {"dateTime": f"{moved}T08:30:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": f"{moved}T08:45:00.0000000", "timeZone": "UTC"},
            "subject": "Daglig stand-up (flyttad)",
        },
        cancelled.isoformat(): {"deleted": True},
    }
    return series


def fortnight(owner: str, index: int, now: datetime) -> list[dict]:
    today = now.astimezone(STOCKHOLM).date()
    days = _workdays(today, 10)
    monday = today - timedelta(days=today.weekday())
    events = [standup(owner, monday, days)]
    for n, day in enumerate(days):
        if (n + index) % 3 != 1:
            events.append(
                make_event(owner, f"lunch-{n}", "Lunch", _at(day, 11, 30), _at(day, 12, 30))
            )
        if (n + index) % 2 == 0:
            events.append(
                make_event(
                    owner,
                    f"meeting-{n}",
                    ["Kundmöte", "Sprintplanering", "Avstämning ekonomi", "Workshop"][n % 4],
                    _at(day, 13 + n % 3),
                    _at(day, 14 + n % 3),
                    categories=["Kund"] if n % 4 == 0 else [],
                )
            )
    events.append(
        make_event(
            owner,
            "private",
            "Tandläkare",
            _at(days[1], 15),
            _at(days[1], 16),
            sensitivity="private",
        )
    )
    events.append(
        make_event(
            owner,
            "tentative",
            "Frukostseminarium",
            _at(days[3], 8),
            _at(days[3], 8, 45),
            showAs="tentative",
            isOrganizer=False,
            responseStatus={"response": "tentativelyAccepted"},
        )
    )
    events.append(
        make_event(
            owner,
            "declined",
            "Styrgruppsmöte",
            _at(days[5], 10),
            _at(days[5], 11),
            isOrganizer=False,
            responseStatus={"response": "declined"},
        )
    )
    off = days[6 + index % 3]
    events.append(
        make_event(
            owner,
            "ooo",
            "Semester" if index % 2 else "Kurs i Göteborg",
            _at(off, 0),
            _at(off + timedelta(days=1), 0),
            isAllDay=True,
            showAs="oof",
        )
    )
    return events


def addin_property_id(addin_id: str) -> str:
    """The id of the single-value extended property holding the add-in's custom properties."""
    return f"String {PUBLIC_STRINGS} Name cecp-{addin_id}"


def _now_event(owner: str, key: str, subject: str, start: datetime, end: datetime, **extra):
    # A new changeKey and modification time for each start: the event moved since last time.
    stamp = f"{start.astimezone(UTC):%Y-%m-%dT%H:%M:%S.0000000Z}"
    return make_event(
        owner,
        key,
        subject,
        start,
        end,
        changeKey=stable_id(owner, key, stamp)[:16],
        lastModifiedDateTime=stamp,
        **extra,
    )


def happening_now(now: datetime, addin_id: str = DEFAULT_ADDIN_ID) -> dict[str, list[dict]]:
    """Bookings going on at `now` (the sandbox's start), by mailbox, so that someone is away in
    the demo at any hour, weekends too:

    - Anna: a busy, normal meeting from 30 minutes before to 45 minutes after. The default
      template makes it a Frånvaro "Möte", shown as "Möte, åter HH:MM" in One X.
    - David (who has Hänvisning in One X): a customer visit on which the Outlook add-in's
      choice is a diversion, "Tjänsteresa"; the add-in's choice wins over the rules.
    """
    anchor = now.astimezone(UTC).replace(second=0, microsecond=0)
    choice = {"forwarding": "divert", "reason": "TJANSTERESA", "open_diversion": False}
    return {
        ANNA: [
            _now_event(
                ANNA,
                "now-meeting",
                "Avstämning med Volvo",
                anchor - timedelta(minutes=30),
                anchor + timedelta(minutes=45),
            )
        ],
        DAVID: [
            _now_event(
                DAVID,
                "now-addin-divert",
                "Kundbesök i Södertälje",
                anchor - timedelta(minutes=20),
                anchor + timedelta(hours=2),
                singleValueExtendedProperties=[
                    {"id": addin_property_id(addin_id), "value": json.dumps(choice)}
                ],
            )
        ],
    }


def demo_tenant(now: datetime, addin_id: str = DEFAULT_ADDIN_ID) -> dict:
    users = {}
    events = {}
    current = happening_now(now, addin_id)
    for index, (email, name) in enumerate(PEOPLE):
        user = make_user(email, name)
        users[user["id"]] = user
        mailbox = fortnight(email, index, now) + current.get(email, [])
        events[user["id"]] = {event["id"]: event for event in mailbox}
    consultant = make_user(*CONSULTANT)
    users[consultant["id"]], events[consultant["id"]] = consultant, {}
    tenant = {
        "id": DEMO_TENANT_ID,
        "name": DEMO_TENANT_NAME,
        "consented": False,
        "users": users,
        "events": events,
        # Directory roles by user id, apart from the users (Graph's user resource has no roles).
        "roles": {user_id(email): list(wids) for email, wids in ROLES.items()},
    }
    groups.create_group(
        tenant,
        DEMO_GROUP_NAME,
        group_id=demo_group_id(),
        description="Medarbetare vars kalendrar kopplas till One X",
        created="2026-01-01T08:00:00Z",
        members=[(user_id(email), "user") for email, _name in [*PEOPLE, CONSULTANT]],
    )
    return tenant


def demo_group_id() -> str:
    return user_id(f"group/{DEMO_GROUP_NAME}")
