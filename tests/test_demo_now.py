"""The demo has someone away at any hour `make run` starts: the M365 sandbox's Demo AB tenant
holds, besides its fortnight, a meeting going on now (Anna: the default template makes it a
Frånvaro "Möte") and a booking going on now with the Outlook add-in's choice "divert" (David,
who has Hänvisning in One X), served as Graph serves an add-in's extended property."""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from calendarsync.items import AddinChoice
from calendarsync.rules import choice_from_dict
from sandbox.m365 import demo, server
from sandbox.onex import demo as onex_demo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
UTC = ZoneInfo("UTC")
ANNA = "anna.andersson@demo.se"
DAVID = "david.dahl@demo.se"
# PS_PUBLIC_STRINGS and the add-in's property name, cecp-<add-in id>, as the product asks.
ADDIN_PROPERTY = f"String {{00020329-0000-0000-C000-000000000046}} Name cecp-{settings.MS_ADDIN_ID}"
# What the product's window read selects (never the body).
SELECT = (
    "id,start,end,isAllDay,showAs,sensitivity,isCancelled,type,seriesMasterId,"
    "responseStatus,categories,subject"
)
NOWS = [
    datetime(2026, 3, 4, 3, 0, tzinfo=STOCKHOLM),  # a Wednesday night
    datetime(2026, 3, 4, 12, 0, tzinfo=STOCKHOLM),  # lunchtime, beside the fortnight's lunches
    datetime(2026, 3, 4, 23, 50, tzinfo=STOCKHOLM),  # the meeting ends after midnight
    datetime(2026, 3, 7, 15, 20, 42, tzinfo=STOCKHOLM),  # a Saturday, not on a whole minute
    datetime(2026, 7, 1, 9, 5, tzinfo=STOCKHOLM),  # summer time, during the stand-up
]


def started_at(now, monkeypatch, **kwargs):
    monkeypatch.setattr(server, "now_utc", lambda: now.astimezone(UTC))
    return server.Sandbox(**kwargs)


def view_now(sandbox, mailbox, now, expand=ADDIN_PROPERTY):
    """calendarView for [now, now + 1 min) as the product asks for it."""
    tenant = sandbox.tenants[demo.DEMO_TENANT_ID]
    query = {
        "startDateTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endDateTime": (now + timedelta(minutes=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "$select": SELECT,
    }
    if expand:
        query["$expand"] = f"singleValueExtendedProperties($filter=id eq '{expand}')"
    status, _headers, body = sandbox.calendar_view(
        tenant, sandbox.find_user(tenant, mailbox), query, {"prefer": 'outlook.timezone="UTC"'}
    )
    assert status == 200, body
    return body["value"]


def utc(value):
    assert value["timeZone"] == "UTC"
    return datetime.fromisoformat(value["dateTime"][:19]).replace(tzinfo=UTC)


@pytest.mark.parametrize("now", NOWS, ids=lambda now: f"{now:%a-%H%M}")
def test_anna_is_in_a_busy_normal_meeting_now(now, monkeypatch):
    sandbox = started_at(now, monkeypatch)
    events = view_now(sandbox, ANNA, now)
    meetings = [
        e
        for e in events
        if e["showAs"] == "busy"
        and e["sensitivity"] == "normal"
        and not e["isCancelled"]
        and not e["isAllDay"]
        and e["responseStatus"]["response"] in ("organizer", "accepted")
        and "singleValueExtendedProperties" not in e  # no add-in choice: the rules decide
    ]
    assert meetings, events
    meeting = next(e for e in meetings if e["subject"] == "Avstämning med Volvo")
    start, end = utc(meeting["start"]), utc(meeting["end"])
    assert start <= now - timedelta(minutes=30) < start + timedelta(minutes=1)
    assert now + timedelta(minutes=44) < end <= now + timedelta(minutes=45)


@pytest.mark.parametrize("now", NOWS, ids=lambda now: f"{now:%a-%H%M}")
def test_david_has_an_addin_diversion_now_in_graphs_shape(now, monkeypatch):
    sandbox = started_at(now, monkeypatch)
    events = view_now(sandbox, DAVID, now)
    chosen = [e for e in events if "singleValueExtendedProperties" in e]
    assert len(chosen) == 1, events
    event = chosen[0]
    assert utc(event["start"]) <= now < utc(event["end"])
    assert event["sensitivity"] == "normal"
    # Exactly the expanded property, as a list of {id, value} with the value a JSON string.
    (prop,) = event["singleValueExtendedProperties"]
    assert set(prop) == {"id", "value"}
    assert prop["id"].lower() == ADDIN_PROPERTY.lower()
    assert isinstance(prop["value"], str)
    assert choice_from_dict(json.loads(prop["value"])) == AddinChoice(
        forwarding="divert", reason_code="TJANSTERESA", open_diversion=False
    )
    # Graph leaves the property out when it is not expanded, or another one is.
    assert all(
        "singleValueExtendedProperties" not in e for e in view_now(sandbox, DAVID, now, None)
    )
    other = "String {00020329-0000-0000-C000-000000000046} Name cecp-someone-else"
    assert all(
        "singleValueExtendedProperties" not in e for e in view_now(sandbox, DAVID, now, other)
    )


def test_the_diverted_person_has_hanvisning_in_one_x_and_the_reason_exists():
    people = {p["email"]: p for p in onex_demo.demo_company()["subscriptions"]}
    assert people[DAVID]["features"]["diversion"] is True
    assert "TJANSTERESA" in {r["code"] for r in onex_demo.demo_company()["reasons"]}
    # Anna and Björn are the browser test's people: their demo has no add-in diversion now.
    tenant = demo.demo_tenant(NOWS[1])
    for mailbox in (ANNA, "bjorn.berg@demo.se"):
        events = tenant["events"][demo.user_id(mailbox)].values()
        assert not any(e.get("singleValueExtendedProperties") for e in events)


def test_the_fortnight_is_still_there_beside_the_bookings_of_now():
    now = NOWS[1]
    tenant = demo.demo_tenant(now)
    for email, events in demo.happening_now(now).items():
        mailbox = tenant["events"][demo.user_id(email)]
        assert all(mailbox[e["id"]] == e for e in events)
        assert len(mailbox) > 10


def test_a_restart_the_same_day_rebuilds_the_bookings_of_now(tmp_path, monkeypatch):
    state = tmp_path / "m365.json"
    earlier = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    first = started_at(earlier, monkeypatch, state_file=state)
    tenant = first.tenants[demo.DEMO_TENANT_ID]
    _, _, kept = first.create_event(tenant, first.find_user(tenant, ANNA), {"subject": "Kvar"})
    first.save()  # anchor: today

    later = earlier + timedelta(hours=5)
    again = started_at(later, monkeypatch, state_file=state)
    tenant = again.tenants[demo.DEMO_TENANT_ID]
    assert kept["id"] in tenant["events"][demo.user_id(ANNA)]  # the day's changes stay
    assert [e["subject"] for e in view_now(again, ANNA, later) if "Volvo" in e["subject"]]
    assert [e for e in view_now(again, DAVID, later) if "singleValueExtendedProperties" in e]
    assert not [e for e in view_now(again, DAVID, earlier) if "singleValueExtendedProperties" in e]
