"""A person's change runs at once on the interactive queue; a burst costs one trailing run."""

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from calendarsync import claims, sync, tasks
from calendarsync.models import MailboxSubscription, SyncedUser
from calendarsync.providers.memory import InMemoryCalendar
from mss.celery import app, interactive_queue
from onex.models import Subscription
from onex.operations import InMemoryAbsences

NOTIFY = reverse("calendarsync:graph_notifications")
TENANT = "tenant-1"


@pytest.fixture(autouse=True)
def no_windows():
    cache.clear()  # burst windows of earlier tests
    yield
    cache.clear()


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(
        tasks.sync_mailbox,
        "apply_async",
        lambda args, countdown: calls.append((args[0], round(countdown))),
    )
    return calls


def make_users(integration, count):
    integration.tenant_id = TENANT
    integration.save()
    users = []
    for n in range(count):
        subscription = Subscription.objects.create(
            company=integration.company, onex_id=f"s{n}", email=f"u{n}@demo.se"
        )
        user = SyncedUser.objects.create(
            integration=integration, subscription=subscription, email=subscription.email
        )
        MailboxSubscription.objects.create(
            synced_user=user,
            provider_subscription_id=f"graph-sub-{n}",
            client_state=f"state-{n}",
            expires_at=timezone.now() + timedelta(days=2),
        )
        users.append(user)
    return users


def notify(client, numbers):
    body = {
        "value": [
            {
                "subscriptionId": f"graph-sub-{n}",
                "changeType": "updated",
                "resource": "Users/u/Events/e",
                "clientState": f"state-{n}",
                "tenantId": TENANT,
            }
            for n in numbers
        ]
    }
    return client.post(NOTIFY, json.dumps(body), content_type="application/json")


def stamp(user):
    user.refresh_from_db()
    return user.sync_requested_at


def test_a_quiet_mailbox_runs_at_once_on_the_interactive_queue(
    integration, enqueued, django_capture_on_commit_callbacks
):
    (user,) = make_users(integration, 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_sync(user.pk) is True
    assert enqueued == [(user.pk, 0)]
    route = app.amqp.router.route({}, "calendarsync.tasks.sync_mailbox")
    assert route["queue"].name == interactive_queue(app.conf.task_default_queue)
    bulk = app.amqp.router.route({}, "calendarsync.tasks.sync_mailboxes")
    assert bulk["queue"].name == app.conf.task_default_queue


def test_a_change_after_a_run_waits_for_the_window_and_a_burst_costs_one_run(
    integration, enqueued, django_capture_on_commit_callbacks
):
    (user,) = make_users(integration, 1)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.request_sync(user.pk)
    SyncedUser.objects.filter(pk=user.pk).update(sync_requested_at=None)  # the run came and went
    with django_capture_on_commit_callbacks(execute=True):
        results = [tasks.request_sync(user.pk) for _ in range(10)]
    assert results == [True] + [False] * 9
    assert enqueued[0] == (user.pk, 0) and enqueued[1][1] in (4, 5)  # at the window's end
    assert len(enqueued) == 2


def test_a_change_while_the_run_goes_on_is_one_trailing_run_after_it(
    integration, enqueued, django_capture_on_commit_callbacks, monkeypatch
):
    (user,) = make_users(integration, 1)
    calendar, onex = InMemoryCalendar(), InMemoryAbsences()
    monkeypatch.setattr(sync.providers, "provider_for", lambda integration: calendar)
    monkeypatch.setattr(sync, "default_writer", lambda *args, **kwargs: onex)
    changes = []

    def fetch_during_a_change(*args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            changes.extend(tasks.request_sync(user.pk) for _ in range(3))
        return []

    monkeypatch.setattr(calendar, "fetch", fetch_during_a_change)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sync_mailbox.apply(args=(user.pk,)).get() == "ok"
    assert changes == [False, False, False]  # no second message while it runs
    assert len(enqueued) == 1 and enqueued[0][0] == user.pk and enqueued[0][1] in (4, 5)
    user.refresh_from_db()
    assert user.sync_started_at is None and user.sync_requested_at > timezone.now()


def test_a_trailing_request_of_a_run_that_died_is_found_by_the_sweeper(integration, enqueued):
    (user,) = make_users(integration, 1)
    started = timezone.now() - claims.lease() - timedelta(seconds=61)
    assert claims.claim(user, started)
    SyncedUser.objects.filter(pk=user.pk).update(sync_renewed_at=timezone.now())
    assert tasks.request_sync(user.pk) is False and stamp(user) == started
    SyncedUser.objects.filter(pk=user.pk).update(sync_renewed_at=started)  # the worker died
    sync.sweep()  # frees the claim; the stamp stays
    found = sync.sweep(now=started + timedelta(minutes=1, seconds=30))
    assert found.lost == [[user.pk]]


def test_a_mailbox_held_by_a_run_gets_a_trailing_request_not_a_busy_retry(
    integration, enqueued, django_capture_on_commit_callbacks
):
    (user,) = make_users(integration, 1)
    started = timezone.now()
    assert claims.claim(user, started)
    assert sync.mark_trailing(user.pk) is True
    assert stamp(user) == started
    claims.release(user, started)
    assert sync.mark_trailing(user.pk) is False  # nobody holds it: the caller runs it
    assert sync.take_trailing([user.pk], started, started) == [user.pk]
    assert sync.take_trailing([user.pk], started, started) == []  # only once


def test_a_change_to_a_mailbox_waiting_in_a_resync_runs_at_once(
    integration, enqueued, django_capture_on_commit_callbacks, monkeypatch
):
    users = make_users(integration, 2)
    monkeypatch.setattr(tasks.sync_mailboxes, "apply_async", lambda *a, **kw: None)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.request_syncs(SyncedUser.objects.all(), countdown=40)  # due 40 s ahead
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_sync(users[0].pk) is True
    assert enqueued == [(users[0].pk, 0)]


def test_a_chunk_run_hands_a_change_that_came_meanwhile_to_the_interactive_queue(
    integration, enqueued, django_capture_on_commit_callbacks
):
    users = make_users(integration, 3)
    started = timezone.now()
    for user in users:
        assert claims.claim(user, started)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_interactive([users[0].pk, users[2].pk]) == 0
    for user in users:
        claims.release(user, started)
    assert sorted(sync.take_trailing([u.pk for u in users], started, started)) == [
        users[0].pk,
        users[2].pk,
    ]


@pytest.mark.parametrize("count", [1, 20])
def test_a_webhook_post_costs_the_same_queries_for_one_or_many_mailboxes(
    client, integration, enqueued, django_capture_on_commit_callbacks, count
):
    make_users(integration, count)
    with CaptureQueriesContext(connection) as queries:
        with django_capture_on_commit_callbacks(execute=True):
            assert notify(client, range(count)).status_code == 202
    assert len(enqueued) == count and {countdown for _, countdown in enqueued} == {0}
    # Verify all subscriptions, note the notification, stamp all mailboxes, read back which.
    assert len(queries) == 4, [q["sql"][:80] for q in queries]

    with CaptureQueriesContext(connection) as queries:
        with django_capture_on_commit_callbacks(execute=True):
            assert notify(client, range(count)).status_code == 202
    assert len(enqueued) == count  # all pending: nothing more to enqueue
    assert len(queries) == 3  # the notification was noted a moment ago: one UPDATE less
