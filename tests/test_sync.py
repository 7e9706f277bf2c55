"""sync_mailbox end to end on the database: fetch → plan → reconcile → push, lock, debounce,
outcomes, removal and retention."""

from datetime import time, timedelta

import pytest
from django.utils import timezone, translation

from calendarsync import claims, planning, providers, removal, retention, sync, tasks
from calendarsync.actors import SYSTEM
from calendarsync.items import AddinChoice, ItemKind, ShowAs
from calendarsync.models import Activity, Booking, Integration, SyncedUser, SyncRule
from calendarsync.providers.base import ConsentRevoked, MailboxNotFound, ProviderError
from calendarsync.providers.memory import InMemoryCalendar
from onex.models import AbsenceReason, Subscription
from onex.operations import InMemoryAbsences, OperationResult, PutAbsence
from tests.calendar_factory import NOW, at, item

EMAIL = "anna@demo.se"


@pytest.fixture
def synced_user(integration, subscription):
    return SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=EMAIL
    )


@pytest.fixture
def calendar():
    return InMemoryCalendar(mailboxes={EMAIL: []})


@pytest.fixture
def onex():
    return InMemoryAbsences()


def run(synced_user, calendar, onex, now=NOW):
    return sync.sync_mailbox(synced_user, provider=calendar, writer=onex, now=now)


def in_onex(onex):
    return onex.for_subscription("demo-ab", "sub-1")


def planned(synced_user, calendar, now=NOW):
    items = calendar.fetch(EMAIL, now, now + timedelta(days=14), include_subject=False)
    return {
        a.external_id: (a.start, a.end, a.reason_code, a.divert)
        for a in planning.plan_for_synced_user(synced_user, items, now=now).absences
    }


def as_tuples(entries):
    return {key: (e.start, e.end, e.reason_code, e.divert) for key, e in entries.items()}


def test_it_writes_the_plan_to_one_x_and_bookings_then_does_nothing_again(
    synced_user, calendar, onex
):
    calendar.put(EMAIL, item("a"), item("b", show_as=ShowAs.OOF, start=at(2, 9)))
    calendar.put(EMAIL, item("free", show_as=ShowAs.FREE, start=at(3, 9)))
    outcome = run(synced_user, calendar, onex)
    assert (outcome.status, outcome.written, outcome.deleted) == ("ok", 2, 0)
    assert as_tuples(in_onex(onex)) == planned(synced_user, calendar)
    assert Booking.objects.filter(synced_user=synced_user).count() == 2
    synced_user.refresh_from_db()
    assert (synced_user.state, synced_user.last_error) == ("ok", "")
    assert synced_user.last_synced_at == NOW
    assert synced_user.sync_started_at is None
    activity = Activity.objects.get(synced_user=synced_user)
    assert activity.event == "synced" and EMAIL not in activity.message

    calls = []
    onex.fail = lambda op: calls.append(op)
    again = run(synced_user, calendar, onex, now=NOW + timedelta(minutes=5))
    assert (again.status, again.written, calls) == ("ok", 0, [])
    assert Activity.objects.filter(synced_user=synced_user).count() == 1


def test_it_follows_a_series_with_one_moved_and_one_deleted_occurrence(synced_user, calendar, onex):
    occurrences = [
        item(f"occ-{day}", at(day, 9), kind=ItemKind.OCCURRENCE, series_master_id="series-1")
        for day in (2, 3, 4)
    ]
    calendar.put(EMAIL, *occurrences)
    run(synced_user, calendar, onex)
    assert len(in_onex(onex)) == 3

    moved = item("occ-3", at(3, 14), kind=ItemKind.EXCEPTION, series_master_id="series-1")
    calendar.put(EMAIL, moved)
    calendar.remove(EMAIL, "occ-4")
    outcome = run(synced_user, calendar, onex, now=NOW + timedelta(minutes=1))
    assert (outcome.written, outcome.deleted) == (1, 1)
    assert as_tuples(in_onex(onex)) == planned(synced_user, calendar)
    rows = Booking.objects.filter(synced_user=synced_user).order_by("start")
    assert [(b.provider_item_id, b.start) for b in rows] == [
        ("occ-2", at(2, 9)),
        ("occ-3", at(3, 14)),
    ]
    assert {b.series_master_id for b in rows} == {"series-1"}


def test_it_leaves_the_old_booking_after_a_failed_push_and_catches_up_later(
    synced_user, calendar, onex
):
    calendar.put(EMAIL, item("a"))
    run(synced_user, calendar, onex)
    calendar.put(EMAIL, item("a", start=at(2, 9)))
    onex.fail = lambda op: OperationResult(op, ok=False, code="unavailable")
    outcome = run(synced_user, calendar, onex, now=NOW + timedelta(minutes=1))
    assert (outcome.status, outcome.failed, outcome.retry) == ("failed", 1, True)
    assert Booking.objects.get(synced_user=synced_user).start == at(1, 9)
    synced_user.refresh_from_db()
    assert synced_user.state == "error" and "unavailable" in synced_user.last_error
    assert list(in_onex(onex).values())[0].start == at(1, 9)

    onex.fail = None
    assert run(synced_user, calendar, onex, now=NOW + timedelta(minutes=2)).status == "ok"
    assert Booking.objects.get(synced_user=synced_user).start == at(2, 9)
    assert as_tuples(in_onex(onex)) == planned(synced_user, calendar)
    synced_user.refresh_from_db()
    assert (synced_user.state, synced_user.last_error) == ("ok", "")


def test_it_records_a_permanent_failure_instead_of_retrying(synced_user, calendar, onex):
    calendar.put(EMAIL, item("a"), item("b", start=at(2, 9)))
    onex.fail = lambda op: (
        OperationResult(op, ok=False, code="reason_unknown", permanent=True)
        if op.entry.start == at(2, 9)
        else None
    )
    outcome = run(synced_user, calendar, onex)
    assert (outcome.status, outcome.permanent, outcome.retry) == ("failed", True, False)
    assert outcome.written == 1
    synced_user.refresh_from_db()
    assert "reason_unknown" in synced_user.last_error
    activity = Activity.objects.get(event="sync_failed")
    assert activity.level == "error" and "1" in activity.message


def test_it_treats_a_whole_writer_failure_as_transient(synced_user, calendar):
    class Down:
        def apply(self, company_id, operations):
            raise ConnectionError("refused")

    calendar.put(EMAIL, item("a"))
    outcome = run(synced_user, calendar, Down())
    assert outcome.retry and not Booking.objects.exists()


def test_it_skips_a_mailbox_another_run_holds_until_the_lock_is_stale(synced_user, calendar, onex):
    calendar.put(EMAIL, item("a"))
    SyncedUser.objects.filter(pk=synced_user.pk).update(sync_started_at=NOW - timedelta(seconds=10))
    assert run(synced_user, calendar, onex).status == "busy"
    assert calendar.fetches == [] and in_onex(onex) == {}

    stale = NOW + claims.lease()
    assert run(synced_user, calendar, onex, now=stale).status == "ok"
    assert len(in_onex(onex)) == 1
    synced_user.refresh_from_db()
    assert synced_user.sync_started_at is None


def test_it_releases_the_lock_when_a_run_crashes(synced_user, onex):
    class Broken:
        def fetch(self, *args, **kwargs):
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run(synced_user, Broken(), onex)
    synced_user.refresh_from_db()
    assert synced_user.sync_started_at is None and synced_user.state == "error"


def test_it_collapses_a_burst_of_requests_into_one_run(
    synced_user, calendar, onex, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(
        tasks.sync_mailbox, "apply_async", lambda args, countdown: enqueued.append(args)
    )
    with django_capture_on_commit_callbacks(execute=True):
        results = [tasks.request_sync(synced_user.pk) for _ in range(20)]
    assert results == [True] + [False] * 19
    assert enqueued == [(synced_user.pk,)]

    # The run serves the pending request; a change during or after it enqueues one more.
    run(synced_user, calendar, onex, now=synced_user.created_at + timedelta(seconds=1))
    synced_user.refresh_from_db()
    assert synced_user.sync_requested_at is None
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_sync(synced_user.pk) is True
    assert len(enqueued) == 2


def test_it_runs_the_task_with_the_registered_provider_and_writer(
    synced_user, calendar, onex, monkeypatch
):
    calendar.put(EMAIL, item("a", start=timezone.now() + timedelta(hours=1)))
    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    monkeypatch.setattr(sync, "default_writer", lambda lane=None: onex)
    assert tasks.sync_mailbox.apply(args=(synced_user.pk,)).get() == "ok"
    assert len(in_onex(onex)) == 1
    assert tasks.sync_mailbox.apply(args=(0,)).get() == "gone"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (MailboxNotFound(), "mailbox was not found"),
        (ProviderError("throttled", code="throttled"), "throttled"),
    ],
)
def test_it_records_a_mailbox_error_on_that_user(synced_user, calendar, onex, error, message):
    calendar.errors[EMAIL] = error
    with translation.override("en"):  # the message in the language of the msgids
        outcome = run(synced_user, calendar, onex)
    assert outcome.permanent is error.permanent
    synced_user.refresh_from_db()
    assert synced_user.state == "error" and message in synced_user.last_error


def test_it_pauses_the_integration_when_consent_is_revoked(synced_user, calendar, onex):
    calendar.errors[EMAIL] = ConsentRevoked()
    outcome = run(synced_user, calendar, onex)
    assert outcome.permanent
    integration = Integration.objects.get()
    assert integration.status == Integration.Status.NEEDS_ATTENTION
    assert integration.attention == Integration.Attention.CONSENT_REVOKED
    assert Activity.objects.filter(event="consent_revoked").count() == 1
    synced_user.refresh_from_db()
    assert run(synced_user, calendar, onex).status == "inactive"


def test_a_trigger_for_a_mailbox_that_may_not_sync_leaves_no_pending_request(
    synced_user, calendar, onex, django_capture_on_commit_callbacks, monkeypatch
):
    enqueued = []
    monkeypatch.setattr(
        tasks.sync_mailbox, "apply_async", lambda args, countdown: enqueued.append(args)
    )
    synced_user.integration.pause(actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_sync(synced_user.pk) is False
    synced_user.refresh_from_db()
    assert synced_user.sync_requested_at is None and enqueued == []
    # A request stamped before the pause is dropped by the run that finds nothing to do.
    SyncedUser.objects.filter(pk=synced_user.pk).update(sync_requested_at=timezone.now())
    synced_user.refresh_from_db()
    assert run(synced_user, calendar, onex).status == "inactive"
    synced_user.refresh_from_db()
    assert synced_user.sync_requested_at is None
    # Switched on again, the very next trigger enqueues a run.
    synced_user.integration.resume(actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_sync(synced_user.pk) is True
    assert enqueued == [(synced_user.pk,)]


def test_a_passing_failure_of_the_whole_read_marks_the_integration_and_a_good_run_clears_it(
    integration, synced_user, calendar, onex
):
    class Unreachable(type(calendar)):
        def fetch(self, *args, **kwargs):
            raise ProviderError("Graph unreachable: ConnectTimeout")

        fetch_many = fetch

    other = SyncedUser.objects.create(
        integration=integration,
        subscription=Subscription.objects.create(
            company=integration.company, onex_id="sub-2", email="bo@demo.se"
        ),
        email="bo@demo.se",
    )
    broken = Unreachable(mailboxes=calendar.mailboxes)
    calendar.put(EMAIL, item("a"))
    calendar.put(other.email, item("b"))
    ids = [synced_user.pk, other.pk]
    sync.sync_mailboxes(ids, provider=broken, writer=onex)  # the bulk read fails as a whole
    integration.refresh_from_db()
    assert integration.status == Integration.Status.ERROR
    assert Activity.objects.filter(event="error").count() == 1
    sync.sync_mailboxes(ids, provider=calendar, writer=onex)
    integration.refresh_from_db()
    assert integration.status == Integration.Status.CONNECTED and not integration.last_error
    assert Activity.objects.filter(event="recovered").count() == 1


@pytest.mark.parametrize("model", [Integration, Subscription])
def test_it_does_nothing_for_an_inactive_integration_or_subscription(
    synced_user, calendar, onex, model
):
    model.objects.update(active=False)
    synced_user.refresh_from_db()
    assert run(synced_user, calendar, onex).status == "inactive"
    assert calendar.fetches == []
    synced_user.refresh_from_db()
    assert synced_user.state == "pending"


def test_it_sends_the_subject_only_when_meetings_are_not_private(synced_user, calendar, onex):
    calendar.put(EMAIL, item("a", subject="Kundmöte"))
    run(synced_user, calendar, onex)
    assert list(in_onex(onex).values())[0].note is None

    Integration.objects.update(all_meetings_private=False)
    synced_user.refresh_from_db()
    run(synced_user, calendar, onex, now=NOW + timedelta(minutes=1))
    assert list(in_onex(onex).values())[0].note == "Kundmöte"


def test_it_plans_from_saved_rules_reasons_profile_and_subscription(
    synced_user, company, integration
):
    lunch = AbsenceReason.objects.create(
        company=company, code="LUNCH", label_sv="Lunch", diversion_allowed=False
    )
    AbsenceReason.objects.create(company=company, code="MOTE", label_sv="Möte")
    SyncRule.objects.create(
        integration=integration,
        position=1,
        show_as=["tentative"],
        weekdays=[0, 1, 2, 3, 4],
        time_from=time(7),
        time_to=time(18),
        action="divert",
        reason=lunch,
    )
    items = [item("t", show_as=ShowAs.TENTATIVE), item("b", start=at(2, 9))]
    absences = planning.plan_for_synced_user(synced_user, items, now=NOW).absences
    rule = SyncRule.objects.get()
    assert [(a.decided_by, a.reason_code, a.forwarding, a.why) for a in absences] == [
        (f"rule:{rule.pk}", "LUNCH", "info", ("reason_without_diversion",)),
        ("default_template", "MOTE", "info", ()),
    ]
    assert planning.plan_for_synced_user(synced_user, items, now=NOW).subscription_id == "sub-1"

    # The UI previews an unsaved edit: same rule, now skipping tentative bookings.
    edited = SyncRule(integration=integration, show_as=["tentative"], action="skip")
    preview = planning.plan_for_synced_user(synced_user, items, rules=[edited], now=NOW)
    assert [a.provider_item_id for a in preview.absences] == ["b"]

    synced_user.personal_profile = {"reason": "MOTE", "forwarding": "divert"}
    absences = planning.plan_for_synced_user(synced_user, items, now=NOW).absences
    assert [(a.decided_by, a.forwarding) for a in absences][1] == ("profile", "divert")


def test_it_downgrades_a_diversion_for_a_subscription_without_the_service(
    synced_user, calendar, onex, company, integration
):
    Subscription.objects.update(has_diversion=False)
    synced_user.refresh_from_db()
    calendar.put(EMAIL, item("a", addin_choice=AddinChoice("divert", "MOTE")))
    run(synced_user, calendar, onex)
    assert list(in_onex(onex).values())[0].divert is False
    assert Booking.objects.get().forwarding == "info"


def test_it_requests_a_run_for_every_mailbox_of_syncing_integrations(
    synced_user, company, subscription, monkeypatch, django_capture_on_commit_callbacks
):
    paused = Integration.objects.create(company=company, kind="graph", name="Paused", active=False)
    SyncedUser.objects.create(integration=paused, subscription=subscription, email=EMAIL)
    enqueued = []
    monkeypatch.setattr(
        tasks.sync_mailboxes, "apply_async", lambda args, countdown: enqueued.append(args)
    )
    # Run by hand the next afternoon: every mailbox not read since midnight (daily.py).
    next_afternoon = timezone.localtime().replace(hour=14) + timedelta(days=1)
    monkeypatch.setattr(timezone, "now", lambda: next_afternoon)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reconcile_all_mailboxes.apply().get() == 1
    assert enqueued == [([synced_user.pk],)]


def test_it_removes_a_user_with_their_one_x_entries_bookings_and_email(
    synced_user, calendar, onex, integration
):
    calendar.put(EMAIL, item("a"), item("b", start=at(2, 9)))
    run(synced_user, calendar, onex)
    onex.entries[("demo-ab", "sub-1", "someone-elses")] = next(iter(in_onex(onex).values()))
    removal.remove_synced_user(synced_user, writer=onex)
    assert set(in_onex(onex)) == {"someone-elses"}
    assert not SyncedUser.objects.filter(email=EMAIL).exists()
    assert not Booking.objects.exists()
    removed = Activity.objects.get(event="user_removed")
    assert EMAIL not in removed.message and removed.integration == integration


def test_it_keeps_a_user_whose_entries_one_x_could_not_delete(synced_user, calendar, onex):
    calendar.put(EMAIL, item("a"), item("b", start=at(2, 9)))
    run(synced_user, calendar, onex)
    first = Booking.objects.order_by("start").first().external_id
    onex.fail = lambda op: (
        OperationResult(op, ok=False, code="unavailable") if op.external_id == first else None
    )
    with pytest.raises(removal.RemovalIncomplete):
        removal.remove_synced_user(synced_user, writer=onex)
    assert list(Booking.objects.values_list("external_id", flat=True)) == [first]
    onex.fail = None
    removal.remove_synced_user(SyncedUser.objects.get(), writer=onex)
    assert in_onex(onex) == {} and not SyncedUser.objects.exists()


def test_it_purges_bookings_that_ended_more_than_30_days_ago(synced_user, calendar, onex):
    calendar.put(EMAIL, item("old"), item("recent", start=at(2, 9)))
    run(synced_user, calendar, onex)
    later = at(1, 10) + timedelta(days=30, minutes=1)
    assert retention.purge_expired_bookings(now=later) == 1
    assert list(Booking.objects.values_list("provider_item_id", flat=True)) == ["recent"]


def test_it_keeps_ended_bookings_in_one_x_and_the_database_until_the_purge(
    synced_user, calendar, onex
):
    calendar.put(EMAIL, item("a"))
    run(synced_user, calendar, onex)
    outcome = run(synced_user, calendar, onex, now=at(2, 9))
    assert outcome.deleted == 0 and len(in_onex(onex)) == 1
    assert Booking.objects.count() == 1


def test_it_writes_only_what_one_x_accepted_when_puts_partly_fail(synced_user, calendar, onex):
    calendar.put(EMAIL, *(item(f"i{day}", at(day, 9)) for day in range(2, 8)))
    onex.fail = lambda op: (
        OperationResult(op, ok=False, code="unavailable")
        if isinstance(op, PutAbsence) and op.entry.start.day % 2
        else None
    )
    run(synced_user, calendar, onex)
    stored = set(Booking.objects.values_list("external_id", flat=True))
    assert stored == set(in_onex(onex)) and len(stored) == 3
