"""Graph change notifications: the webhook endpoints and the subscriptions behind them."""

import json
import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from calendarsync import removal, tasks
from calendarsync.models import Activity, Integration, MailboxSubscription, SyncedUser
from tests.m365_sandbox import ANNA, DEMO_TENANT, wait_for

NOTIFY = reverse("calendarsync:graph_notifications")
LIFECYCLE = reverse("calendarsync:graph_lifecycle")


@pytest.fixture
def synced_user(integration, subscription):
    integration.tenant_id = DEMO_TENANT
    integration.save()
    subscription.email = ANNA
    subscription.save()
    return SyncedUser.objects.create(integration=integration, subscription=subscription, email=ANNA)


@pytest.fixture
def mailbox_subscription(synced_user):
    return MailboxSubscription.objects.create(
        synced_user=synced_user,
        provider_subscription_id="graph-sub-1",
        client_state="the-right-client-state",
        expires_at=timezone.now() + timedelta(days=2),
    )


def notification(subscription_id="graph-sub-1", client_state="the-right-client-state", **extra):
    return {
        "subscriptionId": subscription_id,
        "changeType": "updated",
        "resource": "Users/u/Events/e",
        "clientState": client_state,
        "tenantId": DEMO_TENANT,
        **extra,
    }


def post(client, url, *notifications):
    return client.post(
        url, json.dumps({"value": list(notifications)}), content_type="application/json"
    )


@pytest.mark.parametrize("url", [NOTIFY, LIFECYCLE])
def test_it_echoes_the_validation_token_as_plain_text(client, url):
    response = client.post(
        url + "?validationToken=Validation%3A+%3Cb%3Etoken%3C%2Fb%3E%26x",
        data=b"",
        content_type="text/plain",
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"Validation: <b>token</b>&x"


def test_it_refuses_get(client):
    assert client.get(NOTIFY).status_code == 405


def test_it_accepts_a_proven_notification_and_requests_one_sync(
    client, mailbox_subscription, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, NOTIFY, notification(), notification(changeType="created"))
    assert response.status_code == 202
    user = SyncedUser.objects.get(pk=mailbox_subscription.synced_user_id)
    assert user.sync_requested_at is not None
    assert len(callbacks) == 1  # two notifications for one mailbox: one sync enqueued
    mailbox_subscription.refresh_from_db()
    assert mailbox_subscription.last_notification_at is not None


def test_it_rejects_a_wrong_client_state_and_never_acts_on_it(
    client, mailbox_subscription, caplog, django_capture_on_commit_callbacks
):
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks() as callbacks:
        response = post(client, NOTIFY, notification(client_state="forged"))
    assert response.status_code == 403
    assert not callbacks
    assert SyncedUser.objects.get(pk=mailbox_subscription.synced_user_id).sync_requested_at is None
    assert "wrong clientState" in caplog.text
    assert "forged" not in caplog.text and "the-right-client-state" not in caplog.text


def test_it_drops_an_unknown_subscription_with_202_so_graph_stops_retrying(
    client, mailbox_subscription, caplog
):
    with caplog.at_level(logging.WARNING):
        response = post(client, NOTIFY, notification(subscription_id="someone-elses"))
    assert response.status_code == 202
    assert "unknown subscription" in caplog.text
    assert SyncedUser.objects.get(pk=mailbox_subscription.synced_user_id).sync_requested_at is None


def test_it_ignores_a_notification_for_another_tenant(client, mailbox_subscription):
    response = post(client, NOTIFY, notification(tenantId="00000000-1111-2222-3333-444444444444"))
    assert response.status_code == 403


def test_it_does_not_sync_a_paused_integration(client, mailbox_subscription):
    Integration.objects.update(status=Integration.Status.NEEDS_ATTENTION)
    assert post(client, NOTIFY, notification()).status_code == 202
    assert SyncedUser.objects.get(pk=mailbox_subscription.synced_user_id).sync_requested_at is None


def test_it_stores_the_client_state_encrypted(mailbox_subscription):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT client_state FROM calendarsync_mailboxsubscription WHERE id = %s",
            [mailbox_subscription.pk],
        )
        raw = cursor.fetchone()[0]
    assert raw and "the-right-client-state" not in raw


# ----- subscriptions against the sandbox, with the product live so Graph can reach it


@pytest.fixture
def live(
    m365, https_live_server, settings, eager_celery, monkeypatch, transactional_db, synced_user
):
    """The product live behind https (Graph validates its endpoints and delivers there only),
    the user subscribed, and the sync requests the notifications cause recorded instead of
    run."""
    settings.PUBLIC_BASE_URL = https_live_server.url
    syncs = []
    monkeypatch.setattr(tasks, "request_sync", lambda pk, **kw: syncs.append(pk))
    monkeypatch.setattr(tasks, "request_interactive", lambda ids, **kw: syncs.extend(sorted(ids)))
    monkeypatch.setattr(
        tasks, "request_syncs", lambda users, **kw: syncs.extend(users.values_list("pk", flat=True))
    )
    tasks.request_subscriptions(SyncedUser.objects.filter(pk=synced_user.pk))
    return syncs


def sandbox_subscription(m365):
    subs = m365.subscriptions()
    assert len(subs) == 1
    return subs[0]


def test_it_subscribes_a_new_mailbox_through_the_validation_handshake(m365, live, synced_user):
    stored = MailboxSubscription.objects.get(synced_user=synced_user)
    remote = sandbox_subscription(m365)
    assert remote["id"] == stored.provider_subscription_id
    assert remote["clientState"] == stored.client_state and len(stored.client_state) <= 128
    assert remote["resource"] == f"/users/{ANNA}/events"
    assert remote["changeType"] == "created,updated,deleted"
    assert remote["notificationUrl"].endswith(NOTIFY)
    assert remote["lifecycleNotificationUrl"].endswith(LIFECYCLE)
    assert stored.expires_at > timezone.now() + timedelta(days=2)
    validations = [d for d in m365.deliveries() if d["kind"] == "validation"]
    assert len(validations) == 2 and all(d["ok"] for d in validations)


def test_a_real_notification_requests_a_sync(m365, live, synced_user):
    m365.create_event(
        ANNA,
        subject="Ny",
        start={"dateTime": "2030-01-01T10:00:00", "timeZone": "UTC"},
        end={"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"},
    )
    wait_for(lambda: live, message="a sync request")
    assert live == [synced_user.pk]
    delivered = [d for d in m365.deliveries() if d["kind"] == "notification"]
    assert delivered[0]["status"] == 202 and delivered[0]["seconds"] < 2.9


def test_it_reauthorizes_when_graph_asks(m365, live, synced_user):
    remote = sandbox_subscription(m365)
    m365.clear_requests()
    m365.lifecycle(remote["id"], "reauthorizationRequired")
    # A renewal (PATCH of the expiry) reauthorizes a subscription too.
    wait_for(
        lambda: [
            r
            for r in m365.graph_requests()
            if r["method"] == "PATCH" and r["path"].endswith(remote["id"]) and r["status"] == 200
        ],
        message="reauthorize",
    )


def test_it_recreates_a_removed_subscription_and_resyncs(m365, live, synced_user):
    old = sandbox_subscription(m365)
    m365.lifecycle(old["id"], "subscriptionRemoved")
    wait_for(lambda: live, message="a resync")
    new = sandbox_subscription(m365)
    assert new["id"] != old["id"]
    assert (
        MailboxSubscription.objects.get(synced_user=synced_user).provider_subscription_id
        == new["id"]
    )


def test_a_missed_event_resyncs(m365, live, synced_user):
    m365.lifecycle(sandbox_subscription(m365)["id"], "missed")
    wait_for(lambda: live, message="a resync")


def test_it_renews_before_expiry_and_recreates_what_graph_forgot(m365, live, synced_user):
    stored = MailboxSubscription.objects.get(synced_user=synced_user)
    MailboxSubscription.objects.filter(pk=stored.pk).update(
        expires_at=timezone.now() + timedelta(hours=1)
    )
    assert tasks.renew_subscriptions() == 1
    stored.refresh_from_db()
    assert stored.expires_at > timezone.now() + timedelta(days=2)
    assert tasks.renew_subscriptions() == 0  # nothing due now
    m365.sandbox.subscriptions.clear()  # Graph lost it
    MailboxSubscription.objects.filter(pk=stored.pk).update(
        expires_at=timezone.now() + timedelta(hours=1)
    )
    tasks.renew_subscriptions()
    assert (
        MailboxSubscription.objects.get(synced_user=synced_user).provider_subscription_id
        == sandbox_subscription(m365)["id"]
    )
    assert live == [synced_user.pk]  # recreated: resync what may have been missed


def test_removing_a_user_or_an_integration_deletes_its_subscriptions(
    m365, live, synced_user, integration
):
    assert len(m365.subscriptions()) == 1
    removal.remove_synced_user(SyncedUser.objects.get(pk=synced_user.pk))
    assert m365.subscriptions() == []
    again = SyncedUser.objects.create(
        integration=integration, subscription=synced_user.subscription, email=ANNA
    )
    tasks.start_syncing(SyncedUser.objects.filter(pk=again.pk))
    assert len(m365.subscriptions()) == 1
    removal.remove_integration(integration)
    assert m365.subscriptions() == []
    assert not Integration.objects.exists() and not SyncedUser.objects.exists()


def test_a_revoked_consent_pauses_the_integration_once_without_an_error_storm(
    m365, live, synced_user, integration
):
    m365.clear_requests()
    m365.revoke()  # Graph fires reauthorizationRequired; reauthorizing then fails
    wait_for(
        lambda: Integration.objects.get(pk=integration.pk).attention == "consent_revoked",
        message="consent_revoked",
    )
    assert Integration.objects.get(pk=integration.pk).status == "needs_attention"
    remote = sandbox_subscription(m365)
    for _ in range(3):
        m365.lifecycle(remote["id"], "reauthorizationRequired")
    MailboxSubscription.objects.update(expires_at=timezone.now())
    tasks.renew_subscriptions()
    # Four lifecycle notifications, however Graph grouped them into POSTs.
    wait_for(lambda: len(m365.delivered("lifecycle")) >= 4, message="deliveries")
    assert Activity.objects.filter(event="consent_revoked").count() == 1
    token_requests = [r for r in m365.requests() if r["path"].endswith("/token")]
    assert len(token_requests) <= 2  # the first renewal tried; nothing after the pause
    assert len(m365.graph_requests()) <= 1  # that one renewal, answered 401


@pytest.mark.parametrize("url", [NOTIFY, LIFECYCLE])
@pytest.mark.parametrize(
    "body", [b"[" * 100_000 + b"]" * 100_000, b"not json", b"[1, 2]", b'{"value": {}}']
)
def test_it_answers_a_body_graph_never_sends_with_400(client, url, body):
    response = client.post(url, body, content_type="application/json")
    assert response.status_code == 400


def test_it_logs_unknown_subscriptions_once_per_request(client, mailbox_subscription, caplog):
    many = [notification(subscription_id=f"unknown-{n}") for n in range(500)]
    with caplog.at_level(logging.WARNING):
        assert post(client, NOTIFY, *many).status_code == 202
    unknown = [r for r in caplog.records if "unknown subscription" in r.getMessage()]
    assert len(unknown) == 1 and "500" in unknown[0].getMessage()
