"""Unreachable rules: `covers` says yes only when every booking of the later rule is caught."""

from datetime import time, timedelta

import pytest

from calendarsync.items import ShowAs
from calendarsync.reachability import covers, unreachable
from calendarsync.rules import Action, Rule, plan
from tests.calendar_factory import NOW, at, item, plan_settings

BUSY = frozenset({ShowAs.BUSY})
WEEKDAYS = frozenset({0, 1, 2, 3, 4})


def rule(rule_id=1, action=Action.INFO, **conditions):
    return Rule(id=rule_id, action=action, reason_code="MOTE", **conditions)


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        # The case: Busy → Frånvaro before a Busy office-hours Hänvisning.
        (
            {"show_as": BUSY},
            {"show_as": BUSY, "weekdays": WEEKDAYS, "time_from": time(7), "time_to": time(18)},
        ),
        ({}, {"show_as": {ShowAs.TENTATIVE}}),  # a rule without conditions catches all
        ({"show_as": {ShowAs.BUSY, ShowAs.OOF}}, {"show_as": BUSY}),
        ({"all_day": True}, {"all_day": True, "categories": {"Kund"}}),
        ({"categories": {"Kund", "Intern"}}, {"categories": {"kund"}}),
        ({"min_duration": timedelta(minutes=30)}, {"min_duration": timedelta(minutes=60)}),
        ({"subject_keywords": ("lunch",)}, {"subject_keywords": ("Lunchmöte",)}),
        ({"weekdays": WEEKDAYS}, {"weekdays": {2}, "time_from": time(9), "time_to": time(10)}),
        ({"time_from": time(7), "time_to": time(18)}, {"time_from": time(8), "time_to": time(9)}),
        # Overnight windows: the evening part, and the next morning's.
        ({"time_from": time(18), "time_to": time(7)}, {"time_from": time(22)}),
        (
            {"weekdays": {4}, "time_from": time(18), "time_to": time(7)},
            {"weekdays": {5}, "time_to": time(6)},
        ),
        (
            {"weekdays": {6}, "time_from": time(20), "time_to": time(6)},
            {"weekdays": {0}, "time_to": time(5)},
        ),
        # Monday and Tuesday, whole days, meet at midnight: Monday night lies inside.
        ({"weekdays": {0, 1}}, {"weekdays": {0}, "time_from": time(20), "time_to": time(7)}),
    ],
)
def test_it_sees_an_earlier_rule_that_catches_everything_a_later_one_could(earlier, later):
    assert covers(rule(**earlier), rule(2, Action.DIVERT, **later))


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        # Office hours first, then Busy at any time: evenings still reach the second rule.
        (
            {"show_as": BUSY, "weekdays": WEEKDAYS, "time_from": time(7), "time_to": time(18)},
            {"show_as": BUSY},
        ),
        ({"show_as": BUSY}, {}),
        ({"show_as": BUSY}, {"show_as": {ShowAs.BUSY, ShowAs.OOF}}),
        ({"all_day": True}, {}),
        ({"categories": {"Kund"}}, {"categories": {"Kund", "Intern"}}),
        ({"min_duration": timedelta(minutes=60)}, {"min_duration": timedelta(minutes=30)}),
        ({"min_duration": timedelta(minutes=60)}, {}),
        ({"subject_keywords": ("lunchmöte",)}, {"subject_keywords": ("lunch",)}),
        ({"weekdays": {2}}, {"weekdays": {2, 3}}),
        ({"time_from": time(7), "time_to": time(18)}, {"time_from": time(17), "time_to": time(19)}),
        ({"time_from": time(18), "time_to": time(7)}, {"time_from": time(6), "time_to": time(8)}),
        # Friday night ends Saturday 07:00; Saturday morning later than that is not caught.
        (
            {"weekdays": {4}, "time_from": time(18), "time_to": time(7)},
            {"weekdays": {5}, "time_to": time(8)},
        ),
        # Thursday night's morning is Friday's: a Friday-night rule does not reach Friday 06:00.
        (
            {"weekdays": {4}, "time_from": time(18), "time_to": time(7)},
            {"weekdays": {4}, "time_to": time(6)},
        ),
    ],
)
def test_it_does_not_flag_a_rule_that_some_booking_still_reaches(earlier, later):
    assert not covers(rule(**earlier), rule(2, Action.DIVERT, **later))


def test_the_case_it_does_not_flag_really_reaches_the_later_rule():
    """The must-not-flag case checked against the engine: a Busy booking at 20:00 is decided by
    the later rule, so flagging it would have been wrong."""
    office = rule(1, show_as=BUSY, weekdays=WEEKDAYS, time_from=time(7), time_to=time(18))
    any_busy = rule(2, Action.DIVERT, show_as=BUSY)
    assert unreachable([office, any_busy]) == {}
    evening = item(start=at(1, 20))
    absences = plan([evening], plan_settings(rules=(office, any_busy)), NOW).absences
    assert [a.decided_by for a in absences] == ["rule:2"]


def test_it_names_the_first_earlier_rule_that_catches_each_unreachable_one():
    rules = [
        rule(1, show_as=BUSY),
        rule(2, show_as={ShowAs.OOF}),
        rule(3, Action.DIVERT, show_as=BUSY, time_from=time(7), time_to=time(18)),
        rule(4, show_as={ShowAs.FREE}),
        rule(5, Action.SKIP, show_as={ShowAs.OOF}, all_day=True),
    ]
    assert unreachable(rules) == {2: 0, 4: 1}


def test_it_does_not_combine_earlier_rules():
    """Busy and Out of office rules together catch "Busy or Out of office", but no single one
    does: the simple check stays quiet rather than guess."""
    rules = [rule(1, show_as=BUSY), rule(2, show_as={ShowAs.OOF})]
    rules.append(rule(3, Action.DIVERT, show_as={ShowAs.BUSY, ShowAs.OOF}))
    assert unreachable(rules) == {}
