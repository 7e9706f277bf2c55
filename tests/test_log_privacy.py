"""The JSON logs of a full sync hold no email, subject, name or secret, and every line says
which request or task and which integration it belongs to (issue 16).

A directory import, then an Exchange Online and an Exchange On Prem integration synced through
their sandboxes (Celery tasks run eagerly, so the task signals fire): bookings with subjects,
private ones, a mailbox the provider does not know, a throttled Graph read, a One X
subscription that is gone, a bug whose exception names a mailbox, a Graph change
notification with a good and a wrong client state. Every line the production formatter
writes at the production level is then checked.
"""

import io
import json
import logging
from datetime import UTC, timedelta
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from calendarsync import logcontext, planning, tasks
from calendarsync.models import Integration, MailboxSubscription, SyncedUser
from onex import directory
from onex.models import Subscription
from sandbox.ews import DEFAULT_PASSWORD
from sandbox.m365.server import DEFAULT_CLIENT_SECRET
from tests.m365_sandbox import connected_graph_integration
from tests.onex_sandbox import CLIENT_SECRET

pytestmark = pytest.mark.django_db

GRAPH_USERS = ["anna.andersson@demo.se", "bjorn.berg@demo.se", "cecilia.carlsson@demo.se"]
GRAPH_UNKNOWN = "david.dahl@demo.se"  # in One X, not in the tenant: mailbox not found
EWS_USERS = ["eva.ek@demo.se"]
EWS_UNKNOWN = "fredrik.forsberg@demo.se"  # not on the Exchange server
CRASHES = "bjorn.berg@demo.se"  # planning raises an error that names the mailbox
TENANT_NAME = "Loggprov Aktiebolag"
CLIENT_STATE = "client-state-that-must-stay-secret-0123456789"
SUBJECTS = [
    "Kundmöte med Volvo",
    "Tandläkare Privat",
    "Hemlig omorganisation",
    "Lönesamtal Bertil",
    "Styrgrupp EWS",
    "Privat EWS läkare",
]


@pytest.fixture
def json_log():
    """Every record at the production level, through the production JSON formatter and the
    context filter exactly as LOGGING configures them; the lines are parsed at the end."""
    config = dict(django_settings.LOGGING["formatters"]["json"])
    config.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logcontext.JsonFormatter(**config))
    handler.addFilter(logcontext.ContextFilter())
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
    root.setLevel(saved)


def soon(days, hour):
    return (timezone.now() + timedelta(days=days)).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )


def graph_time(moment):
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


@pytest.fixture
def population(json_log, company, onex_sandbox, m365, on_prem, ews, push_receiver, settings):
    """Demo AB's One X directory imported (logged too), both integrations with bookings."""
    settings.PUBLIC_BASE_URL = "https://127.0.0.1:9"  # Graph's subscription validation fails
    settings.EWS_NOTIFICATION_URL = push_receiver.url
    assert directory.import_company(company).ok
    tenant = m365.add_tenant(TENANT_NAME, users=GRAPH_USERS)
    graph = connected_graph_integration(company, tenant)
    ews_integration = on_prem(company, EWS_USERS[0])
    Integration.objects.filter(pk=ews_integration.pk).update(all_meetings_private=False)
    for mailbox in GRAPH_USERS + [GRAPH_UNKNOWN]:
        SyncedUser.objects.create(
            integration=graph, subscription=Subscription.objects.get(email=mailbox), email=mailbox
        )
    for mailbox in EWS_USERS + [EWS_UNKNOWN]:
        SyncedUser.objects.create(
            integration=ews_integration,
            subscription=Subscription.objects.get(email=mailbox),
            email=mailbox,
        )
    for n, mailbox in enumerate(GRAPH_USERS):
        for subject, hour, sensitivity in (
            (SUBJECTS[n], 9, "normal"),
            (SUBJECTS[1], 13, "private"),
        ):
            m365.create_event(
                mailbox,
                tenant=tenant,
                subject=subject,
                start=graph_time(soon(1 + n, hour)),
                end=graph_time(soon(1 + n, hour + 1)),
                showAs="busy",
                sensitivity=sensitivity,
            )
    for subject, hour, sensitivity in ((SUBJECTS[4], 10, "Normal"), (SUBJECTS[5], 14, "Private")):
        ews.create_event(
            EWS_USERS[0],
            subject=subject,
            start=soon(1, hour).astimezone(UTC).isoformat(),
            end=soon(1, hour + 1).astimezone(UTC).isoformat(),
            sensitivity=sensitivity,
        )
    # Cecilia's One X subscription is gone: her entries are refused (One X's error path).
    onex_sandbox.delete_subscription("demo-ab", "sub-cecilia")
    return graph, ews_integration


def forbidden_strings(m365, onex_sandbox):
    people = Subscription.objects.all()
    words = [TENANT_NAME, "Demo AB", CLIENT_STATE, DEFAULT_PASSWORD, DEFAULT_CLIENT_SECRET]
    words += [CLIENT_SECRET, django_settings.MS_CLIENT_SECRET, django_settings.ONEX_CLIENT_SECRET]
    words += SUBJECTS
    for person in people:
        words += [person.email, person.email.lower(), quote(person.email), quote(person.email, "")]
        words += [person.display_name] if person.display_name else []
    words += list(getattr(m365.sandbox, "tokens", {}))  # Graph access tokens
    words += list(onex_sandbox.server.token_clients)  # One X access tokens
    return {word for word in words if word}


def graph_notification(subscription, client_state):
    return {
        "subscriptionId": subscription.provider_subscription_id,
        "changeType": "updated",
        "resource": "Users/u/Events/e",
        "clientState": client_state,
        "tenantId": subscription.synced_user.integration.tenant_id,
    }


def run_everything(population, m365, client, monkeypatch, capture):
    graph, _ews = population
    m365.throttle("calendarView", count=1, retry_after=1)
    real_plan = planning.plan_for_synced_user

    def plan(user, items, **kw):
        if user.email == CRASHES:
            raise ValueError(f"no plan for {user.email}")  # a bug whose message names the mailbox
        return real_plan(user, items, **kw)

    monkeypatch.setattr(planning, "plan_for_synced_user", plan)
    with capture(execute=True):
        tasks.start_syncing(SyncedUser.objects.all())
    monkeypatch.setattr(planning, "plan_for_synced_user", real_plan)

    anna = SyncedUser.objects.get(email=GRAPH_USERS[0])
    subscription, _ = MailboxSubscription.objects.update_or_create(
        synced_user=anna,
        defaults={
            "provider_subscription_id": "log-test-subscription",
            "client_state": CLIENT_STATE,
            "expires_at": timezone.now() + timedelta(days=2),
        },
    )
    SyncedUser.objects.filter(pk=anna.pk).update(sync_requested_at=None)
    url = reverse("calendarsync:graph_notifications")
    with capture(execute=True):
        wrong = json.dumps({"value": [graph_notification(subscription, "a-wrong-state")]})
        refused = client.post(url, wrong, content_type="application/json")
        assert refused.status_code == 403
        right = json.dumps({"value": [graph_notification(subscription, CLIENT_STATE)]})
        assert client.post(url, right, content_type="application/json").status_code == 202
    return refused


def test_a_full_sync_logs_no_email_subject_name_or_secret(
    population,
    m365,
    onex_sandbox,
    client,
    monkeypatch,
    json_log,
    eager_celery,
    django_capture_on_commit_callbacks,
):
    refused = run_everything(
        population, m365, client, monkeypatch, django_capture_on_commit_callbacks
    )
    # The sync really ran, failures included: the checks below are about real lines.
    states = dict(SyncedUser.objects.values_list("email", "state"))
    ok = {GRAPH_USERS[0], EWS_USERS[0]}
    assert {email for email, state in states.items() if state == SyncedUser.State.OK} == ok
    assert {e for e, state in states.items() if state == SyncedUser.State.ERROR} == (
        set(states) - ok
    )
    assert any(e["note"] == SUBJECTS[0] for e in onex_sandbox.absences("demo-ab"))

    lines = json_log.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) > 10
    for record in records:
        assert {"time", "level", "logger", "event", "message"} <= record.keys(), record
        assert {"request_id", "task_id", "integration"} <= record.keys(), record
    events = {record["event"] for record in records}
    assert "Sync of synced user %s failed" in events  # the bug, with its traceback
    crash = next(r for r in records if r["event"] == "Sync of synced user %s failed")
    assert "ValueError" in crash["exc_info"]
    assert "Subscription for user %s failed: %s" in events
    assert "Directory import of %s: %s" in events
    assert "Graph notification: wrong clientState for %s" in events
    assert any(r["logger"].startswith("calendarsync.providers.graph") for r in records)

    # Each line of a task names it; a sync's lines name their integration.
    tasks_lines = [r for r in records if r["logger"].startswith("celery.app.trace")]
    assert tasks_lines and all(r["task_id"] for r in tasks_lines)
    codes = {str(i.code) for i in Integration.objects.all()}
    synced = [r for r in records if r["logger"] == "calendarsync.sync"]
    assert synced and all(r["integration"] in codes for r in synced)
    # A request's lines carry the id it answered with, also Django's own after the view.
    refusal = [r for r in records if r["request_id"] == refused["X-Request-ID"]]
    assert {r["event"] for r in refusal} == {
        "Graph notification: wrong clientState for %s",
        "%s: %s",  # django.request's "Forbidden: /…"
    }
    assert "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s" in events
    assert any("sync_mailbox[" in r["message"] for r in records)  # the notification's run

    text = "\n".join(lines)
    found = sorted(word for word in forbidden_strings(m365, onex_sandbox) if word in text)
    assert not found, f"the logs hold {found}"
    assert "@demo.se" not in text and "%40demo.se" not in text
