"""A user's own rules ("Mina regler"): how they are stored, read and checked."""

import pytest
from django.utils import translation

from calendarsync import personal_rules
from calendarsync.items import AddinChoice, ShowAs

REASONS = {"MOTE", "LUNCH", "FRANVARANDE"}


def test_it_reads_one_rule_per_show_as():
    stored = {"busy": {"forwarding": "divert", "reason": "MOTE"}, "oof": None}
    assert personal_rules.parse(stored) == {ShowAs.BUSY: AddinChoice("divert", "MOTE")}


def test_an_older_flat_profile_speaks_for_busy_and_out_of_office():
    choice = AddinChoice("info", "LUNCH")
    assert personal_rules.parse({"forwarding": "info", "reason": "LUNCH"}) == {
        ShowAs.BUSY: choice,
        ShowAs.OOF: choice,
    }


@pytest.mark.parametrize("stored", [{}, None, [], "busy", {"busy": {"forwarding": "loud"}}])
def test_unusable_profiles_are_no_rules(stored):
    assert personal_rules.parse(stored) == {}


def test_it_answers_both_keys():
    mapping = {ShowAs.OOF: AddinChoice("divert", "FRANVARANDE", True)}
    assert personal_rules.to_json(mapping) == {
        "busy": None,
        "oof": {"forwarding": "divert", "reason": "FRANVARANDE", "open_diversion": True},
    }


def test_clean_keeps_what_is_valid_and_drops_open_diversion_without_a_diversion():
    cleaned = personal_rules.clean(
        {"busy": {"forwarding": "info", "reason": "MOTE", "open_diversion": True}, "oof": None},
        REASONS,
    )
    assert cleaned == {"busy": {"forwarding": "info", "reason": "MOTE", "open_diversion": False}}
    assert personal_rules.clean({"oof": {"forwarding": "skip"}}, REASONS) == {
        "oof": {"forwarding": "skip", "reason": None, "open_diversion": False}
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("busy", "The rules must be an object"),
        ({"tentative": None}, "Unknown rule: tentative."),
        ({"busy": {"forwarding": "loud"}}, "Choose absence info, diversion or do not sync."),
        ({"busy": {"forwarding": "divert"}}, "Choose a reason."),
        ({"busy": {"forwarding": "divert", "reason": "GOLF"}}, "“GOLF” is not one of"),
    ],
)
def test_clean_refuses_with_a_message_the_user_can_act_on(data, message):
    with translation.override("en"), pytest.raises(ValueError, match=message):
        personal_rules.clean(data, REASONS)
