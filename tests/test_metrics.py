"""Prometheus metrics at /metrics: who may read them, what a sync, a notification and the
database's state show there, that no label carries an email or a subject, and that counters
add up across processes in prometheus_client's multiprocess mode."""

import json
import os
import subprocess
import sys
import urllib.request
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from calendarsync.models import Integration, MailboxSubscription, SyncedUser
from calendarsync.sync import sync_mailbox
from mss import metrics
from onex.budget import Lane, LocalBudget, RedisBudget, budget_for
from onex.models import Subscription
from tests.m365_sandbox import DEMO_TENANT, connected_graph_integration

REPO = Path(__file__).resolve().parent.parent
ANNA = "anna.andersson@demo.se"  # sub-anna in the One X sandbox's Demo AB
BJORN = "bjorn.berg@demo.se"  # sub-bjorn there
SUBJECTS = ("Kundmöte Volvo", "Styrgrupp Ekonomi")


def scrape(client, **headers) -> dict:
    """/metrics as {(sample name, frozenset of labels): value}."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    return parse(response.content.decode())


def parse(text: str) -> dict:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before, after, name, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def at(hours):
    return (timezone.now() + timedelta(days=1, hours=hours)).replace(
        minute=0, second=0, microsecond=0
    )


# ----- who may read them


def test_it_is_open_in_development_without_a_session_or_cookie(client, db, settings):
    settings.PRODUCTION = False
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert not response.cookies
    text = response.content.decode()
    assert "mss_sync_waiting_mailboxes" in text and "mss_integrations" in text
    assert "django_http_requests_total_by_method_total" in text  # django-prometheus's own


def test_it_is_off_in_production_until_a_token_is_set(client, db, settings):
    settings.PRODUCTION = True
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_it_needs_the_right_bearer_token_in_production(client, db, settings, caplog):
    settings.PRODUCTION = True
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-tokeX")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-scrape-token").status_code == 401
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert right.status_code == 200 and b"mss_integrations" in right.content
    assert not right.cookies
    assert "s3cret-scrape-tok" not in caplog.text


def test_it_answers_get_only(client, db):
    assert client.post("/metrics").status_code == 405


# ----- what the database says, read at scrape time


def test_it_shows_waiting_mailboxes_subscriptions_and_integrations(
    client, integration, subscription
):
    now = timezone.now()
    waiting = SyncedUser.objects.create(
        integration=integration,
        subscription=subscription,
        email="anna@demo.se",
        sync_requested_at=now - timedelta(minutes=5),
    )
    later = Subscription.objects.create(
        company=integration.company, onex_id="sub-2", email="b@demo.se"
    )
    SyncedUser.objects.create(  # a chunk spread ahead: requested, not yet due
        integration=integration,
        subscription=later,
        email="b@demo.se",
        sync_requested_at=now + timedelta(minutes=3),
    )
    MailboxSubscription.objects.create(
        synced_user=waiting, provider_subscription_id="s-1", expires_at=now + timedelta(hours=1)
    )
    samples = scrape(client)
    assert value(samples, "mss_sync_waiting_mailboxes") == 1
    assert 300 <= value(samples, "mss_sync_oldest_request_age_seconds") < 400
    assert value(samples, "mss_subscriptions", provider="graph", state="expiring") == 1
    assert value(samples, "mss_subscriptions", provider="graph", state="active") == 0
    assert value(samples, "mss_integrations", kind="graph", status="connected") == 1
    assert value(samples, "mss_integrations", kind="ews", status="connected") == 0


def test_nothing_waiting_is_an_age_of_zero(client, db):
    assert value(scrape(client), "mss_sync_oldest_request_age_seconds") == 0


def test_the_rate_budget_tells_the_units_each_lane_has_left():
    budget = LocalBudget(10, window_seconds=60, interactive_share=0.2)
    assert budget.units_left() == {Lane.INTERACTIVE: 10, Lane.BULK: 9}  # reserve_min of 1
    budget.acquire(Lane.INTERACTIVE, max_wait=0)
    budget.acquire(Lane.BULK, max_wait=0)
    # Two used; an interactive request in the window grows bulk's reserve to two.
    assert budget.units_left() == {Lane.INTERACTIVE: 8, Lane.BULK: 6}
    budget.observe({}, retry_after=30)  # a 429 pauses every lane
    assert budget.units_left() == {Lane.INTERACTIVE: 0, Lane.BULK: 0}


def test_the_shared_budget_in_redis_is_read_without_taking_a_unit(client, db, settings):
    url = os.environ.get("CACHE_URL", "rediscache://127.0.0.1:6379/9")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url.replace("rediscache://", "redis://"),
        }
    }
    settings.ONEX_API_URL = "http://127.0.0.1:9/metrics-test"
    settings.ONEX_RATE_LIMIT_PER_MINUTE = 50
    budget = budget_for(settings.ONEX_API_URL, settings.ONEX_CLIENT_ID)
    assert isinstance(budget, RedisBudget)
    budget.clear()
    try:
        budget.acquire(Lane.BULK, max_wait=0)
        for _ in range(3):  # reading twice changes nothing
            samples = scrape(client)
        assert value(samples, "mss_onex_budget_units_left", lane="interactive") == 49
        assert value(samples, "mss_onex_budget_limit") == 50
    finally:
        budget.clear()


# ----- what a sync and a notification count


@pytest.fixture
def anna(on_prem, onex_sandbox, company):
    integration = on_prem(company, ANNA, name="Anna Andersson")
    Integration.objects.filter(pk=integration.pk).update(all_meetings_private=False)
    sub = Subscription.objects.create(
        company=company, onex_id="sub-anna", email=ANNA, display_name="Anna", has_diversion=True
    )
    return SyncedUser.objects.create(integration=integration, subscription=sub, email=ANNA)


def add_ews_booking(ews, subject, start):
    return ews.create_event(
        ANNA,
        subject=subject,
        start=start.astimezone(UTC).isoformat(),
        end=(start + timedelta(hours=1)).astimezone(UTC).isoformat(),
    )


def test_a_sync_through_the_sandboxes_counts_the_sync_and_its_one_x_operations(
    client, ews, onex_sandbox, anna
):
    for n, subject in enumerate(SUBJECTS):
        add_ews_booking(ews, subject, at(2 + 3 * n))
    before = scrape(client)
    assert sync_mailbox(SyncedUser.objects.get(pk=anna.pk)).status == "ok"
    after = scrape(client)
    assert grew(before, after, "mss_syncs_total", kind="change", outcome="ok") == 1
    assert grew(before, after, "mss_sync_duration_seconds_count", kind="change") == 1
    assert grew(before, after, "mss_onex_operations_total", op="put", result="ok") == 2
    assert grew(before, after, "mss_provider_http_responses_total", provider="ews", status="200")


def test_ews_server_busy_counts_the_wait_it_asked_for(client, ews, anna):
    add_ews_booking(ews, SUBJECTS[0], at(2))
    ews.knobs(server_busy={"count": 1, "back_off_ms": 200})
    before = scrape(client)
    assert sync_mailbox(SyncedUser.objects.get(pk=anna.pk)).status == "ok"
    after = scrape(client)
    waits = "mss_provider_throttle_wait_seconds"
    assert grew(before, after, f"{waits}_count", provider="ews") == 1
    assert grew(before, after, f"{waits}_sum", provider="ews") == pytest.approx(0.2)


@pytest.fixture
def bjorn(m365, onex_sandbox, company):
    """A Graph mailbox on the M365 sandbox, with one booking that has a subject."""
    tenant = m365.add_tenant("Metrics AB", users=[BJORN])
    graph = connected_graph_integration(company, tenant)
    start = at(4)
    m365.create_event(
        BJORN,
        tenant,
        subject=SUBJECTS[0],
        start=graph_time(start),
        end=graph_time(start + timedelta(hours=1)),
        showAs="busy",
    )
    sub = Subscription.objects.create(company=company, onex_id="sub-bjorn", email=BJORN)
    return SyncedUser.objects.create(integration=graph, subscription=sub, email=BJORN)


def graph_time(moment):
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def test_no_label_carries_an_email_or_a_subject(client, ews, anna, bjorn):
    for n, subject in enumerate(SUBJECTS):
        add_ews_booking(ews, subject, at(2 + 3 * n))
    assert sync_mailbox(SyncedUser.objects.get(pk=anna.pk)).status == "ok"
    assert sync_mailbox(SyncedUser.objects.get(pk=bjorn.pk)).status == "ok"
    text = client.get("/metrics").content.decode()
    samples = parse(text)
    assert value(samples, "mss_provider_http_responses_total", provider="graph", status="200")
    labels = {v for (_name, pairs) in samples for _key, v in pairs}
    assert labels and not [v for v in labels if "@" in v]
    tenant = bjorn.integration.tenant_id
    for word in (*SUBJECTS, "Kundmöte", "Metrics AB", "Demo AB", "demo.se", tenant):
        assert word not in text


def test_graph_throttling_counts_the_429_and_the_wait(client, m365, bjorn):
    m365.throttle("calendarView", count=1, retry_after=1)
    before = scrape(client)
    assert sync_mailbox(SyncedUser.objects.get(pk=bjorn.pk)).status == "ok"
    after = scrape(client)
    responses = "mss_provider_http_responses_total"
    assert grew(before, after, responses, provider="graph", status="429") == 1
    assert grew(before, after, "mss_provider_throttle_wait_seconds_count", provider="graph") == 1
    assert grew(before, after, "mss_provider_throttle_wait_seconds_sum", provider="graph") == 1


def test_a_webhook_notification_counts_received_and_a_refused_one_refused(
    client, integration, subscription
):
    integration.tenant_id = DEMO_TENANT
    integration.save()
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )
    MailboxSubscription.objects.create(
        synced_user=user,
        provider_subscription_id="graph-sub-1",
        client_state="the-right-client-state",
        expires_at=timezone.now() + timedelta(days=2),
    )

    def post(client_state):
        body = {
            "value": [
                {
                    "subscriptionId": "graph-sub-1",
                    "changeType": "updated",
                    "resource": "Users/u/Events/e",
                    "clientState": client_state,
                    "tenantId": DEMO_TENANT,
                }
            ]
        }
        url = reverse("calendarsync:graph_notifications")
        return client.post(url, json.dumps(body), content_type="application/json")

    before = scrape(client)
    assert post("the-right-client-state").status_code == 202
    middle = scrape(client)
    assert post("forged").status_code == 403
    after = scrape(client)
    received, refused = "mss_notifications_received_total", "mss_notifications_refused_total"
    assert grew(before, middle, received, provider="graph") == 1
    assert grew(before, middle, refused, provider="graph", reason="unproven") == 0
    assert grew(middle, after, received, provider="graph") == 1
    assert grew(middle, after, refused, provider="graph", reason="unproven") == 1
    assert grew(before, after, "mss_notification_answer_seconds_count", provider="graph") == 2


def test_an_ews_notification_that_is_not_one_is_refused_as_a_bad_request(client, db):
    before = scrape(client)
    url = reverse("ews_notifications")
    assert client.post(url, b"<not-soap/>", content_type="text/xml").status_code == 400
    after = scrape(client)
    refused = "mss_notifications_refused_total"
    assert grew(before, after, refused, provider="ews", reason="bad_request") == 1
    assert grew(before, after, "mss_notifications_received_total", provider="ews") == 1


# ----- many processes


COUNT_IN_A_PROCESS = """
import os, sys
from onex import metrics
metrics.THROTTLED.inc(int(sys.argv[1]))
print(os.getpid())
"""


def count_in_a_process(directory, times) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", COUNT_IN_A_PROCESS, str(times)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(done.stdout.strip())


def test_counters_of_several_processes_add_up_in_multiprocess_mode(
    client, db, tmp_path, monkeypatch
):
    pids = [count_in_a_process(tmp_path, 3), count_in_a_process(tmp_path, 2)]
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process
    for pid in pids:
        metrics.mark_process_dead(pid)  # as gunicorn's child_exit does; the counts stay
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape(client)
    assert value(samples, "mss_onex_429_total") == 5
    # The database's state is read by the view itself, in multiprocess mode too.
    assert ("mss_sync_waiting_mailboxes", frozenset()) in samples


def test_a_worker_serves_its_pools_metrics_on_a_port(tmp_path, monkeypatch):
    count_in_a_process(tmp_path, 4)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    server, thread = metrics.serve(0, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics") as answer:
            samples = parse(answer.read().decode())
    finally:
        server.shutdown()
        thread.join(5)
    assert value(samples, "mss_onex_429_total") == 4
    assert ("mss_sync_waiting_mailboxes", frozenset()) not in samples  # the web's to tell
