"""Property-based tests of the sync core (hypothesis).

CI runs 2,000 examples per property (profile "ci", chosen when CI is set, or by
HYPOTHESIS_PROFILE=ci); a local run uses 200.
"""

import os
import random
from datetime import datetime, time, timedelta
from itertools import product

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calendarsync.items import AddinChoice, CalendarItem, ItemKind, Response, Sensitivity, ShowAs
from calendarsync.providers.graph.mapping import items_from_graph
from calendarsync.reconcile import StoredBooking, diff, entry_for, fingerprint, settle
from calendarsync.rules import STOCKHOLM, Action, PlanSettings, Rule, never_synced, plan
from onex.operations import InMemoryAbsences, OperationResult

settings.register_profile(
    "ci", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
)
examples = settings(settings.get_profile(PROFILE))

# Sunday 22 March 2026, 12:00: the window spans the spring DST change (29 March).
NOW = datetime(2026, 3, 22, 12, 0, tzinfo=STOCKHOLM)
COMPANY = "demo-ab"
REASONS = ["MOTE", "FRANVARANDE", "LUNCH", "SEMESTER", "NOPE"]
SUBJECTS = [None, "", "Lunch", "Kundmöte", "  ö  ", "K" * 130]

# Few draws per item keep 2,000 examples affordable: related fields come from one sample.
provider_ids = st.sampled_from([f"AAMk-{n}" for n in range(12)])
ADDIN_CHOICES = [None] * 8 + [
    AddinChoice(forwarding, reason, open_diversion)
    for forwarding in ("skip", "info", "divert")
    for reason in (None, *REASONS)
    for open_diversion in (False, True)
]
choices = st.sampled_from([choice for choice in ADDIN_CHOICES if choice is not None])
STATES = list(product(ShowAs, Sensitivity, (False, True), Response))  # show_as … my_response
SHAPES = [
    (None, ItemKind.SINGLE),
    ("series-1", ItemKind.OCCURRENCE),
    ("series-1", ItemKind.EXCEPTION),
]
CATEGORIES = [(), (), ("Kund",), ("Intern", "Resa")]


@st.composite
def calendar_items(draw, item_id=provider_ids):
    all_day, offset, length = draw(
        st.tuples(st.booleans(), st.integers(-300, 1500), st.integers(0, 40))
    )
    if all_day:
        day = NOW.date() + timedelta(days=offset // 60)
        start = datetime.combine(day, time.min, tzinfo=STOCKHOLM)
        end = datetime.combine(day + timedelta(days=1 + length % 4), time.min, tzinfo=STOCKHOLM)
    else:
        start = NOW + timedelta(minutes=15 * offset)
        end = start + timedelta(minutes=15 * length)
    show_as, sensitivity, cancelled, response = draw(st.sampled_from(STATES))
    series_master_id, kind = draw(st.sampled_from(SHAPES))
    return CalendarItem(
        provider_item_id=draw(item_id),
        series_master_id=series_master_id,
        kind=kind,
        start=start,
        end=end,
        all_day=all_day,
        show_as=show_as,
        sensitivity=sensitivity,
        cancelled=cancelled,
        my_response=response,
        categories=draw(st.sampled_from(CATEGORIES)),
        subject=draw(st.sampled_from(SUBJECTS)),
        addin_choice=draw(st.sampled_from(ADDIN_CHOICES)),
    )


def unique_items(max_size=10):
    return st.lists(calendar_items(), max_size=max_size, unique_by=lambda i: i.provider_item_id)


def _random_rule(rng: random.Random, rule_id: int) -> Rule:
    def maybe(value):
        return value if rng.random() < 0.4 else None

    return Rule(
        id=rule_id,
        action=rng.choice(list(Action)),
        reason_code=rng.choice(REASONS),
        open_diversion=rng.random() < 0.5,
        show_as=frozenset(rng.sample(list(ShowAs), rng.randrange(4))),
        all_day=maybe(rng.random() < 0.5),
        categories=frozenset(rng.sample(["kund", "resa"], rng.randrange(2))),
        min_duration=maybe(timedelta(minutes=rng.randrange(0, 240, 15))),
        weekdays=frozenset(rng.sample(range(7), rng.choice((0, 0, 2, 5)))),
        time_from=maybe(time(rng.randrange(24), rng.choice((0, 30)))),
        time_to=maybe(time(rng.randrange(24), rng.choice((0, 30)))),
        subject_keywords=tuple(rng.sample(["lunch", "kund", "ö"], rng.choice((0, 0, 1, 2)))),
    )


# A fixed pool of varied rules: drawing from it costs one choice instead of a dozen draws.
RULE_POOL = [_random_rule(random.Random(n), n) for n in range(1, 401)]
rules = st.sampled_from(RULE_POOL)
plan_settings = st.builds(
    PlanSettings,
    subscription_id=st.just("sub-1"),
    days_ahead=st.integers(1, 21),
    plugin_enabled=st.booleans(),
    plugin_defaults_only=st.booleans(),
    all_meetings_private=st.booleans(),
    rules=st.lists(rules, max_size=4).map(tuple),
    personal_profile=st.dictionaries(
        st.sampled_from([ShowAs.BUSY, ShowAs.OOF]), st.sampled_from(ADDIN_CHOICES[7:])
    ),
    has_diversion=st.booleans(),
    has_open_diversion=st.booleans(),
    reasons=st.none() | st.dictionaries(st.sampled_from(REASONS[:4]), st.booleans(), min_size=1),
    return_gap=st.builds(timedelta, minutes=st.integers(0, 60)),
)


@examples
@given(items=st.lists(calendar_items(), max_size=12), settings_=plan_settings)
def test_it_never_plans_a_private_confidential_cancelled_or_declined_item(items, settings_):
    excluded = {i.provider_item_id for i in items if never_synced(i)}
    included = {i.provider_item_id for i in items if not never_synced(i)}
    planned = {a.provider_item_id for a in plan(items, settings_, NOW).absences}
    # An id may be both when two items share it; only ids that are never synced must be absent.
    assert not planned & (excluded - included)


@examples
@given(
    events=st.lists(
        st.fixed_dictionaries(
            {
                "id": st.text(min_size=1, max_size=10),
                "sensitivity": st.sampled_from(
                    ["normal", "personal", "private", "confidential", "x", None]
                ),
                "showAs": st.sampled_from(["busy", "oof", "free", "tentative"]),
                "isAllDay": st.booleans(),
                "start": st.just({"dateTime": "2026-03-29T00:00:00.0000000", "timeZone": "UTC"}),
                "end": st.just({"dateTime": "2026-03-30T00:00:00.0000000", "timeZone": "UTC"}),
                "subject": st.text(max_size=20),
            }
        ),
        max_size=10,
    ),
    include_subject=st.booleans(),
)
def test_it_never_lets_a_private_or_confidential_graph_event_out(events, include_subject):
    items = items_from_graph(events, include_subject=include_subject)
    assert all(i.sensitivity in (Sensitivity.NORMAL, Sensitivity.PERSONAL) for i in items)
    allowed = sum(e["sensitivity"] in ("normal", "personal", None) for e in events)
    assert len(items) == allowed
    if not include_subject:
        assert all(i.subject is None for i in items)


@examples
@given(items=unique_items(), settings_=plan_settings)
def test_it_never_returns_before_the_absence_ends(items, settings_):
    absences = plan(items, settings_, NOW).absences
    for absence in absences:
        assert absence.return_at >= absence.end > absence.start
        assert absence.end > NOW and absence.start < NOW + timedelta(days=settings_.days_ahead)
        # Return time is the end of the chain: some absence in the chain ends exactly then.
        assert any(other.end == absence.return_at for other in absences)
        if absence.note is not None:
            assert not settings_.all_meetings_private and len(absence.note) <= 100
        if absence.open_diversion:
            assert absence.divert and settings_.has_open_diversion
        if absence.divert:
            assert settings_.has_diversion


class OneXModel:
    """One mailbox's sync against an in-memory One X, with Booking rows as a dict."""

    def __init__(self):
        self.onex = InMemoryAbsences()
        self.stored: dict[str, StoredBooking] = {}
        self.pushed: dict[str, object] = {}  # external id → the entry the row stands for

    def run(self, a_plan, failures=()):
        """`failures`: one of "ok", "transient", "permanent" per operation, in order."""
        outcomes = iter(failures)

        def fail(operation):
            outcome = next(outcomes, "ok")
            if outcome == "ok":
                return None
            return OperationResult(operation, ok=False, permanent=outcome == "permanent")

        self.onex.fail = fail
        operations = diff(a_plan, self.stored.values())
        settlement = settle(a_plan, self.onex.apply(COMPANY, operations))
        for absence, fp in settlement.written:
            self.stored[absence.external_id] = StoredBooking(absence.external_id, fp, absence.end)
            self.pushed[absence.external_id] = entry_for(absence)
        for external_id in settlement.deleted:
            del self.stored[external_id]
            del self.pushed[external_id]
        return operations

    def in_onex(self):
        return self.onex.for_subscription(COMPANY, "sub-1")


@examples
@given(items=unique_items(), settings_=plan_settings)
def test_it_reconciles_idempotently(items, settings_):
    model = OneXModel()
    a_plan = plan(items, settings_, NOW)
    model.run(a_plan)
    assert model.run(a_plan) == []
    assert model.run(plan(items, settings_, NOW)) == []
    for absence in a_plan.absences:
        assert model.stored[absence.external_id].fingerprint == fingerprint(absence, "sub-1")


calendar_changes = st.lists(
    st.tuples(
        st.lists(calendar_items(), max_size=4),  # added or changed items
        st.lists(provider_ids, max_size=3),  # removed items
        st.lists(st.sampled_from(["ok", "transient", "permanent"]), max_size=12),
    ),
    min_size=1,
    max_size=4,
)


@examples
@given(initial=unique_items(), changes=calendar_changes, settings_=plan_settings)
def test_it_ends_with_one_x_equal_to_the_plan_after_changes_and_failed_pushes(
    initial, changes, settings_
):
    calendar = {i.provider_item_id: i for i in initial}
    model = OneXModel()
    for added, removed, failures in changes:
        calendar.update((i.provider_item_id, i) for i in added)
        for item_id in removed:
            calendar.pop(item_id, None)
        model.run(plan(calendar.values(), settings_, NOW), failures)
        # Rows only ever follow what One X accepted.
        assert model.in_onex() == model.pushed
    final = plan(calendar.values(), settings_, NOW)
    model.run(final)
    assert model.in_onex() == {a.external_id: entry_for(a) for a in final.absences}
    assert model.run(final) == []
