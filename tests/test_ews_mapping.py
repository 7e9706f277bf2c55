"""exchangelib calendar items → CalendarItem: times, statuses, privacy, the add-in's choice."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from exchangelib import CalendarItem as EwsItem
from exchangelib import EWSDateTime, EWSTimeZone

from calendarsync.items import AddinChoice, ItemKind, Response, ShowAs
from calendarsync.providers.ews import mapping

STOCKHOLM = ZoneInfo("Europe/Stockholm")
TZ = EWSTimeZone("Europe/Stockholm")
ADDIN = "5f3c6d2a-8b1e-4c7a-9d0f-3e2b1a4c5d6e"


@pytest.fixture(autouse=True)
def addin_property():
    mapping.register_addin_property(ADDIN)


def item(**fields):
    defaults = {
        "id": "AAMk-1",
        "changekey": "ck",
        "start": EWSDateTime(2026, 12, 3, 9, 0, tzinfo=TZ),
        "end": EWSDateTime(2026, 12, 3, 10, 30, tzinfo=TZ),
        "legacy_free_busy_status": "Busy",
        "sensitivity": "Normal",
        "type": "Single",
        "subject": "Styrelsemöte",
    }
    return EwsItem(**{**defaults, **fields})


def test_a_meeting_keeps_its_instant_status_and_response():
    mapped = mapping.item_from_ews(
        item(my_response_type="Tentative", categories=["Jour"]), include_subject=False
    )
    assert mapped.start == datetime(2026, 12, 3, 9, 0, tzinfo=STOCKHOLM)
    assert mapped.end == datetime(2026, 12, 3, 10, 30, tzinfo=STOCKHOLM)
    assert mapped.show_as == ShowAs.BUSY and mapped.my_response == Response.TENTATIVE
    assert mapped.kind == ItemKind.SINGLE and mapped.series_master_id is None
    assert mapped.categories == ("Jour",) and not mapped.all_day


def test_the_subject_only_when_allowed():
    assert mapping.item_from_ews(item(), include_subject=False).subject is None
    assert mapping.item_from_ews(item(), include_subject=True).subject == "Styrelsemöte"
    assert "subject" not in mapping.view_fields(include_subject=False)
    assert "subject" in mapping.view_fields(include_subject=True)


def test_a_window_read_never_asks_for_a_body():
    for include_subject in (False, True):
        fields = set(mapping.view_fields(include_subject=include_subject))
        assert not fields & {"body", "text_body", "unique_body", "mime_content"}


@pytest.mark.parametrize("sensitivity", ["Private", "Confidential", "Something new"])
def test_private_confidential_and_unknown_sensitivities_never_leave_the_package(sensitivity):
    assert mapping.item_from_ews(item(sensitivity=sensitivity), include_subject=True) is None
    assert mapping.items_from_ews([item(sensitivity=sensitivity)], include_subject=True) == []


def test_an_all_day_item_is_stockholm_days_with_an_exclusive_end():
    # exchangelib gives all-day days as dates, the last day inclusive.
    mapped = mapping.item_from_ews(
        item(is_all_day=True, start=date(2026, 12, 10), end=date(2026, 12, 11)),
        include_subject=False,
    )
    assert mapped.all_day
    assert mapped.start == datetime(2026, 12, 10, tzinfo=STOCKHOLM)
    assert mapped.end == datetime(2026, 12, 12, tzinfo=STOCKHOLM)


def test_occurrences_and_exceptions_name_their_series_and_masters_are_left_out():
    occurrence = mapping.item_from_ews(item(type="Occurrence", uid="U-1"), include_subject=False)
    exception = mapping.item_from_ews(item(type="Exception", uid="U-1"), include_subject=False)
    assert occurrence.kind == ItemKind.OCCURRENCE and exception.kind == ItemKind.EXCEPTION
    assert occurrence.series_master_id == exception.series_master_id == "U-1"
    assert mapping.item_from_ews(item(type="RecurringMaster"), include_subject=False) is None


def test_statuses_map_and_unknown_ones_are_unknown():
    for status, show_as in [
        ("Free", ShowAs.FREE),
        ("Tentative", ShowAs.TENTATIVE),
        ("OOF", ShowAs.OOF),
        ("WorkingElsewhere", ShowAs.WORKING_ELSEWHERE),
        ("NoData", ShowAs.UNKNOWN),
    ]:
        mapped = mapping.item_from_ews(item(legacy_free_busy_status=status), include_subject=False)
        assert mapped.show_as == show_as


def test_the_addins_choice_is_read_and_a_malformed_one_ignored():
    chosen = item(**{mapping.ADDIN_FIELD: '{"forwarding": "divert", "reason": "MOTE"}'})
    assert mapping.item_from_ews(chosen, include_subject=False).addin_choice == AddinChoice(
        "divert", "MOTE"
    )
    broken = item(**{mapping.ADDIN_FIELD: "{not json"})
    assert mapping.item_from_ews(broken, include_subject=False).addin_choice is None


def test_the_addin_property_follows_the_configured_addin_id():
    mapping.register_addin_property("11111111-2222-3333-4444-555555555555")
    prop = getattr(EwsItem, mapping.ADDIN_FIELD).value_cls
    assert prop.property_name == "cecp-11111111-2222-3333-4444-555555555555"
    assert prop.distinguished_property_set_id == "PublicStrings"
    mapping.register_addin_property(ADDIN)
    assert getattr(EwsItem, mapping.ADDIN_FIELD).value_cls.property_name == f"cecp-{ADDIN}"


def test_per_item_errors_are_skipped():
    assert mapping.items_from_ews([ValueError("x"), item()], include_subject=False)[0].start
