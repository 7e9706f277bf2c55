"""The rules engine: every condition, every precedence step, downgrades, return times, window."""

import re
from datetime import time, timedelta

import pytest

from calendarsync.items import AddinChoice, Response, Sensitivity, ShowAs
from calendarsync.rules import (
    AWAY_REASON,
    MEETING_REASON,
    Action,
    DecidedBy,
    Rule,
    Why,
    external_id,
    plan,
)
from tests.calendar_factory import NOW, at, item, plan_settings

DIVERT_ALL = Rule(id=7, action=Action.DIVERT, reason_code="LUNCH")
SKIP_ALL = Rule(id=8, action=Action.SKIP)


def only(items, **settings):
    """The single planned absence (or None) for `items`."""
    absences = plan(items, plan_settings(**settings), NOW).absences
    assert len(absences) <= 1
    return absences[0] if absences else None


def both(choice):
    """A personal profile that says the same for Busy and Out of office."""
    return {ShowAs.BUSY: choice, ShowAs.OOF: choice}


@pytest.mark.parametrize(
    ("show_as", "reason"),
    [
        (ShowAs.BUSY, MEETING_REASON),
        (ShowAs.OOF, AWAY_REASON),
        (ShowAs.FREE, None),
        (ShowAs.TENTATIVE, None),
        (ShowAs.WORKING_ELSEWHERE, None),
        (ShowAs.UNKNOWN, None),
    ],
)
def test_it_applies_the_default_template(show_as, reason):
    absence = only([item(show_as=show_as)])
    if reason is None:
        assert absence is None
    else:
        assert (absence.reason_code, absence.forwarding) == (reason, "info")
        assert absence.decided_by == DecidedBy.DEFAULT_TEMPLATE
        assert not absence.open_diversion


@pytest.mark.parametrize(
    "fields",
    [
        {"sensitivity": Sensitivity.PRIVATE},
        {"sensitivity": Sensitivity.CONFIDENTIAL},
        {"cancelled": True},
        {"my_response": Response.DECLINED},
    ],
)
def test_it_never_syncs_private_confidential_cancelled_or_declined(fields):
    choice = AddinChoice("divert", "MOTE")
    candidate = item(addin_choice=choice, **fields)
    assert only([candidate], rules=(DIVERT_ALL,), personal_profile=both(choice)) is None


def test_it_syncs_personal_sensitivity_like_normal():
    assert only([item(sensitivity=Sensitivity.PERSONAL)]).reason_code == MEETING_REASON


def test_it_lets_the_addin_choice_win_over_profile_and_rules():
    candidate = item(show_as=ShowAs.FREE, addin_choice=AddinChoice("divert", "SEMESTER", True))
    absence = only(
        [candidate], rules=(SKIP_ALL,), personal_profile=both(AddinChoice("info", "LUNCH"))
    )
    assert (absence.reason_code, absence.forwarding, absence.open_diversion) == (
        "SEMESTER",
        "divert",
        True,
    )
    assert absence.decided_by == DecidedBy.ADDIN


def test_it_honours_the_addin_choice_when_restricted_to_defaults():
    candidate = item(addin_choice=AddinChoice("divert", "LUNCH"))
    absence = only([candidate], plugin_defaults_only=True)
    assert (absence.decided_by, absence.reason_code) == (DecidedBy.ADDIN, "LUNCH")


def test_it_ignores_the_addin_when_the_plugin_is_disabled():
    candidate = item(addin_choice=AddinChoice("divert", "LUNCH"))
    absence = only([candidate], plugin_enabled=False)
    assert (absence.decided_by, absence.reason_code) == (DecidedBy.DEFAULT_TEMPLATE, "MOTE")


def test_it_skips_a_booking_the_addin_says_not_to_sync():
    assert only([item(addin_choice=AddinChoice("skip"))]) is None


def test_it_uses_the_default_reason_when_the_addin_gives_none():
    candidate = item(show_as=ShowAs.OOF, addin_choice=AddinChoice("divert"))
    assert only([candidate]).reason_code == AWAY_REASON


def test_it_applies_the_personal_profile_before_admin_rules():
    absence = only(
        [item()], rules=(SKIP_ALL,), personal_profile=both(AddinChoice("divert", "LUNCH"))
    )
    assert (absence.decided_by, absence.reason_code, absence.forwarding) == (
        DecidedBy.PROFILE,
        "LUNCH",
        "divert",
    )


@pytest.mark.parametrize(
    "settings",
    [{"plugin_defaults_only": True}, {"plugin_enabled": False}],
)
def test_it_ignores_the_personal_profile_when_not_allowed(settings):
    absence = only([item()], personal_profile=both(AddinChoice("divert", "LUNCH")), **settings)
    assert absence.decided_by == DecidedBy.DEFAULT_TEMPLATE


def test_it_applies_each_personal_rule_to_its_own_show_as():
    profile = {ShowAs.BUSY: AddinChoice("divert", "MOTE")}
    busy = only([item()], personal_profile=profile)
    assert (busy.decided_by, busy.forwarding) == (DecidedBy.PROFILE, "divert")
    away = only([item(show_as=ShowAs.OOF)], personal_profile=profile)
    assert (away.decided_by, away.forwarding) == (DecidedBy.DEFAULT_TEMPLATE, "info")


def test_it_applies_the_personal_profile_only_to_busy_and_out_of_office():
    profile = AddinChoice("divert", "LUNCH")
    assert only([item(show_as=ShowAs.FREE)], personal_profile=both(profile)) is None
    assert only([item(show_as=ShowAs.OOF)], personal_profile=both(profile)).decided_by == "profile"
    assert only([item()], personal_profile=both(AddinChoice("skip"))) is None


def test_it_tries_admin_rules_in_order_and_the_first_match_wins():
    first = Rule(id=1, action=Action.INFO, reason_code="LUNCH", show_as={ShowAs.BUSY})
    second = Rule(id=2, action=Action.DIVERT, reason_code="MOTE")
    absence = only([item()], rules=(first, second))
    assert (absence.decided_by, absence.reason_code) == ("rule:1", "LUNCH")
    tentative = only([item(show_as=ShowAs.TENTATIVE)], rules=(first, second))
    assert (tentative.decided_by, tentative.forwarding) == ("rule:2", "divert")


def test_it_falls_through_to_the_default_template_when_no_rule_matches():
    rule = Rule(id=1, action=Action.DIVERT, reason_code="LUNCH", show_as={ShowAs.TENTATIVE})
    assert only([item()], rules=(rule,)).decided_by == DecidedBy.DEFAULT_TEMPLATE


def test_it_lets_a_skip_rule_keep_a_busy_booking_out():
    rule = Rule(id=3, action=Action.SKIP, show_as={ShowAs.BUSY})
    assert only([item()], rules=(rule,)) is None


@pytest.mark.parametrize(
    ("rule_fields", "item_fields", "matches"),
    [
        ({"show_as": {ShowAs.TENTATIVE}}, {"show_as": ShowAs.TENTATIVE}, True),
        ({"show_as": {ShowAs.TENTATIVE}}, {"show_as": ShowAs.FREE}, False),
        ({"all_day": True}, {"all_day": True, "start": at(2, 0), "end": at(3, 0)}, True),
        ({"all_day": True}, {}, False),
        ({"all_day": False}, {}, True),
        ({"categories": {"Kund"}}, {"categories": ("kund", "x")}, True),
        ({"categories": {"Kund"}}, {"categories": ("Intern",)}, False),
        ({"categories": {"Kund"}}, {}, False),
        ({"min_duration": timedelta(minutes=60)}, {"minutes": 60}, True),
        ({"min_duration": timedelta(minutes=60)}, {"minutes": 59}, False),
        # 1 June 2026 is a Monday; 6 June a Saturday.
        ({"weekdays": {0, 1, 2, 3, 4}}, {"start": at(1, 9)}, True),
        ({"weekdays": {0, 1, 2, 3, 4}}, {"start": at(6, 9)}, False),
        ({"time_from": time(7), "time_to": time(18)}, {"start": at(1, 17), "minutes": 120}, True),
        ({"time_from": time(7), "time_to": time(18)}, {"start": at(1, 18), "minutes": 60}, False),
        ({"time_from": time(7), "time_to": time(18)}, {"start": at(1, 6), "minutes": 60}, False),
        ({"time_from": time(7), "time_to": time(18)}, {"start": at(1, 6), "minutes": 61}, True),
        ({"time_from": time(7)}, {"start": at(1, 23)}, True),
        ({"time_to": time(7)}, {"start": at(1, 7)}, False),
        ({"time_from": time(18), "time_to": time(7)}, {"start": at(1, 20)}, True),
        ({"time_from": time(18), "time_to": time(7)}, {"start": at(2, 5)}, True),
        ({"time_from": time(18), "time_to": time(7)}, {"start": at(1, 12)}, False),
        (
            {"weekdays": {0, 1, 2, 3, 4}, "time_from": time(7), "time_to": time(18)},
            {"start": at(6, 10)},
            False,
        ),
        (
            # An all-day Monday overlaps Monday's office hours (local dates, not UTC).
            {"weekdays": {0}, "time_from": time(7), "time_to": time(18)},
            {"all_day": True, "start": at(1, 0), "end": at(2, 0)},
            True,
        ),
        (
            # A weekend trip Friday evening to Monday 08:00 touches Monday 07–18.
            {"weekdays": {0}, "time_from": time(7), "time_to": time(18)},
            {"start": at(5, 19), "end": at(8, 8)},
            True,
        ),
    ],
)
def test_it_matches_each_rule_condition(rule_fields, item_fields, matches):
    rule = Rule(id=9, action=Action.DIVERT, reason_code="LUNCH", **rule_fields)
    absence = only([item(**{"show_as": ShowAs.TENTATIVE, **item_fields})], rules=(rule,))
    assert (absence is not None and absence.decided_by == "rule:9") is matches


def test_it_matches_subject_keywords_only_when_subjects_are_allowed():
    rule = Rule(id=4, action=Action.DIVERT, reason_code="LUNCH", subject_keywords=("lunch",))
    candidate = item(show_as=ShowAs.FREE, subject="Lunch med kund")
    assert only([candidate], rules=(rule,), all_meetings_private=False).decided_by == "rule:4"
    assert only([candidate], rules=(rule,), all_meetings_private=True) is None
    other = item(show_as=ShowAs.FREE, subject="Styrelsemöte")
    assert only([other], rules=(rule,), all_meetings_private=False) is None


def test_it_downgrades_a_diversion_without_the_service_and_says_why():
    absence = only([item()], rules=(DIVERT_ALL,), has_diversion=False)
    assert (absence.forwarding, absence.why) == ("info", (Why.NO_DIVERSION_SERVICE,))
    assert absence.decided_by == "rule:7"


def test_it_downgrades_a_diversion_for_a_reason_that_allows_none():
    absence = only([item()], rules=(DIVERT_ALL,), reasons={"LUNCH": False, "MOTE": True})
    assert (absence.forwarding, absence.why) == ("info", (Why.REASON_WITHOUT_DIVERSION,))


def test_it_opens_a_diversion_only_with_the_open_diversion_service():
    rule = Rule(id=5, action=Action.DIVERT, reason_code="MOTE", open_diversion=True)
    opened = only([item()], rules=(rule,), has_open_diversion=True)
    assert (opened.forwarding, opened.open_diversion, opened.why) == ("divert", True, ())
    closed = only([item()], rules=(rule,), has_open_diversion=False)
    assert (closed.forwarding, closed.open_diversion) == ("divert", False)
    assert closed.why == (Why.NO_OPEN_DIVERSION_SERVICE,)


def test_it_never_opens_a_diversion_for_absence_info():
    candidate = item(addin_choice=AddinChoice("info", "MOTE", open_diversion=True))
    assert only([candidate]).open_diversion is False


def test_it_replaces_an_unknown_reason_with_the_default_and_says_why():
    candidate = item(addin_choice=AddinChoice("info", "NOPE"))
    absence = only([candidate], reasons={"MOTE": True, "FRANVARANDE": True})
    assert (absence.reason_code, absence.why) == ("MOTE", (Why.REASON_UNKNOWN,))


def test_it_sends_the_subject_only_when_allowed_cut_to_100_chars():
    candidate = item(subject="  " + "K" * 150)
    assert only([candidate], all_meetings_private=True).note is None
    assert only([candidate], all_meetings_private=False).note == "K" * 100


def test_it_chains_back_to_back_and_overlapping_absences_to_one_return_time():
    first = item("a", at(1, 9), at(1, 10))
    touching = item("b", at(1, 10), at(1, 11))
    overlapping = item("c", at(1, 10, 30), at(1, 12))
    later = item("d", at(1, 13), at(1, 14))
    absences = plan([later, overlapping, first, touching], plan_settings(), NOW).absences
    returns = {a.provider_item_id: a.return_at for a in absences}
    assert returns == {"a": at(1, 12), "b": at(1, 12), "c": at(1, 12), "d": at(1, 14)}
    assert [a.provider_item_id for a in absences] == ["a", "b", "c", "d"]


def test_it_chains_across_a_gap_within_the_tolerance():
    items = [item("a", at(1, 9), at(1, 10)), item("b", at(1, 10, 15), at(1, 11))]
    strict = plan(items, plan_settings(), NOW).absences
    assert [a.return_at for a in strict] == [at(1, 10), at(1, 11)]
    tolerant = plan(items, plan_settings(return_gap=timedelta(minutes=15)), NOW).absences
    assert [a.return_at for a in tolerant] == [at(1, 11), at(1, 11)]


def test_it_keeps_bookings_that_cross_the_window_edges_and_drops_the_rest():
    window_end = NOW + timedelta(days=14)
    items = [
        item("started", NOW - timedelta(hours=1), NOW + timedelta(hours=1)),
        item("ended", NOW - timedelta(hours=2), NOW),
        item("crosses-end", window_end - timedelta(hours=1), window_end + timedelta(days=2)),
        item("beyond", window_end, window_end + timedelta(hours=1)),
        item("empty", at(2, 9), at(2, 9)),
    ]
    absences = plan(items, plan_settings(), NOW).absences
    assert [a.provider_item_id for a in absences] == ["started", "crosses-end"]
    assert absences[0].start == NOW - timedelta(hours=1)
    assert absences[1].end == window_end + timedelta(days=2)


def test_it_keeps_times_exact_across_the_spring_dst_change():
    # Sunday 29 March 2026 has 23 hours in Stockholm.
    now = at(28, 12, month=3)
    all_day = item("d", at(29, 0, month=3), at(30, 0, month=3), all_day=True)
    absence = plan([all_day], plan_settings(), now).absences[0]
    assert absence.end - absence.start == timedelta(hours=23)
    assert absence.start.isoformat() == "2026-03-28T23:00:00+00:00"
    assert absence.end.isoformat() == "2026-03-29T22:00:00+00:00"


def test_it_keeps_times_exact_across_the_autumn_dst_change():
    # Sunday 25 October 2026 has 25 hours; an office-hours rule still sees local 07–18.
    now = at(24, 12, month=10)
    rule = Rule(id=1, action=Action.DIVERT, reason_code="MOTE", weekdays={6}, time_from=time(7))
    all_day = item("d", at(25, 0, month=10), at(26, 0, month=10), all_day=True)
    early = item("e", at(25, 6, month=10), show_as=ShowAs.TENTATIVE)  # 06:00 CET, not 07:00
    absences = plan([all_day, early], plan_settings(rules=(rule,)), now).absences
    assert [a.provider_item_id for a in absences] == ["d"]
    assert absences[0].end - absences[0].start == timedelta(hours=25)
    assert absences[0].start.isoformat() == "2026-10-24T22:00:00+00:00"


def test_it_gives_each_booking_a_stable_short_external_id():
    first = plan([item("AAMkAGI2T==/+x")], plan_settings(), NOW).absences[0]
    second = plan([item("AAMkAGI2T==/+x", start=at(3, 9))], plan_settings(), NOW).absences[0]
    assert first.external_id == second.external_id == external_id("AAMkAGI2T==/+x")
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", first.external_id)
    assert external_id("other") != first.external_id


def test_it_plans_times_in_utc_with_return_never_before_end():
    absences = plan([item("a"), item("b", start=at(1, 9, 30))], plan_settings(), NOW).absences
    for absence in absences:
        assert absence.start.utcoffset() == timedelta(0)
        assert absence.return_at >= absence.end


OVERNIGHT = Rule(
    id=5, action=Action.DIVERT, reason_code="MOTE", time_from=time(18), time_to=time(7)
)


@pytest.mark.parametrize(
    ("start", "matches"),
    [(at(1, 22), True), (at(2, 6), True), (at(1, 12), False), (at(2, 7), False)],
)
def test_it_matches_an_overnight_window_from_evening_to_next_morning(start, matches):
    absence = only([item(start=start, show_as=ShowAs.TENTATIVE)], rules=(OVERNIGHT,))
    assert (absence is not None and absence.decided_by == "rule:5") is matches


@pytest.mark.parametrize(
    ("start", "matches"),
    [
        (at(5, 22), True),  # Friday evening
        (at(6, 6), True),  # Saturday morning: still Friday night's window
        (at(5, 6), False),  # Friday morning belongs to Thursday night
        (at(6, 22), False),  # Saturday evening starts a Saturday window
    ],
)
def test_it_reads_an_overnight_windows_weekdays_as_the_day_it_starts(start, matches):
    friday_nights = Rule(
        id=6,
        action=Action.DIVERT,
        reason_code="MOTE",
        weekdays={4},
        time_from=time(18),
        time_to=time(7),
    )
    absence = only([item(start=start, show_as=ShowAs.TENTATIVE)], rules=(friday_nights,))
    assert (absence is not None and absence.decided_by == "rule:6") is matches


def test_it_runs_sunday_night_into_monday_morning():
    sunday_nights = Rule(
        id=6,
        action=Action.INFO,
        reason_code="MOTE",
        weekdays={6},
        time_from=time(20),
        time_to=time(6),
    )
    # 7 June 2026 is a Sunday; the booking is on Monday 8 June at 05:00.
    monday_early = item(start=at(8, 5), show_as=ShowAs.TENTATIVE)
    absence = plan([monday_early], plan_settings(rules=(sunday_nights,)), NOW).absences
    assert [a.decided_by for a in absence] == ["rule:6"]
