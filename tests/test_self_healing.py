"""Self-healing queues and no drift in the sync core (issue 14).

A request for a mailbox never depends on one message surviving: the beat's sweeper requests
again, in bulk chunks, what is overdue and unclaimed, and frees claims whose lease ran out (a
run renews its lease while it works). A failure to record after One X accepted is passing.
The notification endpoints answer so that Graph and Exchange deliver again what the product
could not record. The last test
restarts a real redis-server under a live worker (marked `faults`).
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery.schedules import crontab
from django.core.cache import cache
from django.db import OperationalError, connection
from django.db.models.query import QuerySet
from django.urls import reverse
from django.utils import timezone
from kombu.transport import redis as kombu_redis

from calendarsync import claims, reconcile, sync, tasks
from calendarsync.models import Activity, Booking, Integration, MailboxSubscription, SyncedUser
from calendarsync.providers.ews import provider as ews_provider
from calendarsync.providers.graph.provider import SUBSCRIPTION_MINUTES
from calendarsync.providers.memory import InMemoryCalendar
from mss import kombu_restore
from mss.celery import app, worker_queues
from mss.schedules import PERIODIC_TASKS
from onex.models import Subscription
from onex.operations import InMemoryAbsences
from sandbox.ews import push
from sandbox.ews.calendar import Change, Mailbox
from tests.calendar_factory import NOW, item
from tests.faults.processes import deployed_worker_switches
from tests.m365_sandbox import ANNA, DEMO_TENANT, wait_for
from tests.test_e2e_graph import _reset_celery_connections, database_url

REPO = Path(__file__).resolve().parent.parent
NOTIFY = reverse("calendarsync:graph_notifications")
LIFECYCLE = reverse("calendarsync:graph_lifecycle")
EWS_NOTIFY = reverse("ews_notifications")


def make_users(integration, count, prefix="user"):
    company = integration.company
    subs = Subscription.objects.bulk_create(
        Subscription(
            company=company,
            onex_id=f"{prefix}-{integration.pk}-{n}",
            email=f"{prefix}{n:03d}@demo.se",
            has_diversion=True,
        )
        for n in range(count)
    )
    SyncedUser.objects.bulk_create(
        SyncedUser(integration=integration, subscription=s, email=s.email) for s in subs
    )
    return list(integration.users.order_by("pk"))


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


def sweep(capture):
    cache.delete(tasks.sweep_lock_key(timezone.now()))  # as if a minute had passed
    with capture(execute=True):
        return tasks.sweep_sync_requests()


def requested_ago(users, seconds):
    SyncedUser.objects.filter(pk__in=[u.pk for u in users]).update(
        sync_requested_at=timezone.now() - timedelta(seconds=seconds)
    )


def swept(found):
    return sorted(pk for chunk in found.lost for pk in chunk)


# ----- the sweeper


def test_the_sweeper_runs_again_overdue_unclaimed_requests_in_bulk_chunks(
    integration, enqueued, django_capture_on_commit_callbacks
):
    users = make_users(integration, 26)
    requested_ago(users, 90)  # their messages were lost
    running, recent = users[0], users[1]
    SyncedUser.objects.filter(pk=running.pk).update(sync_started_at=timezone.now())
    requested_ago([recent], 10)  # its run is still on its way

    result = sweep(django_capture_on_commit_callbacks)

    again = [pk for chunk, _ in enqueued for pk in chunk]
    assert sorted(again) == sorted(u.pk for u in users[2:])  # each once
    assert [len(chunk) for chunk, _ in enqueued] == [20, 4]  # Graph's bulk size
    assert result == {"released": 0, "dropped": 0, "lost": 24, "resubscribed": 0}
    assert SyncedUser.objects.get(pk=running.pk).sync_started_at is not None
    # The stamps stay: they tell how long the mailboxes have waited (the dashboard's alert).
    assert SyncedUser.objects.get(pk=users[2].pk).sync_requested_at < (
        timezone.now() - timedelta(seconds=85)
    )

    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_sync_requests() == "skipped"  # a second sweep in the same minute
    assert enqueued == []


def test_a_lost_request_runs_again_ever_more_rarely_while_no_worker_takes_it(integration):
    (user,) = make_users(integration, 1)
    requested_ago([user], 0)
    start = timezone.now()
    again = [
        minute
        for minute in range(0, 40)
        if swept(sync.sweep(now=start + timedelta(minutes=minute, seconds=5)))
    ]
    assert again == [1, 3, 7, 15, 31]


def test_a_burst_still_collapses_into_one_run_and_the_sweeper_never_doubles_it(
    integration, enqueued, django_capture_on_commit_callbacks, monkeypatch
):
    (user,) = make_users(integration, 1)
    runs = []
    monkeypatch.setattr(tasks.sync_mailbox, "apply_async", lambda args, **kw: runs.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        assert [tasks.request_sync(user.pk) for _ in range(3)] == [True, False, False]
    assert len(runs) == 1
    sweep(django_capture_on_commit_callbacks)
    assert enqueued == []  # pending, not lost

    requested_ago([user], 70)  # the run never came
    sweep(django_capture_on_commit_callbacks)
    assert enqueued == [([user.pk], 0)]
    # A person's change to a mailbox whose request is long overdue gets a run of its own on the
    # interactive queue (the sweeper's bulk run may wait behind a resync); once, not per change.
    with django_capture_on_commit_callbacks(execute=True):
        assert [tasks.request_sync(user.pk) for _ in range(3)] == [True, False, False]
    assert len(runs) == 2


def test_an_abandoned_claim_is_released_and_requested_again_once_its_lease_ran_out(
    integration, enqueued, django_capture_on_commit_callbacks, settings
):
    settings.MSS_CLAIM_LEASE_SECONDS = 30
    dead, alive = make_users(integration, 2)
    now = timezone.now()
    SyncedUser.objects.filter(pk=dead.pk).update(sync_started_at=now - timedelta(seconds=35))
    # Claimed long ago, but its run renewed the lease 20 s ago: still alive.
    SyncedUser.objects.filter(pk=alive.pk).update(
        sync_started_at=now - timedelta(seconds=200), sync_renewed_at=now - timedelta(seconds=20)
    )

    result = sweep(django_capture_on_commit_callbacks)

    assert result["released"] == 1
    assert enqueued == [([dead.pk], 0)]
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.sync_started_at is None and dead.sync_requested_at is not None
    assert alive.sync_started_at is not None and alive.sync_requested_at is None


def test_overdue_requests_of_a_paused_integration_are_dropped_not_run(
    integration, enqueued, django_capture_on_commit_callbacks
):
    users = make_users(integration, 3)
    requested_ago(users, 70)
    Integration.objects.filter(pk=integration.pk).update(status=Integration.Status.PAUSED)
    result = sweep(django_capture_on_commit_callbacks)
    assert (result["dropped"], result["lost"], enqueued) == (3, 0, [])
    assert not SyncedUser.objects.filter(sync_requested_at__isnull=False).exists()


def test_a_resync_spread_over_minutes_is_not_taken_for_lost(
    integration, enqueued, django_capture_on_commit_callbacks
):
    users = make_users(integration, 45)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.request_syncs(integration.users.all(), countdown=150, spread_seconds=60)
    assert sorted(countdown for _, countdown in enqueued) == [150, 151, 152]
    soon = timezone.now() + timedelta(seconds=100)  # late by the request time, not the due one
    assert swept(sync.sweep(now=soon)) == []
    late = timezone.now() + timedelta(seconds=160 + 70)
    assert swept(sync.sweep(now=late)) == sorted(u.pk for u in users)


def test_a_retry_is_stamped_so_a_lost_retry_message_is_swept(integration):
    (user,) = make_users(integration, 1)
    sync.stamp_retry([user.pk], 240)
    user.refresh_from_db()
    due = user.sync_requested_at - timezone.now()
    assert timedelta(seconds=230) < due <= timedelta(seconds=240)
    assert swept(sync.sweep(now=timezone.now() + timedelta(seconds=250))) == []
    assert swept(sync.sweep(now=timezone.now() + timedelta(seconds=310))) == [user.pk]


def test_the_sweeper_runs_every_minute_on_the_beat():
    (spec,) = [s for s in PERIODIC_TASKS.values() if s["task"].endswith("sweep_sync_requests")]
    assert spec["schedule"] == crontab(minute="*")


# ----- claims


def test_a_claim_holds_for_its_lease_from_the_last_renewal_and_no_longer(
    synced_user_and_calendar, settings
):
    synced_user, calendar, onex = synced_user_and_calendar
    settings.MSS_CLAIM_LEASE_SECONDS = 30

    def status(seconds):
        now = NOW + timedelta(seconds=seconds)
        return sync.sync_mailbox(synced_user, provider=calendar, writer=onex, now=now).status

    SyncedUser.objects.filter(pk=synced_user.pk).update(sync_started_at=NOW)
    assert status(29) == "busy"
    renewed = NOW + timedelta(seconds=25)
    SyncedUser.objects.filter(pk=synced_user.pk).update(sync_renewed_at=renewed)
    assert status(54) == "busy"  # 29 s after the renewal, 54 s after the claim
    assert status(56) == "ok"


class SlowCalendar(InMemoryCalendar):
    """A read that takes `seconds` (Graph throttled, say), while others try the mailbox."""

    def __init__(self, seconds, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds

    def fetch(self, *args, **kwargs):
        time.sleep(self.seconds)
        return super().fetch(*args, **kwargs)


@pytest.mark.django_db(transaction=True)  # the renewer's own connection sees the claim
def test_a_run_renews_its_lease_while_it_works_and_keeps_its_mailbox(
    integration, subscription, settings
):
    settings.MSS_CLAIM_LEASE_SECONDS = 0.6  # renewed every 0.2 s
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )
    calendar = SlowCalendar(1.5, mailboxes={user.email: [item("a")]})
    seen = []

    def contender():
        time.sleep(1.0)  # past the lease since the claim: only a renewal holds it now
        user_now = SyncedUser.objects.get(pk=user.pk)
        seen.append((user_now.sync_started_at, user_now.sync_renewed_at))
        seen.append(claims.claim(user_now, timezone.now()))
        connection.close()

    other = threading.Thread(target=contender)
    started = timezone.now()
    other.start()
    outcome = sync.sync_mailbox(user, provider=calendar, writer=InMemoryAbsences(), now=started)
    other.join()

    (claimed_at, renewed_at), taken = seen
    assert outcome.status == "ok"
    assert claimed_at == started and renewed_at - started >= timedelta(seconds=0.6)
    assert taken is False  # the live run kept its mailbox
    assert "claim-renewer" not in {thread.name for thread in threading.enumerate()}
    user.refresh_from_db()
    assert (user.sync_started_at, user.sync_renewed_at) == (None, None)


@pytest.mark.django_db(transaction=True)
def test_a_run_that_died_loses_its_lease_a_lease_later(integration, subscription, settings):
    settings.MSS_CLAIM_LEASE_SECONDS = 0.6
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )
    claimed_at = timezone.now()
    assert claims.claim(user, claimed_at)
    # No renewer runs (its process is gone): the lease runs out from the claim.
    assert sync.sweep(now=claimed_at + timedelta(seconds=0.5)).released == []
    assert sync.sweep(now=claimed_at + timedelta(seconds=0.7)).released == [user.pk]


@pytest.fixture
def synced_user_and_calendar(integration, subscription):
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )
    calendar = InMemoryCalendar(mailboxes={user.email: []})
    calendar.put(user.email, item("a"), item("b", start=NOW + timedelta(days=2, hours=1)))
    return user, calendar, InMemoryAbsences()


def fail_release(monkeypatch, times):
    """The UPDATE that frees a claim raises `times` times, as a cut connection would."""
    real = QuerySet.update
    left = [times]

    def update(self, **fields):
        if fields == {"sync_started_at": None, "sync_renewed_at": None} and left[0]:
            left[0] -= 1
            raise OperationalError("terminating connection due to administrator command")
        return real(self, **fields)

    monkeypatch.setattr(QuerySet, "update", update)
    return left


def test_a_release_that_fails_once_is_tried_again(synced_user_and_calendar, monkeypatch):
    synced_user, calendar, onex = synced_user_and_calendar
    left = fail_release(monkeypatch, 1)
    assert sync.sync_mailbox(synced_user, provider=calendar, writer=onex, now=NOW).status == "ok"
    assert left == [0]
    assert SyncedUser.objects.get(pk=synced_user.pk).sync_started_at is None


def test_a_release_the_database_refuses_leaves_a_claim_the_sweeper_frees_after_its_lease(
    synced_user_and_calendar, monkeypatch, settings
):
    synced_user, calendar, onex = synced_user_and_calendar
    fail_release(monkeypatch, 2)
    now = timezone.now()
    assert sync.sync_mailbox(synced_user, provider=calendar, writer=onex, now=now).status == "ok"
    assert SyncedUser.objects.get(pk=synced_user.pk).sync_started_at == now  # still locked
    limit = timedelta(seconds=settings.MSS_CLAIM_LEASE_SECONDS)
    assert sync.sweep(now=now + limit - timedelta(seconds=5)).released == []
    assert sync.sweep(now=now + limit + timedelta(seconds=1)).released == [synced_user.pk]
    assert SyncedUser.objects.get(pk=synced_user.pk).sync_started_at is None


# ----- no drift: a failure to record is passing


def test_a_failure_to_record_after_one_x_accepted_is_passing_and_the_next_run_repairs(
    synced_user_and_calendar, monkeypatch
):
    synced_user, calendar, onex = synced_user_and_calendar
    real_record = reconcile.record

    def record_then_lose_the_connection(*args):
        real_record(*args)  # the rows are written …
        raise OperationalError("server closed the connection unexpectedly")  # … and lost

    monkeypatch.setattr(reconcile, "record", record_then_lose_the_connection)
    outcome = sync.sync_mailbox(synced_user, provider=calendar, writer=onex, now=NOW)
    assert outcome.status == "failed" and outcome.retry and not outcome.permanent
    assert len(onex.for_subscription("demo-ab", "sub-1")) == 2  # One X took both
    assert Booking.objects.count() == 0  # nothing half-recorded
    synced_user.refresh_from_db()
    assert synced_user.sync_started_at is None and synced_user.state == "error"
    assert Activity.objects.get(event="sync_failed").level == Activity.Level.WARNING

    monkeypatch.setattr(reconcile, "record", real_record)
    outcome = sync.sync_mailbox(synced_user, provider=calendar, writer=onex, now=NOW)
    assert (outcome.status, outcome.written) == ("ok", 2)  # the same puts again, taken as is
    assert Booking.objects.count() == 2
    assert len(onex.for_subscription("demo-ab", "sub-1")) == 2
    assert sync.sync_mailbox(synced_user, provider=calendar, writer=onex, now=NOW).written == 0


def test_in_a_bulk_run_a_failure_to_record_is_retried_for_that_mailbox_only(
    integration, monkeypatch
):
    users = make_users(integration, 3)
    calendar = InMemoryCalendar()
    for user in users:
        calendar.put(user.email, item(f"{user.email}-a"))
    onex = InMemoryAbsences()
    real_record_many = reconcile.record_many
    unlucky = users[1]

    def record_many(settled, *args):
        # The chunk's rows go in together; the database refuses any write with the unlucky
        # mailbox's rows in it (also when it is then tried on its own).
        if any(synced_user.pk == unlucky.pk for synced_user, _settlement in settled):
            raise OperationalError("connection to server was lost")
        real_record_many(settled, *args)

    monkeypatch.setattr(reconcile, "record_many", record_many)
    outcomes = sync.sync_mailboxes([u.pk for u in users], provider=calendar, writer=onex, now=NOW)
    assert [pk for pk, outcome in outcomes.items() if outcome.retry] == [unlucky.pk]
    assert not outcomes[unlucky.pk].permanent
    assert {o.status for pk, o in outcomes.items() if pk != unlucky.pk} == {"ok"}
    assert len(onex.entries) == 3  # One X took all three
    assert set(Booking.objects.values_list("synced_user_id", flat=True)) == {
        u.pk for u in users if u is not unlucky
    }
    assert not SyncedUser.objects.filter(sync_started_at__isnull=False).exists()


def test_a_database_error_while_reading_the_rows_is_passing_too(
    synced_user_and_calendar, monkeypatch
):
    synced_user, calendar, onex = synced_user_and_calendar

    def lost(*_):
        raise OperationalError("could not receive data from server")

    monkeypatch.setattr(reconcile, "stored_bookings", lost)
    outcome = sync.sync_mailbox(synced_user, provider=calendar, writer=onex, now=NOW)
    assert outcome.retry and not outcome.permanent
    assert SyncedUser.objects.get(pk=synced_user.pk).sync_started_at is None


# ----- the notification endpoints


@pytest.fixture
def graph_subscription(integration, subscription):
    integration.tenant_id = DEMO_TENANT
    integration.save()
    subscription.email = ANNA
    subscription.save()
    user = SyncedUser.objects.create(integration=integration, subscription=subscription, email=ANNA)
    return MailboxSubscription.objects.create(
        synced_user=user,
        provider_subscription_id="graph-sub-1",
        client_state="the-right-client-state",
        expires_at=timezone.now() + timedelta(days=2),
    )


def graph_post(client, url, **extra):
    notification = {
        "subscriptionId": "graph-sub-1",
        "changeType": "updated",
        "resource": "Users/u/Events/e",
        "clientState": "the-right-client-state",
        "tenantId": DEMO_TENANT,
        **extra,
    }
    return client.post(url, {"value": [notification]}, content_type="application/json")


def requested(subscription):
    return SyncedUser.objects.get(pk=subscription.synced_user_id).sync_requested_at is not None


def test_graph_gets_503_while_the_database_cannot_record_and_202_on_its_redelivery(
    client, graph_subscription, monkeypatch, django_capture_on_commit_callbacks
):
    real = sync.stamp_request

    def database_gone(*_):
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(sync, "stamp_request", database_gone)
    assert graph_post(client, NOTIFY).status_code == 503
    assert not requested(graph_subscription)

    monkeypatch.setattr(sync, "stamp_request", real)
    with django_capture_on_commit_callbacks() as callbacks:
        assert graph_post(client, NOTIFY).status_code == 202
    assert requested(graph_subscription) and len(callbacks) == 1


def test_graph_gets_503_while_the_broker_is_down_and_the_request_is_kept(
    client, graph_subscription, monkeypatch, transactional_db
):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    saved = app.conf.broker_url, app.conf.task_always_eager
    monkeypatch.setenv("CELERY_BROKER_URL", dead)  # Celery reads the variable first
    app.conf.update(broker_url=dead, task_always_eager=False)
    _reset_celery_connections(app)
    try:
        started = time.monotonic()
        assert graph_post(client, NOTIFY).status_code == 503
        assert time.monotonic() - started < 10  # Graph waits 10 s for an answer
    finally:
        monkeypatch.delenv("CELERY_BROKER_URL")
        app.conf.update(broker_url=saved[0], task_always_eager=saved[1])
        _reset_celery_connections(app)
    # The request itself is recorded: the sweeper enqueues it once it is overdue.
    assert requested(graph_subscription)
    requested_ago([graph_subscription.synced_user], 70)
    assert swept(sync.sweep()) == [graph_subscription.synced_user_id]


def test_a_missed_lifecycle_event_resyncs_the_mailbox(
    client, graph_subscription, django_capture_on_commit_callbacks, monkeypatch
):
    runs = []
    monkeypatch.setattr(tasks.sync_mailbox, "apply_async", lambda args, **kw: runs.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = graph_post(client, LIFECYCLE, lifecycleEvent="missed")
    assert response.status_code == 202
    assert requested(graph_subscription) and runs == [(graph_subscription.synced_user_id,)]


def test_an_unknown_subscription_is_answered_202_and_dropped(client, graph_subscription):
    assert graph_post(client, NOTIFY, subscriptionId="not-ours").status_code == 202
    assert not requested(graph_subscription)
    assert graph_post(client, NOTIFY, clientState="forged").status_code == 403


@pytest.fixture
def ews_subscription(company):
    integration = Integration.objects.create(
        company=company, kind=Integration.Kind.EWS, name="Exchange", status="connected"
    )
    subscription = Subscription.objects.create(
        company=company, onex_id="sub-ews", email="kalle@kommun.example.se", has_diversion=True
    )
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )
    return MailboxSubscription.objects.create(
        synced_user=user, provider_subscription_id="ews-sub-1", watermark="wm0"
    )


def ews_body(subscription_id="ews-sub-1"):
    box = Mailbox("kalle@kommun.example.se", "Kalle", "epoch")
    change = Change(1, "CreatedEvent", "item-1", datetime.now(UTC))
    return push.notification(SimpleNamespace(id=subscription_id), box, "wm0", [change], False)


def test_ews_gets_503_while_the_product_cannot_record_and_ok_on_its_redelivery(
    client, ews_subscription, monkeypatch, django_capture_on_commit_callbacks
):
    real = sync.stamp_request

    def database_gone(*_):
        raise OperationalError("the database system is in recovery mode")

    monkeypatch.setattr(sync, "stamp_request", database_gone)
    answer = client.post(EWS_NOTIFY, ews_body(), content_type="text/xml")
    assert answer.status_code == 503

    monkeypatch.setattr(sync, "stamp_request", real)
    with django_capture_on_commit_callbacks() as callbacks:
        answer = client.post(EWS_NOTIFY, ews_body(), content_type="text/xml")
    assert answer.status_code == 200 and b">OK<" in answer.content
    assert requested(ews_subscription) and len(callbacks) == 1


def test_a_resumed_subscription_delivering_before_it_is_recorded_is_taken_at_once(
    client, ews_subscription, monkeypatch, django_capture_on_commit_callbacks
):
    """Resumed from our watermark, Exchange delivers the backlog at once, even before it
    answers the Subscribe with the new id: that notification (previous watermark = ours) is
    taken at once, its mailbox requested, never answered Unsubscribe."""
    cache.delete(ews_provider.RESUMING + "wm0")
    answer = client.post(EWS_NOTIFY, ews_body("ews-sub-new"), content_type="text/xml")
    assert answer.status_code == 200 and b"Unsubscribe" in answer.content  # unknown: ended

    seen = []

    class Calendar:
        def subscribe_to_push(self, **kwargs):
            # Exchange's first delivery arrives while we still wait for its answer.
            with django_capture_on_commit_callbacks() as callbacks:
                body = ews_body("ews-sub-new")
                seen.append(client.post(EWS_NOTIFY, body, content_type="text/xml"))
            seen.append(len(callbacks))
            return "ews-sub-new", "wm1"

    monkeypatch.setattr(
        ews_provider.client, "account", lambda *a: SimpleNamespace(calendar=Calendar())
    )
    provider = ews_provider.EwsProvider(ews_subscription.synced_user.integration)
    subscribed = provider.subscribe("kalle@kommun.example.se", watermark="wm0")
    assert subscribed.id == "ews-sub-new"
    answer, enqueued = seen
    assert answer.status_code == 200 and b">OK<" in answer.content and enqueued == 1
    assert requested(ews_subscription)
    ews_subscription.refresh_from_db()
    assert ews_subscription.provider_subscription_id == "ews-sub-new"


# ----- a quiet mailbox gets its subscription checked


def test_a_graph_mailbox_quiet_for_long_gets_its_subscription_checked_once_per_quiet_time(
    graph_subscription, ews_subscription, integration, monkeypatch, settings,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    settings.MSS_QUIET_MAILBOX_HOURS = 6
    quiet_since = timezone.now() - timedelta(hours=7)
    MailboxSubscription.objects.create(
        synced_user=make_users(integration, 1, prefix="lively")[-1],
        provider_subscription_id="graph-sub-2",
        expires_at=timezone.now() + timedelta(days=2),
        last_notification_at=timezone.now() - timedelta(hours=1),
    )
    MailboxSubscription.objects.filter(pk=graph_subscription.pk).update(
        last_notification_at=quiet_since
    )
    MailboxSubscription.objects.filter(pk=ews_subscription.pk).update(
        last_notification_at=quiet_since, expires_at=timezone.now() + timedelta(days=2)
    )
    checks = []
    monkeypatch.setattr(tasks.ensure_subscriptions, "delay", lambda *a: checks.append(a))

    with django_capture_on_commit_callbacks(execute=True):
        tasks.renew_subscriptions()
    assert checks == [([graph_subscription.synced_user_id], True)]  # renewed: a real check

    # The renewal moved its expiry a full lifetime ahead: that is the check, remembered in the
    # database (no longer in the cache), so the next beat leaves it alone.
    MailboxSubscription.objects.filter(pk=graph_subscription.pk).update(
        expires_at=timezone.now() + timedelta(minutes=SUBSCRIPTION_MINUTES)
    )
    checks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.renew_subscriptions()  # half an hour later
    assert checks == []


def test_the_sweeper_resumes_a_silent_ews_subscription_within_the_minute_once_per_expiry(
    ews_subscription, enqueued, monkeypatch, django_capture_on_commit_callbacks
):
    ensured = []
    monkeypatch.setattr(tasks.ensure_subscriptions, "delay", lambda *args: ensured.append(args))

    def expires_in(seconds):
        MailboxSubscription.objects.filter(pk=ews_subscription.pk).update(
            expires_at=timezone.now() + timedelta(seconds=seconds)
        )

    expires_in(30)  # a status event came a minute ago
    assert sweep(django_capture_on_commit_callbacks)["resubscribed"] == 0
    expires_in(-1)  # no status event for a period and 20 s: Exchange gave it up
    assert sweep(django_capture_on_commit_callbacks)["resubscribed"] == 1
    assert ensured == [([ews_subscription.synced_user_id], False)]  # ensure resumes it
    assert sweep(django_capture_on_commit_callbacks)["resubscribed"] == 0  # already asked
    expires_in(-2)  # resumed, and silent again (our endpoint still down)
    assert sweep(django_capture_on_commit_callbacks)["resubscribed"] == 1


# ----- the broker configuration and kombu's restore


def test_celery_is_configured_for_at_least_once_delivery(settings):
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry and conf.broker_connection_retry_on_startup
    assert conf.broker_connection_max_retries is None and conf.broker_channel_error_retry
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False
    visibility = settings.MSS_BROKER_VISIBILITY_TIMEOUT
    assert visibility < 3600
    if settings.CELERY_BROKER_URL.startswith("redis"):
        assert conf.broker_transport_options["visibility_timeout"] == visibility
    # No countdown message may outlive the visibility timeout while it waits and runs.
    longest = max(
        tasks.DEBOUNCE_SECONDS + tasks.RECONCILE_SPREAD_SECONDS,
        tasks.DEBOUNCE_SECONDS + tasks.RESYNC_SPREAD_SECONDS,
        tasks.retry_countdown(tasks.sync_mailbox.max_retries),
        tasks.BUSY_RETRY_SECONDS,
        tasks.REMOVAL_RETRY_SECONDS,
        30 * 2 ** (tasks.ensure_subscriptions.max_retries - 1),
    )
    assert longest <= settings.MSS_TASK_MAX_COUNTDOWN
    assert visibility > settings.MSS_TASK_MAX_COUNTDOWN + settings.CELERY_TASK_TIME_LIMIT


def detached_qos():
    """A Redis QoS whose channel's transport the connection already let go, as after a
    Redis restart: building a client fails with AttributeError inside kombu."""

    def conn_or_acquire(client=None):
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    qos = kombu_redis.QoS.__new__(kombu_redis.QoS)
    qos._delivered = OrderedDict(tag1=object(), tag2=object())
    qos.channel = SimpleNamespace(
        conn_or_acquire=conn_or_acquire, connection_errors=(ConnectionError,)
    )
    qos._vrestore_count = 0
    return qos


def test_a_restore_that_fails_is_logged_and_never_kills_the_worker(caplog):
    kombu_restore.install()  # idempotent: mss.celery installed it already
    assert kombu_redis.QoS.restore_unacked.mss_guarded
    qos = detached_qos()
    with caplog.at_level(logging.WARNING):
        assert qos.restore_unacked() is None
    assert not qos._delivered  # a second restore_unacked_once finds nothing left
    assert "Could not restore 2 unacknowledged message(s)" in caplog.text

    with caplog.at_level(logging.WARNING):
        assert qos.restore_visible(num=10, interval=1) is None
    assert "visibility timeout" in caplog.text


def test_a_broken_connection_while_restoring_visible_messages_still_reaches_the_consumer():
    qos = detached_qos()

    def broken(client=None):
        raise ConnectionError("Connection closed by server.")

    qos.channel.conn_or_acquire = broken
    with pytest.raises(ConnectionError):
        qos.restore_visible(num=10, interval=1)


# ----- a real Redis restarted under a live worker


class RedisServer:
    """A redis-server of this test's own, on a free port, without persistence."""

    def __init__(self, directory):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = directory
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, 10, 0.05, message="redis-server")

    def _answers(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
        except OSError:
            return False
        return True

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


FAULT_PEOPLE = [f"person{n}@demo.se" for n in range(6)]


def graph_time(moment):
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def add_meeting(m365, tenant, email, hours):
    start = (timezone.now() + timedelta(days=1, hours=hours)).replace(
        minute=0, second=0, microsecond=0
    )
    end = start + timedelta(minutes=30)
    m365.create_event(
        email, tenant, subject="Möte", start=graph_time(start), end=graph_time(end), showAs="busy"
    )


@pytest.fixture
def fault_stack(company, m365, onex_sandbox, settings, tmp_path, monkeypatch, transactional_db):
    """Six Graph mailboxes with a meeting each, a One X sandbox that answers slowly, and a real
    `celery worker` (prefork, started with the deploy recipe's switches) on a Redis of its own."""
    tenant = m365.add_tenant("Fel AB", users=FAULT_PEOPLE)
    onex_sandbox.put_company(
        "demo-ab",
        "Demo AB",
        subscriptions=[
            {"subscriptionId": f"f{n}", "email": email, "displayName": email}
            for n, email in enumerate(FAULT_PEOPLE)
        ],
    )
    integration = Integration.objects.create(
        company=company, kind="graph", name="Exchange Online", status="connected",
        tenant_id=tenant, all_meetings_private=False,
    )  # fmt: skip
    for n, email in enumerate(FAULT_PEOPLE):
        subscription = Subscription.objects.create(
            company=company, onex_id=f"f{n}", email=email, has_diversion=True
        )
        SyncedUser.objects.create(integration=integration, subscription=subscription, email=email)
        add_meeting(m365, tenant, email, n)
    redis = RedisServer(tmp_path)
    redis.start()
    queue = f"mss-heal-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "tests.e2e_settings",
        "MSS_E2E_QUEUE": queue,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": redis.url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "MSS_VAR_DIR": str(tmp_path / "worker-var"),
        "SECRET_KEY": settings.SECRET_KEY,
        "MSS_ENCRYPTION_KEYS": ",".join(settings.MSS_ENCRYPTION_KEYS),
        **{
            key: getattr(settings, key)
            for key in ("MS_LOGIN_URL", "MS_GRAPH_URL", "MS_CA_BUNDLE", "MS_CLIENT_ID")
        },
        "MS_CLIENT_SECRET": settings.MS_CLIENT_SECRET,
        "ONEX_API_URL": settings.ONEX_API_URL,
        "ONEX_CLIENT_ID": settings.ONEX_CLIENT_ID,
        "ONEX_CLIENT_SECRET": settings.ONEX_CLIENT_SECRET,
    }
    log_path = tmp_path / "worker.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    celery = str(Path(sys.executable).with_name("celery"))
    worker = subprocess.Popen(
        [celery, "-A", "mss", "worker", "-l", "info", "-Q", worker_queues(queue),
         "-n", f"{queue}@%h", "--concurrency", "2", *deployed_worker_switches()],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    saved = {
        key: app.conf[key] for key in ("broker_url", "task_default_queue", "task_always_eager")
    }
    monkeypatch.setenv("CELERY_BROKER_URL", redis.url)  # Celery reads the variable first
    app.conf.update(broker_url=redis.url, task_default_queue=queue, task_always_eager=False)
    _reset_celery_connections(app)
    try:
        wait_for(
            lambda: "ready." in log_path.read_text() or worker.poll() is not None,
            60,
            message="the Celery worker",
        )
        assert worker.poll() is None, log_path.read_text()[-3000:]
        yield SimpleNamespace(
            worker=worker, log=log_path, redis=redis, tenant=tenant, integration=integration
        )
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        redis.kill()
        app.conf.update(saved)
        _reset_celery_connections(app)


def in_one_x(onex_sandbox):
    return {e["subscriptionId"] for e in onex_sandbox.absences("demo-ab")}


@pytest.mark.e2e
@pytest.mark.faults
def test_the_worker_survives_redis_restarts_mid_resync_and_finishes_the_work(
    fault_stack, onex_sandbox, m365
):
    stack = fault_stack
    users = SyncedUser.objects.order_by("pk")
    onex_sandbox.knobs(latency_ms=600)  # a run takes a few seconds: Redis dies mid-resync
    for user in users:
        tasks.request_sync(user.pk, countdown=0)
    for outage, down_seconds in enumerate((0.5, 2.0)):
        # Messages the worker holds unacknowledged when Redis dies: a countdown keeps them.
        tasks.sync_mailbox.apply_async((users[0].pk,), countdown=60)
        wait_for(
            lambda: "received" in stack.log.read_text().rsplit("Connected to redis", 1)[-1],
            30,
            message="a task in progress",
        )
        if outage == 0:
            wait_for(lambda: in_one_x(onex_sandbox), 30, message="a first entry")
        stack.redis.kill()
        time.sleep(down_seconds)
        stack.redis.start()
        wait_for(
            lambda outage=outage: (
                stack.log.read_text().count("Connected to redis") >= outage + 2
                or stack.worker.poll() is not None
            ),
            30,
            message="the worker to reconnect",
        )
        assert stack.worker.poll() is None, stack.log.read_text()[-4000:]
    onex_sandbox.knobs(latency_ms=0)

    # Redis lost the queued runs with its restart; their requests are still stamped. A minute
    # later the sweeper requests them again and the worker runs them.
    SyncedUser.objects.filter(sync_requested_at__isnull=False).update(
        sync_requested_at=timezone.now() - timedelta(seconds=70)
    )
    cache.delete(tasks.sweep_lock_key(timezone.now()))
    assert tasks.sweep_sync_requests()["lost"] >= 1
    wait_for(lambda: len(in_one_x(onex_sandbox)) == len(FAULT_PEOPLE), 60, message="all entries")

    # And a change made after the restarts gets through as usual.
    before = len(onex_sandbox.absences("demo-ab"))
    add_meeting(m365, stack.tenant, FAULT_PEOPLE[0], 5)
    tasks.request_sync(users[0].pk, countdown=0)
    wait_for(lambda: len(onex_sandbox.absences("demo-ab")) > before, 60, message="a new change")

    log = stack.log.read_text()
    assert stack.worker.poll() is None and "Unrecoverable error" not in log
    assert len(onex_sandbox.absences("demo-ab")) == len(FAULT_PEOPLE) + 1  # none twice


def test_every_worker_starts_without_gossip_and_mingle():
    # Celery 5's worker can reconnect to a restarted Redis and never consume again while gossip
    # and mingle are on (celery/celery#8030); every way we start one turns them off.
    assert deployed_worker_switches() == ["--without-gossip", "--without-mingle"]
    units = sorted((REPO / "deploy" / "systemd").glob("mss-worker-*.service"))
    makefile = (REPO / "Makefile").read_text().splitlines()
    commands = [line for unit in units for line in unit.read_text().splitlines()]
    workers = [line for line in commands + makefile if "celery -A mss worker" in line]
    assert len(units) == 2 and len(workers) == 4
    assert all("--without-gossip --without-mingle" in line for line in workers), workers


def test_no_countdown_outlives_the_brokers_visibility_timeout(settings):
    # A message delayed longer than the visibility timeout is handed out again before it runs.
    from calendarsync import audit, tasks

    countdowns = [
        audit.SPREAD_SECONDS,
        audit.RETRY_SECONDS,
        tasks.RECONCILE_SPREAD_SECONDS,
        tasks.RESYNC_SPREAD_SECONDS,
        tasks.MAX_RETRY_SECONDS,
        tasks.REMOVAL_RETRY_SECONDS,
        tasks.BUSY_RETRY_SECONDS,
    ]
    assert max(countdowns) <= settings.MSS_TASK_MAX_COUNTDOWN
    assert settings.MSS_TASK_MAX_COUNTDOWN + settings.CELERY_TASK_TIME_LIMIT < (
        settings.MSS_BROKER_VISIBILITY_TIMEOUT
    )
