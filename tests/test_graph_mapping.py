"""Graph event JSON → CalendarItem: privacy at the boundary, times, all-day dates, the add-in."""

import json
import logging
from datetime import datetime, timedelta

import pytest

from calendarsync.items import AddinChoice, ItemKind, Response, Sensitivity, ShowAs
from calendarsync.providers.graph.mapping import (
    addin_property_id,
    calendar_view_select,
    item_from_graph,
    items_from_graph,
    parse_addin_choice,
)
from calendarsync.rules import STOCKHOLM

ADDIN_ID = "5d0e6f3a-1b2c-4d5e-8f90-a1b2c3d4e5f6"


def event(**fields):
    values = {
        "id": "AAMkAD-1",
        "subject": "Kundmöte",
        "start": {"dateTime": "2026-06-01T08:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-06-01T09:30:00.0000000", "timeZone": "UTC"},
        "isAllDay": False,
        "showAs": "busy",
        "sensitivity": "normal",
        "isCancelled": False,
        "type": "singleInstance",
        "seriesMasterId": None,
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "categories": ["Kund"],
    }
    values.update(fields)
    return values


def addin(value):
    return {"singleValueExtendedProperties": [{"id": addin_property_id(ADDIN_ID), "value": value}]}


def test_it_maps_a_timed_event():
    item = item_from_graph(event(), include_subject=True)
    assert item.provider_item_id == "AAMkAD-1"
    assert item.kind == ItemKind.SINGLE
    assert item.start == datetime(2026, 6, 1, 10, 0, tzinfo=STOCKHOLM)
    assert item.end - item.start == timedelta(minutes=90)
    assert (item.show_as, item.sensitivity, item.my_response) == (
        ShowAs.BUSY,
        Sensitivity.NORMAL,
        Response.ORGANIZER,
    )
    assert item.categories == ("Kund",)
    assert item.subject == "Kundmöte"
    assert item.addin_choice is None


@pytest.mark.parametrize("sensitivity", ["private", "confidential", "somethingNew"])
def test_it_drops_private_and_confidential_events_inside_the_adapter(sensitivity):
    assert item_from_graph(event(sensitivity=sensitivity), include_subject=True) is None


def test_it_keeps_the_subject_out_unless_allowed():
    assert item_from_graph(event(), include_subject=False).subject is None
    assert "subject" not in calendar_view_select(include_subject=False)
    assert calendar_view_select(include_subject=True).endswith(",subject")
    assert "body" not in calendar_view_select(include_subject=True)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ("free", ShowAs.FREE),
        ("tentative", ShowAs.TENTATIVE),
        ("busy", ShowAs.BUSY),
        ("oof", ShowAs.OOF),
        ("workingElsewhere", ShowAs.WORKING_ELSEWHERE),
        ("unknown", ShowAs.UNKNOWN),
        ("somethingNew", ShowAs.UNKNOWN),
    ],
)
def test_it_maps_show_as(graph, expected):
    assert item_from_graph(event(showAs=graph), include_subject=False).show_as == expected


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ("organizer", Response.ORGANIZER),
        ("accepted", Response.ACCEPTED),
        ("tentativelyAccepted", Response.TENTATIVE),
        ("declined", Response.DECLINED),
        ("notResponded", Response.NONE),
        ("none", Response.NONE),
    ],
)
def test_it_maps_my_response(graph, expected):
    mapped = item_from_graph(event(responseStatus={"response": graph}), include_subject=False)
    assert mapped.my_response == expected


def test_it_maps_occurrences_and_exceptions_and_skips_series_masters():
    occurrence = item_from_graph(
        event(type="occurrence", seriesMasterId="M-1"), include_subject=False
    )
    assert (occurrence.kind, occurrence.series_master_id) == (ItemKind.OCCURRENCE, "M-1")
    moved = item_from_graph(event(type="exception", seriesMasterId="M-1"), include_subject=False)
    assert moved.kind == ItemKind.EXCEPTION
    assert item_from_graph(event(type="seriesMaster"), include_subject=False) is None


def test_it_maps_cancelled():
    assert item_from_graph(event(isCancelled=True), include_subject=False).cancelled


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        ("2026-03-29", 23),  # last Sunday of March: clocks go forward
        ("2026-10-25", 25),  # last Sunday of October: clocks go back
        ("2026-06-01", 24),
    ],
)
def test_it_reads_all_day_events_as_stockholm_dates_across_dst(day, hours):
    start = datetime.fromisoformat(day)
    end = start + timedelta(days=1)
    mapped = item_from_graph(
        event(
            isAllDay=True,
            start={"dateTime": f"{day}T00:00:00.0000000", "timeZone": "UTC"},
            end={"dateTime": f"{end:%Y-%m-%d}T00:00:00.0000000", "timeZone": "UTC"},
        ),
        include_subject=False,
    )
    assert mapped.all_day
    assert mapped.start == datetime(start.year, start.month, start.day, tzinfo=STOCKHOLM)
    assert mapped.start.astimezone(STOCKHOLM).hour == 0
    assert mapped.end.timestamp() - mapped.start.timestamp() == hours * 3600


def test_it_reads_a_multi_day_all_day_event_whatever_zone_graph_names():
    mapped = item_from_graph(
        event(
            isAllDay=True,
            start={"dateTime": "2026-10-24T00:00:00.0000000", "timeZone": "Pacific Standard Time"},
            end={"dateTime": "2026-10-27T00:00:00.0000000", "timeZone": "Pacific Standard Time"},
        ),
        include_subject=False,
    )
    assert mapped.start.isoformat() == "2026-10-24T00:00:00+02:00"
    assert mapped.end.isoformat() == "2026-10-27T00:00:00+01:00"


def test_it_understands_windows_and_iana_zone_names():
    windows = {"dateTime": "2026-06-01T10:00:00.0000000", "timeZone": "W. Europe Standard Time"}
    iana = {"dateTime": "2026-06-01T10:00:00", "timeZone": "Europe/Stockholm"}
    for value in (windows, iana):
        mapped = item_from_graph(event(start=value, end=value), include_subject=False)
        assert mapped.start == datetime(2026, 6, 1, 10, tzinfo=STOCKHOLM)


def test_it_skips_an_event_with_unusable_times_and_logs_it(caplog):
    broken = event(start={"dateTime": "not a time", "timeZone": "UTC"})
    with caplog.at_level(logging.WARNING):
        assert (
            items_from_graph([broken, event(id="ok")], include_subject=False)[0].provider_item_id
            == "ok"
        )
    assert "unusable" in caplog.text


def test_it_reads_the_addin_choice_from_its_extended_property():
    value = json.dumps({"forwarding": "divert", "reason": "LUNCH", "openDiversion": True})
    mapped = item_from_graph(event(**addin(value)), include_subject=False)
    assert mapped.addin_choice == AddinChoice("divert", "LUNCH", True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"forwarding": "info", "reasonCode": "MOTE"}', AddinChoice("info", "MOTE")),
        ('{"forwarding": "skip"}', AddinChoice("skip")),
        ('{"forwarding": "INFO", "open_diversion": "true"}', AddinChoice("info")),
        ('{"forwarding": "divert", "open_diversion": "true"}', AddinChoice("divert", None, True)),
        ('{"reason": "MOTE"}', None),
        (None, None),
        ("", None),
    ],
)
def test_it_parses_addin_values_leniently(raw, expected):
    assert parse_addin_choice(raw) == expected


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"divert"', '{"forwarding": "teleport"}'])
def test_it_ignores_and_logs_a_malformed_addin_value(raw, caplog):
    with caplog.at_level(logging.WARNING):
        mapped = item_from_graph(event(**addin(raw)), include_subject=False)
    assert mapped is not None and mapped.addin_choice is None
    assert "add-in property" in caplog.text


def test_it_reads_only_the_addins_own_property():
    other = {"singleValueExtendedProperties": [{"id": "String {x} Name other", "value": "{}"}]}
    assert item_from_graph(event(**other), include_subject=False).addin_choice is None
