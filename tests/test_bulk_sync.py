"""Bulk sync: requests for many mailboxes become tasks of up to 20 mailboxes of one
integration, and each such run reads its mailboxes with one bulk fetch (one Graph $batch)."""

from datetime import timedelta

import pytest
from django.utils import timezone, translation

from calendarsync import planning, providers, sync, tasks
from calendarsync.actors import SYSTEM
from calendarsync.models import Activity, Booking, Integration, SyncedUser
from calendarsync.providers.base import ConsentRevoked, MailboxNotFound
from calendarsync.providers.memory import InMemoryCalendar
from calendarsync.views.common import resync
from onex.client import RATE_BUDGET_CODE, OneXClient, OneXError
from onex.models import Subscription
from onex.operations import InMemoryAbsences, OperationResult
from tests.calendar_factory import NOW, at, item
from tests.m365_sandbox import body_requests
from tests.onex_sandbox import CLIENT_ID, CLIENT_SECRET


def make_users(integration, count, prefix="user"):
    """`count` synced users of `integration`, each with their own One X subscription."""
    company = integration.company
    subscriptions = Subscription.objects.bulk_create(
        Subscription(
            company=company,
            onex_id=f"{prefix}-{integration.pk}-{n}",
            email=f"{prefix}{n:05d}@demo.se",
            has_diversion=True,
        )
        for n in range(count)
    )
    SyncedUser.objects.bulk_create(
        SyncedUser(integration=integration, subscription=s, email=s.email) for s in subscriptions
    )
    return list(integration.users.order_by("pk").select_related("subscription"))


@pytest.fixture
def enqueued(monkeypatch):
    """The chunk tasks request_syncs enqueues: (user ids, countdown)."""
    calls = []
    monkeypatch.setattr(
        tasks.sync_mailboxes,
        "apply_async",
        lambda args, countdown: calls.append((args[0], countdown)),
    )
    return calls


@pytest.fixture
def onex():
    return InMemoryAbsences()


def calendar_for(users):
    calendar = InMemoryCalendar()
    for n, user in enumerate(users):
        calendar.put(user.email, item(f"{user.email}-a", at(1 + n % 5, 9)))
    return calendar


def entries_of(onex, user):
    return onex.for_subscription("demo-ab", user.subscription.onex_id)


def test_it_enqueues_a_burst_for_45_mailboxes_as_three_chunk_tasks_once(
    integration, enqueued, django_capture_on_commit_callbacks
):
    users = make_users(integration, 45)
    with django_capture_on_commit_callbacks(execute=True):
        counts = [tasks.request_syncs(integration.users.all()) for _ in range(5)]
    assert counts == [45, 0, 0, 0, 0]
    assert [ids for ids, _ in enqueued] == [
        [u.pk for u in users[:20]],
        [u.pk for u in users[20:40]],
        [u.pk for u in users[40:]],
    ]
    # Debounced, then one chunk a second.
    assert [countdown for _, countdown in enqueued] == [
        tasks.DEBOUNCE_SECONDS,
        tasks.DEBOUNCE_SECONDS + 1,
        tasks.DEBOUNCE_SECONDS + 2,
    ]

    # While those runs are pending, another burst enqueues nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_syncs(integration.users.all()) == 0
    assert len(enqueued) == 3

    # Once a chunk has run, only its mailboxes can be requested again.
    sync.sync_mailboxes(
        [u.pk for u in users[:20]], provider=InMemoryCalendar(), writer=InMemoryAbsences()
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_syncs(integration.users.all()) == 20
    assert enqueued[3][0] == [u.pk for u in users[:20]]


def test_it_never_mixes_integrations_in_a_chunk(
    integration, company, enqueued, monkeypatch, django_capture_on_commit_callbacks
):
    other = Integration.objects.create(
        company=company, kind="graph", name="Second tenant", status="connected"
    )
    first = make_users(integration, 21, prefix="a")
    second = make_users(other, 2, prefix="b")
    # Run by hand the next afternoon: every mailbox not read since midnight (daily.py).
    next_afternoon = timezone.localtime().replace(hour=14) + timedelta(days=1)
    monkeypatch.setattr(timezone, "now", lambda: next_afternoon)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reconcile_all_mailboxes() == 23
    assert sorted(ids for ids, _ in enqueued) == sorted(
        [[u.pk for u in first[:20]], [first[20].pk], [u.pk for u in second]]
    )


def test_it_reads_a_chunk_with_one_bulk_fetch(integration, onex):
    users = make_users(integration, 20)
    calendar = calendar_for(users)
    outcomes = sync.sync_mailboxes([u.pk for u in users], provider=calendar, writer=onex, now=NOW)
    assert calendar.bulk_fetches == [[u.email for u in users]]
    assert {pk: o.status for pk, o in outcomes.items()} == {u.pk: "ok" for u in users}
    assert all(len(entries_of(onex, u)) == 1 for u in users)
    assert Booking.objects.count() == 20
    assert set(SyncedUser.objects.values_list("state", flat=True)) == {"ok"}
    assert not SyncedUser.objects.filter(sync_started_at__isnull=False).exists()

    # Nothing changed: the next bulk run writes nothing.
    again = sync.sync_mailboxes([u.pk for u in users], provider=calendar, writer=onex, now=NOW)
    assert {o.written for o in again.values()} == {0}
    assert len(calendar.bulk_fetches) == 2


def test_it_fails_only_the_user_whose_mailbox_is_unknown(integration, onex):
    users = make_users(integration, 5)
    calendar = calendar_for(users)
    del calendar.mailboxes[users[2].email]
    outcomes = sync.sync_mailboxes([u.pk for u in users], provider=calendar, writer=onex, now=NOW)
    assert outcomes[users[2].pk].status == "failed" and outcomes[users[2].pk].permanent
    assert [outcomes[u.pk].status for u in users if u is not users[2]] == ["ok"] * 4
    states = dict(SyncedUser.objects.values_list("pk", "state"))
    assert states[users[2].pk] == "error" and list(states.values()).count("ok") == 4
    assert SyncedUser.objects.get(pk=users[2].pk).last_error == sync._provider_message(
        MailboxNotFound()
    )
    assert entries_of(onex, users[2]) == {} and len(entries_of(onex, users[3])) == 1
    assert Activity.objects.filter(event="sync_failed").count() == 1


def test_it_skips_a_user_another_run_holds(integration, onex):
    users = make_users(integration, 3)
    held_since = NOW - timedelta(seconds=10)
    SyncedUser.objects.filter(pk=users[1].pk).update(
        sync_started_at=held_since, sync_requested_at=held_since
    )
    calendar = calendar_for(users)
    outcomes = sync.sync_mailboxes([u.pk for u in users], provider=calendar, writer=onex, now=NOW)
    assert outcomes[users[1].pk].status == "busy"
    assert calendar.bulk_fetches == [[users[0].email, users[2].email]]
    assert entries_of(onex, users[1]) == {}
    held = SyncedUser.objects.get(pk=users[1].pk)
    # The other run's lock and the pending request stay for that run and the busy retry.
    assert (held.sync_started_at, held.sync_requested_at) == (held_since, held_since)


def test_it_pauses_the_integration_once_when_consent_is_revoked(integration, onex):
    users = make_users(integration, 20)
    calendar = calendar_for(users)
    calendar.errors[users[7].email] = ConsentRevoked(code="AADSTS7000229")
    ids = [u.pk for u in users]
    outcomes = sync.sync_mailboxes(ids, provider=calendar, writer=onex, now=NOW)
    assert {o.status for o in outcomes.values()} == {"inactive"}
    assert Integration.objects.get().status == Integration.Status.NEEDS_ATTENTION
    assert Integration.objects.get().attention == Integration.Attention.CONSENT_REVOKED
    activity = Activity.objects.get()  # one entry for the integration, none per user
    assert activity.event == "consent_revoked" and "AADSTS7000229" in activity.message
    assert onex.entries == {}
    assert set(SyncedUser.objects.values_list("state", flat=True)) == {"pending"}
    assert not SyncedUser.objects.filter(sync_started_at__isnull=False).exists()

    # The next chunk does not even read.
    assert {o.status for o in sync.sync_mailboxes(ids, provider=calendar).values()} == {"inactive"}
    assert len(calendar.bulk_fetches) == 1 and Activity.objects.count() == 1


def test_the_single_mailbox_path_records_revoked_consent_the_same_way(integration, onex):
    (user,) = make_users(integration, 1)
    calendar = InMemoryCalendar(errors={user.email: ConsentRevoked(code="AADSTS700016")})
    sync.sync_mailbox(user, provider=calendar, writer=onex, now=NOW)
    bulk_user = make_users(
        Integration.objects.create(
            company=integration.company, kind="graph", name="B", status="connected"
        ),
        1,
        prefix="b",
    )[0]
    calendar.errors[bulk_user.email] = ConsentRevoked(code="AADSTS700016")
    calendar.errors["other@demo.se"] = ConsentRevoked(code="AADSTS700016")
    sync.sync_mailboxes([bulk_user.pk], provider=calendar, writer=onex, now=NOW)
    messages = [a.message for a in Activity.objects.filter(event="consent_revoked")]
    assert len(messages) == 2 and messages[0] == messages[1]


def test_it_falls_back_to_single_reads_without_a_bulk_fetch(integration, onex):
    users = make_users(integration, 3)
    calendar = calendar_for(users)

    class SingleReadsOnly:
        def fetch(self, *args, **kwargs):
            return calendar.fetch(*args, **kwargs)

    outcomes = sync.sync_mailboxes(
        [u.pk for u in users], provider=SingleReadsOnly(), writer=onex, now=NOW
    )
    assert {o.status for o in outcomes.values()} == {"ok"}
    assert calendar.fetches == [u.email for u in users] and calendar.bulk_fetches == []

    # One mailbox alone is a plain read too.
    calendar.fetches.clear()
    sync.sync_mailboxes([users[0].pk], provider=calendar, writer=onex, now=NOW)
    assert calendar.fetches == [users[0].email] and calendar.bulk_fetches == []


def test_a_bug_in_one_users_run_leaves_the_others_and_no_lock(integration, onex, monkeypatch):
    users = make_users(integration, 3)
    real_plan = planning.plan_for_synced_user

    def plan(synced_user, items, **kwargs):
        if synced_user.pk == users[1].pk:
            raise RuntimeError("bug")
        return real_plan(synced_user, items, **kwargs)

    monkeypatch.setattr(planning, "plan_for_synced_user", plan)
    outcomes = sync.sync_mailboxes(
        [u.pk for u in users], provider=calendar_for(users), writer=onex, now=NOW
    )
    assert [outcomes[u.pk].status for u in users] == ["ok", "failed", "ok"]
    assert not outcomes[users[1].pk].retry  # a bug waits for the next run, no retry storm
    broken = SyncedUser.objects.get(pk=users[1].pk)
    assert broken.state == "error" and broken.last_error == "RuntimeError"
    assert not SyncedUser.objects.filter(sync_started_at__isnull=False).exists()


def test_the_task_runs_a_chunk_with_the_registered_provider_and_writer(
    integration, onex, monkeypatch
):
    users = make_users(integration, 4)
    calendar = InMemoryCalendar()
    for user in users[:3]:
        calendar.put(user.email, item("a", start=timezone.now() + timedelta(hours=1)))
    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    monkeypatch.setattr(sync, "default_writer", lambda lane=None: onex)
    result = tasks.sync_mailboxes.apply(args=([u.pk for u in users] + [0],)).get()
    assert result == {"ok": 3, "failed": 1}  # the fourth mailbox is unknown; id 0 is gone
    assert len(calendar.bulk_fetches) == 1
    assert sum(len(entries_of(onex, u)) for u in users) == 3


def test_a_resync_of_2000_users_costs_a_few_queries(
    integration, enqueued, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    make_users(integration, 2000)
    with django_capture_on_commit_callbacks(execute=True):
        with django_assert_max_num_queries(10):
            assert resync(integration) == 2000
    # A large resync runs in chunks of five bulk reads, so its One X batches fill.
    assert len(enqueued) == 20 and {len(ids) for ids, _ in enqueued} == {5 * 20}
    assert SyncedUser.objects.filter(sync_requested_at__isnull=True).count() == 0
    # Saving again while the runs are pending: still a few queries, nothing enqueued.
    with django_capture_on_commit_callbacks(execute=True):
        with django_assert_max_num_queries(10):
            assert resync(integration) == 2000
    assert len(enqueued) == 20


def test_a_resync_below_the_fill_threshold_keeps_chunks_of_one_read(integration):
    make_users(integration, sync.FILL_FROM - 1)
    chunks = sync.chunks_of(SyncedUser.objects.all())
    assert {len(chunk) for chunk in chunks[:-1]} == {20} and len(chunks) == 10
    make_users(integration, 1, prefix="one-more")
    assert [len(chunk) for chunk in sync.chunks_of(SyncedUser.objects.all())] == [100, 100]


def test_it_reads_20_sandbox_mailboxes_with_one_batch_request(m365, integration, onex):
    tenant = m365.control(
        "POST", "tenants", {"name": "Bulk AB", "generate": {"users": 20, "domain": "bulk.se"}}
    )["id"]
    Integration.objects.filter(pk=integration.pk).update(tenant_id=tenant)
    company = integration.company
    for n in range(20):
        subscription = Subscription.objects.create(
            company=company, onex_id=f"bulk-{n}", email=f"user{n:05d}@bulk.se"
        )
        SyncedUser.objects.create(
            integration=integration, subscription=subscription, email=subscription.email
        )
    ids = list(SyncedUser.objects.values_list("pk", flat=True))
    m365.clear_requests()
    outcomes = sync.sync_mailboxes(ids, writer=onex)  # the registered Graph provider
    assert {o.status for o in outcomes.values()} == {"ok"}
    graph = m365.graph_requests()
    top_level = [r for r in graph if not r.get("batch")]
    assert [(r["method"], r["path"], r["steps"]) for r in top_level] == [
        ("POST", "/v1.0/$batch", 20)
    ]
    steps = [r for r in graph if r.get("batch")]
    assert len(steps) == 20 and all("calendarView" in r["path"] for r in steps)
    assert not body_requests(m365.requests())
    assert len(onex.entries) > 20  # a fortnight of meetings each
    assert Booking.objects.values("synced_user").distinct().count() == 20


def test_a_chunk_of_an_integration_that_may_not_sync_leaves_no_pending_requests(integration):
    users = make_users(integration, 3)
    SyncedUser.objects.update(sync_requested_at=timezone.now())  # requested before the pause
    integration.pause(actor=SYSTEM)
    outcomes = sync.sync_mailboxes([u.pk for u in users], provider=InMemoryCalendar())
    assert {o.status for o in outcomes.values()} == {"inactive"}
    assert not SyncedUser.objects.filter(sync_requested_at__isnull=False).exists()


class RecordingWriter(InMemoryAbsences):
    """InMemoryAbsences that remembers each apply call's operations."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def apply(self, company_id, operations):
        self.calls.append(list(operations))
        return super().apply(company_id, operations)


def busy_calendar(users, absences):
    calendar = InMemoryCalendar()
    for user in users:
        calendar.put(
            user.email, *(item(f"{user.email}-{n}", at(2 + n, 9)) for n in range(absences))
        )
    return calendar


def test_a_chunk_sends_all_its_mailboxes_operations_in_one_apply(integration):
    users = make_users(integration, 20)
    onex = RecordingWriter()
    outcomes = sync.sync_mailboxes(
        [u.pk for u in users], provider=busy_calendar(users, 6), writer=onex, now=NOW
    )
    assert {(o.status, o.written) for o in outcomes.values()} == {("ok", 6)}
    (operations,) = onex.calls  # one call for the chunk, any of the company's subscriptions
    assert len(operations) == 120
    assert {op.subscription_id for op in operations} == {u.subscription.onex_id for u in users}
    assert all(len(entries_of(onex, u)) == 6 for u in users)
    assert Booking.objects.count() == 120

    # Only the one mailbox that changed has operations the next time.
    calendar = busy_calendar(users, 6)
    calendar.remove(users[3].email, f"{users[3].email}-0")
    outcomes = sync.sync_mailboxes([u.pk for u in users], provider=calendar, writer=onex, now=NOW)
    assert [op.subscription_id for op in onex.calls[1]] == [users[3].subscription.onex_id]
    assert (outcomes[users[3].pk].deleted, Booking.objects.count()) == (1, 119)


def test_one_mailboxs_refused_operation_is_that_mailboxs_failure_only(integration):
    users = make_users(integration, 4)
    unlucky = users[2].subscription.onex_id
    onex = InMemoryAbsences(
        fail=lambda op: (
            OperationResult(op, ok=False, code="unavailable")
            if op.subscription_id == unlucky and op.entry.start == at(3, 9)
            else None
        )
    )
    outcomes = sync.sync_mailboxes(
        [u.pk for u in users], provider=busy_calendar(users, 3), writer=onex, now=NOW
    )
    failed = outcomes[users[2].pk]
    assert (failed.status, failed.retry, failed.written, failed.failed) == ("failed", True, 2, 1)
    assert {outcomes[u.pk].status for u in users if u is not users[2]} == {"ok"}
    assert Booking.objects.filter(synced_user=users[2]).count() == 2  # what One X took
    assert Booking.objects.count() == 11
    states = dict(SyncedUser.objects.values_list("pk", "state"))
    assert [states[u.pk] for u in users] == ["ok", "ok", "error", "ok"]
    assert "unavailable" in SyncedUser.objects.get(pk=users[2].pk).last_error
    assert Activity.objects.filter(event="sync_failed", synced_user=users[2]).count() == 1


def test_a_permanent_refusal_waits_for_the_next_run_for_that_mailbox_only(integration):
    users = make_users(integration, 3)
    unlucky = users[0].subscription.onex_id
    onex = InMemoryAbsences(
        fail=lambda op: (
            OperationResult(op, ok=False, code="feature_not_enabled", permanent=True)
            if op.subscription_id == unlucky
            else None
        )
    )
    outcomes = sync.sync_mailboxes(
        [u.pk for u in users], provider=busy_calendar(users, 2), writer=onex, now=NOW
    )
    assert (outcomes[users[0].pk].permanent, outcomes[users[0].pk].retry) == (True, False)
    assert [outcomes[u.pk].status for u in users[1:]] == ["ok", "ok"]
    assert Activity.objects.get(event="sync_failed").level == Activity.Level.ERROR


@pytest.mark.parametrize("permanent", [False, True])
def test_a_whole_call_failure_fails_every_mailbox_with_operations(integration, permanent):
    users = make_users(integration, 3)
    onex = InMemoryAbsences()
    sync.sync_mailboxes(
        [u.pk for u in users], provider=busy_calendar(users, 2), writer=onex, now=NOW
    )
    calendar = busy_calendar(users, 2)
    for user in users[1:]:
        calendar.put(user.email, item(f"{user.email}-new", at(5, 9)))

    class Down:
        def apply(self, company_id, operations):
            raise OneXError("refused", permanent=permanent, code="boom")

    outcomes = sync.sync_mailboxes([u.pk for u in users], provider=calendar, writer=Down(), now=NOW)
    assert outcomes[users[0].pk].status == "ok"  # nothing to send: nothing failed
    assert {
        (o.status, o.retry, o.permanent) for pk, o in outcomes.items() if pk != users[0].pk
    } == {("failed", not permanent, permanent)}
    assert Booking.objects.count() == 6  # only the first run's rows
    assert not SyncedUser.objects.filter(sync_started_at__isnull=False).exists()


def test_a_chunk_fills_one_x_batches_across_its_mailboxes(integration, onex_sandbox, company):
    users = make_users(integration, 20)
    onex_sandbox.put_company(
        company.onex_id,
        company.name,
        subscriptions=[{"subscriptionId": u.subscription.onex_id, "email": u.email} for u in users],
        reasons=[{"code": "MOTE", "label": {"sv": "Möte"}}],
    )
    onex_sandbox.clear_requests()
    client = OneXClient(onex_sandbox.url, CLIENT_ID, CLIENT_SECRET)
    try:
        outcomes = sync.sync_mailboxes(
            [u.pk for u in users], provider=busy_calendar(users, 10), writer=client, now=NOW
        )
    finally:
        client.close()
    assert {(o.status, o.written) for o in outcomes.values()} == {("ok", 10)}
    batches = onex_sandbox.requests(path_contains="absences:batch")
    assert len(batches) == 2  # 200 operations of 20 mailboxes: two full batches, not 20
    assert len(onex_sandbox.absences(company.onex_id)) == 200


def test_a_spent_rate_budget_says_so_and_retries_soon(integration):
    """Operations our own One X budget held back (nothing was sent) are a passing failure with
    a message that says what happened, not "refused"."""
    users = make_users(integration, 2)

    class OverBudget:
        def apply(self, company_id, operations):
            return [
                OperationResult(op, ok=False, code=RATE_BUDGET_CODE, permanent=False)
                for op in operations
            ]

    with translation.override("en"):
        outcomes = sync.sync_mailboxes(
            [u.pk for u in users], provider=calendar_for(users), writer=OverBudget(), now=NOW
        )
    assert {(o.status, o.retry) for o in outcomes.values()} == {("failed", True)}
    assert {o.error for o in outcomes.values()} == {
        "One X's request limit is used up for now; the sync runs again soon."
    }
