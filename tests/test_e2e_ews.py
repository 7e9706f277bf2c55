"""Exchange On Prem end to end, with a real Celery worker on Redis: a booking made in the EWS
sandbox reaches One X through a real push notification to the live server, and moving and
deleting it update and remove its entry, with no periodic reconcile involved."""

from datetime import UTC, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from calendarsync import tasks
from calendarsync.models import MailboxSubscription, SyncedUser
from onex.models import Subscription
from tests.m365_sandbox import wait_for
from tests.test_e2e_graph import worker  # noqa: F401 - the real Celery worker fixture

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ANNA = "anna.andersson@demo.se"  # sub-anna in the One X sandbox's Demo AB


@pytest.fixture
def notification_url(live_server):
    """Where Exchange is to push: the live server's notification service."""
    return live_server.url + reverse("ews_notifications")


@pytest.fixture
def worker_env(on_prem, notification_url, settings):
    """The worker reaches the EWS sandbox as the product does here (on_prem's settings) and
    subscribes mailboxes to `notification_url`."""
    settings.EWS_NOTIFICATION_URL = notification_url
    return {
        "EWS_CA_BUNDLE": settings.EWS_CA_BUNDLE,
        "OUTBOUND_ALLOWED_HOSTS": settings.OUTBOUND_ALLOWED_HOSTS[0],
        "EWS_NOTIFICATION_URL": settings.EWS_NOTIFICATION_URL,
    }


@pytest.fixture
def anna(on_prem, company, worker_env):
    integration = on_prem(company, ANNA, name="Anna Andersson")
    subscription = Subscription.objects.create(
        company=company, onex_id="sub-anna", email=ANNA, display_name="Anna", has_diversion=True
    )
    return SyncedUser.objects.create(integration=integration, subscription=subscription, email=ANNA)


def soon(hours):
    return (timezone.now() + timedelta(days=1, hours=hours)).replace(
        minute=0, second=0, microsecond=0
    )


def span(start):
    return {
        "start": start.astimezone(UTC).isoformat(),
        "end": (start + timedelta(hours=1)).astimezone(UTC).isoformat(),
    }


def entries(onex_sandbox):
    return [e for e in onex_sandbox.absences("demo-ab") if e["subscriptionId"] == "sub-anna"]


def starts_at(onex_sandbox, moment):
    hour = moment.astimezone(UTC).strftime("%Y-%m-%dT%H")
    return lambda: [e for e in entries(onex_sandbox) if e["start"].startswith(hour)]


@pytest.mark.usefixtures("worker")
def test_a_booking_reaches_one_x_through_a_push_then_moves_and_goes(ews, onex_sandbox, anna):
    tasks.start_syncing(SyncedUser.objects.filter(pk=anna.pk))
    wait_for(
        lambda: MailboxSubscription.objects.filter(synced_user=anna).exclude(watermark="").exists(),
        60,
        message="the worker's push subscription",
    )
    wait_for(lambda: SyncedUser.objects.get(pk=anna.pk).last_synced_at, 60, message="first sync")
    assert entries(onex_sandbox) == []

    booking = ews.create_event(ANNA, subject="Kundmöte", **span(soon(2)))
    wait_for(starts_at(onex_sandbox, soon(2)), 60, message="the entry, through a push")
    pushed = [d for d in ews.deliveries() if "CreatedEvent" in d["events"]]
    assert pushed and pushed[-1]["answer"] == "OK"

    ews.update_event(ANNA, booking["id"], **span(soon(6)))
    wait_for(starts_at(onex_sandbox, soon(6)), 60, message="the moved entry")
    assert len(entries(onex_sandbox)) == 1

    ews.delete_event(ANNA, booking["id"])
    wait_for(lambda: entries(onex_sandbox) == [], 60, message="the entry removed")
