"""Exchange Online end to end: M365 sandbox → webhook → Celery worker → One X sandbox.

The worker is a real `celery -A mss worker` process on Redis, sharing this test's database
(a file on SQLite, the test database on PostgreSQL); the product's web side is a live server
Graph's webhook deliveries reach over HTTP.
"""

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from calendarsync import tasks
from calendarsync.models import Activity, Booking, Integration, MailboxSubscription, SyncedUser
from calendarsync.sync import sync_mailbox
from mss.celery import worker_queues
from onex.models import Subscription
from sandbox.m365 import signin
from tests.m365_sandbox import body_requests, connected_graph_integration, selected_fields, wait_for

REPO = Path(__file__).resolve().parent.parent
ANNA = "anna.andersson@demo.se"
ONEX_COMPANY = "demo-ab"  # the One X sandbox's demo company


def graph_time(moment):
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        name = str(db["NAME"])
        assert "memory" not in name, "the worker needs a file database"
        return f"sqlite:///{name}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def redis_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis://") else "redis://127.0.0.1:6379/12"


def _reset_celery_connections(app):
    # Drop this app's references only: kombu shares pools per broker URL across apps.
    app._pool = None
    app.__dict__.pop("amqp", None)  # rebuilt from the current conf on next use


@pytest.fixture
def company_db(company):
    Subscription.objects.create(
        company=company, onex_id="sub-anna", email=ANNA, display_name="Anna", has_diversion=True
    )
    return company


@pytest.fixture
def tenant(m365):
    """A tenant of our own whose only mailbox (Anna's) starts empty."""
    return m365.add_tenant("E2E AB", users=[ANNA])


@pytest.fixture
def graph_integration(company_db, tenant):
    return connected_graph_integration(company_db, tenant)


@pytest.fixture
def worker_env():
    """More environment for the worker process (tests of other providers add theirs)."""
    return {}


@pytest.fixture
def worker(transactional_db, https_live_server, m365, onex_sandbox, settings, tmp_path, worker_env):
    from mss.celery import app

    queue = f"mss-e2e-{uuid.uuid4().hex[:10]}"
    # Graph delivers to https only: the live server behind its https front, whose sign-in
    # callbacks the app registration lists (Entra ignores the port of http loopback URIs only).
    settings.PUBLIC_BASE_URL = https_live_server.url
    m365.register_redirect_uris(signin.redirect_uris_for(https_live_server.url))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "tests.e2e_settings",
        "MSS_E2E_QUEUE": queue,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": redis_url(),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "MSS_VAR_DIR": str(tmp_path / "worker-var"),
        "SECRET_KEY": settings.SECRET_KEY,
        "MSS_ENCRYPTION_KEYS": ",".join(settings.MSS_ENCRYPTION_KEYS),
        "MS_LOGIN_URL": settings.MS_LOGIN_URL,
        "MS_GRAPH_URL": settings.MS_GRAPH_URL,
        "MS_CA_BUNDLE": settings.MS_CA_BUNDLE,
        "MS_CLIENT_ID": settings.MS_CLIENT_ID,
        "MS_CLIENT_SECRET": settings.MS_CLIENT_SECRET,
        "ONEX_API_URL": settings.ONEX_API_URL,
        "ONEX_CLIENT_ID": settings.ONEX_CLIENT_ID,
        "ONEX_CLIENT_SECRET": settings.ONEX_CLIENT_SECRET,
        "PUBLIC_BASE_URL": https_live_server.url,
        **worker_env,
    }
    log_path = tmp_path / "worker.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "mss",
            "worker",
            "-l",
            "info",
            "-Q",
            worker_queues(queue),
            "-n",
            f"{queue}@%h",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    saved = {
        key: app.conf[key]
        for key in (
            "broker_url",
            "task_default_queue",
            "broker_transport_options",
            "task_always_eager",
        )
    }
    app.conf.update(
        broker_url=redis_url(),
        task_default_queue=queue,
        broker_transport_options={},
        task_always_eager=False,
    )
    _reset_celery_connections(app)
    try:
        wait_for(
            lambda: "ready." in log_path.read_text() or process.poll() is not None,
            60,
            message="the Celery worker",
        )
        assert process.poll() is None, log_path.read_text()[-3000:]
        yield log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        app.conf.update(saved)
        _reset_celery_connections(app)


def entries(onex_sandbox):
    return [e for e in onex_sandbox.absences(ONEX_COMPANY) if e["subscriptionId"] == "sub-anna"]


def add_anna(graph_integration):
    """Add Anna's mailbox and wait until the worker has subscribed it (Graph validates the
    webhook against the live server)."""
    user = SyncedUser.objects.create(
        integration=graph_integration,
        subscription=Subscription.objects.get(onex_id="sub-anna"),
        email=ANNA,
    )
    tasks.start_syncing(SyncedUser.objects.filter(pk=user.pk))
    wait_for(
        lambda: MailboxSubscription.objects.filter(synced_user=user).exists(),
        60,
        message="the Graph subscription",
    )
    return user


@pytest.mark.e2e
def test_an_outlook_change_reaches_one_x_through_a_real_webhook_and_worker(
    worker, m365, onex_sandbox, graph_integration, tenant
):
    add_anna(graph_integration)
    assert len(m365.subscriptions()) == 1

    start = (timezone.now() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    event = m365.create_event(
        ANNA,
        tenant,
        subject="Kundmöte",
        start=graph_time(start),
        end=graph_time(start + timedelta(hours=1)),
        showAs="busy",
    )
    created = wait_for(lambda: entries(onex_sandbox), 60, message="the One X entry")
    assert len(created) == 1
    assert created[0]["start"].startswith(start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))
    delivered = [d for d in m365.deliveries() if d["kind"] == "notification"]
    assert delivered and delivered[0]["status"] == 202

    moved = start + timedelta(hours=3)
    m365.update_event(
        ANNA,
        event["id"],
        tenant,
        start=graph_time(moved),
        end=graph_time(moved + timedelta(hours=1)),
    )
    expected = moved.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    wait_for(
        lambda: [e for e in entries(onex_sandbox) if e["start"].startswith(expected)],
        60,
        message="the moved One X entry",
    )
    assert len(entries(onex_sandbox)) == 1

    m365.delete_event(ANNA, event["id"], tenant)
    wait_for(lambda: not entries(onex_sandbox), 60, message="the One X entry to go")
    assert not body_requests(m365.requests())


# ----- privacy and consent through the whole pipeline (sync in this process, real HTTP)


@pytest.fixture
def anna(graph_integration, onex_sandbox, m365, company_db):
    return SyncedUser.objects.create(
        integration=graph_integration,
        subscription=Subscription.objects.get(onex_id="sub-anna"),
        email=ANNA,
    )


def add(m365, tenant, subject, start, **extra):
    return m365.create_event(
        ANNA,
        tenant,
        subject=subject,
        start=graph_time(start),
        end=graph_time(start + timedelta(hours=1)),
        **extra,
    )


def soon(hours):
    return (timezone.now() + timedelta(days=1, hours=hours)).replace(
        minute=0, second=0, microsecond=0
    )


def test_a_private_event_never_reaches_one_x_and_no_body_is_requested(
    m365, onex_sandbox, anna, tenant
):
    add(m365, tenant, "Tandläkare", soon(1), sensitivity="private")
    add(m365, tenant, "Hemligt", soon(3), sensitivity="confidential")
    add(m365, tenant, "Kundmöte", soon(5))
    assert sync_mailbox(anna).status == "ok"
    written = entries(onex_sandbox)
    assert len(written) == 1
    assert written[0]["start"].startswith(soon(5).astimezone(UTC).strftime("%Y-%m-%dT%H"))
    assert all(e["note"] not in ("Tandläkare", "Hemligt") for e in written)
    assert not body_requests(m365.requests())
    reads = [r for r in m365.graph_requests() if "calendarView" in r["path"]]
    assert reads and all("subject" in selected_fields(r) for r in reads)  # subjects allowed here


def test_with_all_meetings_private_no_subject_is_requested_and_no_note_written(
    m365, onex_sandbox, anna, tenant, graph_integration
):
    Integration.objects.filter(pk=graph_integration.pk).update(all_meetings_private=True)
    anna.refresh_from_db()
    add(m365, tenant, "Kundmöte med Volvo", soon(1))
    add(m365, tenant, "Lunch", soon(4))
    m365.clear_requests()
    assert sync_mailbox(anna).status == "ok"
    written = entries(onex_sandbox)
    assert len(written) == 2 and all(not e["note"] for e in written)
    reads = [r for r in m365.graph_requests() if "calendarView" in r["path"]]
    assert reads and all("subject" not in selected_fields(r) for r in reads)
    assert not body_requests(m365.requests())


def test_a_revoked_consent_pauses_syncing_without_piling_up_errors_and_consent_resumes(
    m365, onex_sandbox, anna, tenant, graph_integration
):
    add(m365, tenant, "Kundmöte", soon(2))
    m365.revoke(tenant, code="7000229")
    first = sync_mailbox(anna)
    assert first.status == "failed"
    graph_integration.refresh_from_db()
    assert graph_integration.status == Integration.Status.NEEDS_ATTENTION
    assert graph_integration.attention == Integration.Attention.CONSENT_REVOKED
    assert not graph_integration.syncing
    m365.clear_requests()
    for _ in range(5):
        anna.refresh_from_db()
        assert sync_mailbox(anna).status == "inactive"
    assert m365.requests() == []  # paused: not even a token request
    assert Activity.objects.filter(integration=graph_integration, level="error").count() <= 2
    assert Activity.objects.filter(event="consent_revoked").count() == 1
    assert entries(onex_sandbox) == []

    m365.consent(tenant)  # the admin consents again (the consent view sets this status)
    Integration.objects.filter(pk=graph_integration.pk).update(status=Integration.Status.CONNECTED)
    outcome = sync_mailbox(SyncedUser.objects.get(pk=anna.pk))
    assert outcome.status == "ok", outcome
    assert len(entries(onex_sandbox)) == 1


@pytest.mark.e2e
def test_a_revoked_consent_pauses_the_worker_and_consenting_again_catches_up(
    worker, m365, onex_sandbox, graph_integration, tenant, admin_client
):
    from calendarsync.providers.graph.signin import GLOBAL_ADMINISTRATOR
    from tests.m365_sandbox import callback_path, follow_consent

    add_anna(graph_integration)
    m365.revoke(tenant)  # Graph sends reauthorizationRequired; reauthorizing fails
    wait_for(
        lambda: Integration.objects.get(pk=graph_integration.pk).attention == "consent_revoked",
        60,
        message="consent_revoked",
    )
    assert Integration.objects.get(pk=graph_integration.pk).status == "needs_attention"
    start = (timezone.now() + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    m365.create_event(
        ANNA,
        tenant,
        subject="Under pausen",
        start=graph_time(start),
        end=graph_time(start + timedelta(hours=1)),
    )
    wait_for(
        lambda: [d for d in m365.deliveries() if d["kind"] == "notification"],
        30,
        message="the notification",
    )
    time.sleep(8)  # longer than the debounce: a sync would have run by now
    assert entries(onex_sandbox) == []
    assert Activity.objects.filter(event="consent_revoked").count() == 1
    assert not Activity.objects.filter(event="sync_failed").exists()

    # The tenant's own Global Administrator signs in to Microsoft, then consents again.
    m365.control(
        "POST",
        f"tenants/{tenant}/users",
        {"mail": "it@e2e.se", "displayName": "IT", "wids": [GLOBAL_ADMINISTRATOR]},
    )
    m365.signin(mode="auto", user="it@e2e.se")
    m365.knobs(consent={"mode": "accept"})
    begin = reverse("calendarsync:graph_consent_start", args=[graph_integration.code])
    signed_in = callback_path(follow_consent(m365, admin_client.get(begin)["Location"]))
    consent = admin_client.get(*signed_in)["Location"]
    assert consent.startswith(f"{m365.url}/{tenant}/v2.0/adminconsent")
    path, query = callback_path(follow_consent(m365, consent))
    admin_client.get(path, query)
    assert Integration.objects.get(pk=graph_integration.pk).status == "connected"
    caught_up = wait_for(lambda: entries(onex_sandbox), 60, message="the catch-up sync")
    assert caught_up[0]["start"].startswith(start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))


# ----- an integration's life: Aktiv off and on, removal (UI and Django admin)


def settings_form(integration, **changes):
    data = {
        "name": integration.name,
        "days_ahead": str(integration.days_ahead),
        "active": "on" if integration.active else None,
        "plugin_enabled": "on",
        "all_meetings_private": None,
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def anna_with_an_entry(graph_integration, m365, onex_sandbox, tenant):
    """Anna subscribed and synced by the worker, with one meeting in One X."""
    add_anna(graph_integration)
    add(m365, tenant, "Kundmöte", soon(2))
    tasks.request_syncs(graph_integration.users.all(), countdown=0)
    wait_for(lambda: entries(onex_sandbox), 60, message="the first One X entry")
    assert len(m365.subscriptions()) == 1


@pytest.mark.e2e
def test_aktiv_off_removes_the_entries_and_subscriptions_and_aktiv_on_brings_them_back(
    worker, m365, onex_sandbox, graph_integration, tenant, admin_client
):
    anna_with_an_entry(graph_integration, m365, onex_sandbox, tenant)
    url = reverse("calendarsync:integration", args=[graph_integration.code])

    admin_client.post(url, settings_form(graph_integration, active=None))
    wait_for(lambda: not entries(onex_sandbox), 60, message="the One X entries to go")
    wait_for(lambda: not m365.subscriptions(), 60, message="the Graph subscriptions to go")
    paused = Integration.objects.get(pk=graph_integration.pk)
    assert (paused.status, paused.active) == ("paused", False)
    assert not Booking.objects.exists() and not MailboxSubscription.objects.exists()

    admin_client.post(url, settings_form(paused, active="on"))
    wait_for(lambda: len(m365.subscriptions()) == 1, 60, message="a new Graph subscription")
    wait_for(lambda: entries(onex_sandbox), 60, message="the entries resynced")
    assert Integration.objects.get(pk=graph_integration.pk).status == "connected"

    # A change made in Outlook now reaches One X within 10 s.
    start = soon(6)
    changed_at = time.monotonic()
    add(m365, tenant, "Efter paus", start)
    expected = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    wait_for(
        lambda: [e for e in entries(onex_sandbox) if e["start"].startswith(expected)],
        10,
        message="the new booking in One X within 10 s",
    )
    assert time.monotonic() - changed_at <= 10


def assert_nothing_left(m365, onex_sandbox):
    assert entries(onex_sandbox) == []
    assert m365.subscriptions() == []
    assert not Integration.objects.exists()
    assert not SyncedUser.objects.exists() and not Booking.objects.exists()
    assert not MailboxSubscription.objects.exists()
    assert not SyncedUser.objects.filter(email=ANNA).exists()


@pytest.mark.e2e
def test_removing_an_integration_in_the_ui_leaves_nothing_behind(
    worker, m365, onex_sandbox, graph_integration, tenant, en_client
):
    anna_with_an_entry(graph_integration, m365, onex_sandbox, tenant)
    url = reverse("calendarsync:integration_remove", args=[graph_integration.code])
    confirm = en_client.get(url).content.decode()
    assert "1 user and their email address" in confirm and "1 entry in One X" in confirm
    response = en_client.post(url)
    assert response["Location"] == reverse("calendarsync:overview")
    overview = en_client.get(response["Location"]).content.decode()
    assert "Exchange Online is being removed." in overview
    wait_for(lambda: not Integration.objects.exists(), 60, message="the removal task")
    assert_nothing_left(m365, onex_sandbox)
    assert Activity.objects.filter(event="integration_removed", integration=None).count() == 1


@pytest.mark.e2e
def test_deleting_an_integration_in_django_admin_takes_the_same_path(
    worker, m365, onex_sandbox, graph_integration, tenant, django_user_model
):
    anna_with_an_entry(graph_integration, m365, onex_sandbox, tenant)
    staff = Client()
    staff.force_login(
        django_user_model.objects.create_superuser("support@telenor.se", password="pw-staff-1")
    )
    url = reverse("admin:calendarsync_integration_delete", args=[graph_integration.pk])
    assert staff.post(url, {"post": "yes"}).status_code == 302
    wait_for(lambda: not Integration.objects.exists(), 60, message="the removal task")
    assert_nothing_left(m365, onex_sandbox)
