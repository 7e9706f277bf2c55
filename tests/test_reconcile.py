"""Reconcile: diff by external id and fingerprint; rows written only after One X accepted."""

from datetime import timedelta

from calendarsync.items import ItemKind
from calendarsync.models import Booking, SyncedUser
from calendarsync.reconcile import (
    StoredBooking,
    diff,
    fingerprint,
    record,
    settle,
    stored_bookings,
)
from calendarsync.rules import plan
from onex.operations import DeleteAbsence, InMemoryAbsences, OperationResult, PutAbsence
from tests.calendar_factory import NOW, at, item, plan_settings


def stored_from(a_plan):
    return [
        StoredBooking(a.external_id, fingerprint(a, a_plan.subscription_id), a.end)
        for a in a_plan.absences
    ]


def test_it_puts_every_new_absence():
    a_plan = plan([item("a"), item("b", start=at(2, 9))], plan_settings(), NOW)
    operations = diff(a_plan, [])
    assert [type(op) for op in operations] == [PutAbsence, PutAbsence]
    assert {op.external_id for op in operations} == {a.external_id for a in a_plan.absences}
    assert all(op.subscription_id == "sub-1" for op in operations)


def test_it_sends_nothing_for_unchanged_absences():
    a_plan = plan([item("a"), item("b", start=at(2, 9))], plan_settings(), NOW)
    assert diff(a_plan, stored_from(a_plan)) == []


def test_it_puts_an_absence_when_any_pushed_field_changed():
    base = plan([item("a", subject="Kund")], plan_settings(all_meetings_private=False), NOW)
    stored = stored_from(base)
    variants = [
        plan([item("a", start=at(1, 10))], plan_settings(), NOW),  # start, end
        plan(
            [item("a", minutes=90, subject="Kund")], plan_settings(all_meetings_private=False), NOW
        ),
        plan([item("a", subject="Annat")], plan_settings(all_meetings_private=False), NOW),
        plan(
            [item("a", show_as="oof", subject="Kund")],
            plan_settings(all_meetings_private=False),
            NOW,
        ),
        plan([item("a")], plan_settings(), NOW),  # note dropped
        plan(  # return time only: a following booking joins the chain
            [item("a", subject="Kund"), item("b", start=at(1, 10))],
            plan_settings(all_meetings_private=False),
            NOW,
        ),
    ]
    for variant in variants:
        operations = [op for op in diff(variant, stored) if op.external_id == stored[0].external_id]
        assert len(operations) == 1 and isinstance(operations[0], PutAbsence)


def test_it_deletes_stored_absences_the_plan_no_longer_has_but_keeps_history():
    a_plan = plan([item("a")], plan_settings(), NOW)
    stored = stored_from(a_plan) + [
        StoredBooking("gone-future", "x", NOW + timedelta(days=1)),
        StoredBooking("gone-running", "x", NOW + timedelta(minutes=1)),
        StoredBooking("history", "x", NOW - timedelta(days=1)),
    ]
    operations = diff(a_plan, stored)
    assert operations == [
        DeleteAbsence("sub-1", "gone-future"),
        DeleteAbsence("sub-1", "gone-running"),
    ]


def test_it_settles_only_what_one_x_accepted():
    a_plan = plan([item("a"), item("b", start=at(2, 9))], plan_settings(), NOW)
    operations = diff(a_plan, [StoredBooking("old", "x", NOW + timedelta(days=1))])
    failed = operations[1]
    writer = InMemoryAbsences(
        fail=lambda op: (
            OperationResult(op, ok=False, code="reason_unknown", permanent=True)
            if op is failed
            else None
        )
    )
    settlement = settle(a_plan, writer.apply("demo-ab", operations))
    assert [absence.external_id for absence, _ in settlement.written] == [operations[0].external_id]
    assert settlement.deleted == ["old"]
    assert [r.operation for r in settlement.permanent_failures] == [failed]


def test_it_records_bookings_after_success_and_leaves_failures_alone(integration, subscription):
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email="anna@demo.se"
    )
    first = plan(
        [item("a"), item("b", start=at(2, 9), kind=ItemKind.OCCURRENCE, series_master_id="m")],
        plan_settings(),
        NOW,
    )
    record(user, settle(first, InMemoryAbsences().apply("demo-ab", diff(first, []))), NOW)
    rows = {b.provider_item_id: b for b in Booking.objects.filter(synced_user=user)}
    assert set(rows) == {"a", "b"}
    assert rows["b"].series_master_id == "m"
    assert rows["a"].reason_code == "MOTE" and rows["a"].decided_by == "default_template"
    assert stored_bookings(user) == stored_from(first)

    # "a" moves (its put fails), "b" is deleted (succeeds).
    second = plan([item("a", start=at(3, 9))], plan_settings(), NOW)
    operations = diff(second, stored_bookings(user))
    writer = InMemoryAbsences(
        fail=lambda op: (
            OperationResult(op, ok=False, code="unavailable")
            if isinstance(op, PutAbsence)
            else None
        )
    )
    record(user, settle(second, writer.apply("demo-ab", operations)), NOW)
    rows = list(Booking.objects.filter(synced_user=user))
    assert [(b.provider_item_id, b.start) for b in rows] == [("a", at(1, 9))]

    # The next run retries the move and succeeds: the row follows.
    record(user, settle(second, InMemoryAbsences().apply("demo-ab", operations)), NOW)
    row = Booking.objects.get(synced_user=user)
    assert row.start == at(3, 9) and row.fingerprint == fingerprint(second.absences[0], "sub-1")
    assert diff(second, stored_bookings(user)) == []
