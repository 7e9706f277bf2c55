"""EWS push notifications into the product's notification service, from the EWS sandbox's real
SendNotification deliveries to a live server: OK with the watermark kept and the mailbox marked
dirty, Unsubscribe for a subscription we no longer hold, and a lost subscription resumed from
its watermark so the changes of the gap still arrive."""

import pytest
from django.urls import reverse
from django.utils import timezone

from calendarsync import subscriptions, tasks
from calendarsync.models import MailboxSubscription, SyncedUser
from calendarsync.providers import provider_for
from tests.m365_sandbox import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PERSON = "kalle@kommun.example.se"


@pytest.fixture
def synced(ews, on_prem, company, settings, live_server, monkeypatch, subscription):
    """Kalle's mailbox on an EWS integration; the sandbox pushes to the live server. Syncs
    the notifications ask for are recorded instead of run."""
    settings.EWS_NOTIFICATION_URL = live_server.url + reverse("ews_notifications")
    ews.knobs(retry_seconds=0.2)
    integration = on_prem(company, PERSON, name="Kalle Kommun")
    subscription.email = PERSON
    subscription.save()
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=PERSON
    )
    runs = []
    monkeypatch.setattr(tasks.sync_mailbox, "apply_async", lambda args, **kw: runs.append(args[0]))
    return user, runs


def event(ews, subject, hour):
    return ews.create_event(PERSON, subject=subject, start=f"2030-03-04T{hour:02}:00:00Z",
                            end=f"2030-03-04T{hour:02}:30:00Z")  # fmt: skip


def answered(ews, answer, kind=None):
    return [
        d for d in ews.deliveries()
        if d.get("answer") == answer and (kind is None or kind in d["events"])
    ]  # fmt: skip


def test_a_change_is_answered_ok_keeps_the_watermark_and_marks_the_mailbox_dirty(ews, synced):
    user, runs = synced
    subscriptions.ensure([user])
    held = MailboxSubscription.objects.get(synced_user=user)
    assert held.watermark and held.expires_at > timezone.now()
    first_watermark = held.watermark
    event(ews, "Styrgrupp", 9)
    wait_for(lambda: answered(ews, "OK", "CreatedEvent"), 20, message="an OK for the change")
    wait_for(lambda: runs, 10, message="a sync of the mailbox")
    assert runs == [user.pk]
    held.refresh_from_db()
    assert held.watermark != first_watermark and held.last_notification_at


def test_status_events_keep_the_subscription_alive_without_a_sync(ews, synced):
    user, runs = synced
    ews.knobs(status_seconds=0.5)
    subscriptions.ensure([user])
    before = MailboxSubscription.objects.get(synced_user=user).expires_at
    wait_for(lambda: answered(ews, "OK", "StatusEvent"), 20, message="a status event")
    assert MailboxSubscription.objects.get(synced_user=user).expires_at > before
    assert runs == []


def test_a_subscription_we_no_longer_hold_is_answered_unsubscribe(ews, synced):
    user, _runs = synced
    ews.knobs(status_seconds=0.5)
    subscriptions.ensure([user])
    subscriptions.end(MailboxSubscription.objects.filter(synced_user=user), user.integration)
    wait_for(lambda: answered(ews, "Unsubscribe"), 20, message="Unsubscribe")
    wait_for(
        lambda: all(s["state"] != "active" for s in ews.subscriptions()), 10, message="the end"
    )


def test_a_lost_subscription_resumes_from_its_watermark_with_the_changes_of_the_gap(
    ews, synced, settings, live_server
):
    user, runs = synced
    settings.EWS_NOTIFICATION_URL = "http://127.0.0.1:9/MSS/services/EWSNotificationService"
    subscriptions.ensure([user])  # Exchange cannot reach us: our endpoint is "down"
    for hour in (8, 10, 12):
        event(ews, f"Möte {hour}", hour)
    wait_for(lambda: [d for d in ews.deliveries() if d["status"] is None], 20, message="failures")
    assert runs == []
    # Back up: nothing arrived for too long, so the subscription is renewed from its watermark.
    settings.EWS_NOTIFICATION_URL = live_server.url + reverse("ews_notifications")
    MailboxSubscription.objects.filter(synced_user=user).update(expires_at=timezone.now())
    lost_id = MailboxSubscription.objects.get(synced_user=user).provider_subscription_id
    subscriptions.ensure([user], provider=provider_for(user.integration))
    held = MailboxSubscription.objects.get(synced_user=user)
    assert held.provider_subscription_id != lost_id
    resumed = wait_for(
        lambda: [
            d for d in answered(ews, "OK", "CreatedEvent")
            if d["subscription_id"] == held.provider_subscription_id
        ],
        20,
        message="the gap's changes through the resumed subscription",
    )  # fmt: skip
    assert sum(d["events"].count("CreatedEvent") for d in resumed) >= 3
    wait_for(lambda: runs, 10, message="a sync of the mailbox")


def test_an_expired_watermark_means_a_new_subscription_and_a_full_resync(ews, synced):
    user, _runs = synced
    subscriptions.ensure([user])
    lost = MailboxSubscription.objects.get(synced_user=user)
    MailboxSubscription.objects.filter(pk=lost.pk).update(expires_at=timezone.now())
    ews.knobs(watermark_expired=True)
    result = subscriptions.ensure([user])
    assert result.resync == [user.pk]  # the window is read again from scratch
    assert MailboxSubscription.objects.get(synced_user=user).provider_subscription_id != (
        lost.provider_subscription_id
    )


def test_a_body_that_is_not_a_notification_is_400(client):
    url = reverse("ews_notifications")
    assert client.post(url, b"<not-soap/>", content_type="text/xml").status_code == 400
    assert client.get(url).status_code == 405


def test_the_dashboard_counts_a_live_ews_subscription_as_active(ews, synced, en_client):
    user, _runs = synced
    subscriptions.ensure([user])
    url = reverse("calendarsync:dashboard", args=[user.integration.code])
    health = en_client.get(url).context["health"]
    assert health["active"] == 1 and health["expiring"] == 0
