"""Our notification service down while three bookings change: Exchange gives up on the push
subscription; once we are back and the subscription counts as lost, it is subscribed again
from its watermark, and the three changes reach One X through that resumed subscription, with a
real Celery worker and no periodic reconcile running."""

import http.server
import threading
from datetime import UTC, timedelta

import pytest
import requests
from django.urls import reverse
from django.utils import timezone

from calendarsync import subscriptions, tasks
from calendarsync.models import MailboxSubscription, SyncedUser
from tests.m365_sandbox import wait_for
from tests.test_e2e_ews import anna, entries, worker_env  # noqa: F401 - shared fixtures
from tests.test_e2e_graph import worker  # noqa: F401 - the real Celery worker fixture

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ANNA = "anna.andersson@demo.se"  # sub-anna in the One X sandbox's Demo AB


class SwitchableRelay:
    """Our notification service behind a switch: off, Exchange's deliveries fail (503) as if
    the service were down; on, they pass to the live server unchanged."""

    def __init__(self, target: str):
        relay, self.on = self, True

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, kind = 503, b"", "text/plain"
                if relay.on:
                    answer = requests.post(
                        target, data=body, headers={"Content-Type": "text/xml"}, timeout=10
                    )
                    status, payload = answer.status_code, answer.content
                    kind = answer.headers.get("Content-Type", "text/xml")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/relay"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relay(live_server):
    switch = SwitchableRelay(live_server.url + reverse("ews_notifications"))
    yield switch
    switch.close()


@pytest.fixture
def notification_url(relay):
    return relay.url


@pytest.mark.usefixtures("worker", "anna")
def test_changes_made_while_we_were_down_arrive_through_the_resumed_watermark(
    ews, onex_sandbox, relay
):
    user = SyncedUser.objects.get(email=ANNA)
    ews.knobs(status_seconds=2, retry_seconds=0.2)  # Exchange gives up after a status period
    tasks.start_syncing(SyncedUser.objects.filter(pk=user.pk))
    wait_for(
        lambda: MailboxSubscription.objects.filter(synced_user=user).exclude(watermark="").exists(),
        60,
        message="the worker's push subscription",
    )
    wait_for(lambda: SyncedUser.objects.get(pk=user.pk).last_synced_at, 60, message="first sync")
    first = MailboxSubscription.objects.get(synced_user=user).provider_subscription_id

    relay.on = False  # our notification service is down
    start = (timezone.now() + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    for hour in (0, 2, 4):
        at = start + timedelta(hours=hour)
        ews.create_event(
            ANNA,
            subject=f"Möte {hour}",
            start=at.astimezone(UTC).isoformat(),
            end=(at + timedelta(hours=1)).astimezone(UTC).isoformat(),
        )
    wait_for(
        lambda: [s for s in ews.subscriptions() if s["id"] == first and s["state"] != "active"],
        30,
        message="Exchange giving up on the subscription",
    )
    assert entries(onex_sandbox) == []  # nothing arrived, and no reconcile runs here

    relay.on = True
    # Twice the status frequency in silence: the subscription counts as lost, and the renewal
    # job (here asked directly, as beat would) subscribes again from its watermark.
    MailboxSubscription.objects.filter(synced_user=user).update(expires_at=timezone.now())
    tasks.request_subscriptions(subscriptions.due_users())
    wait_for(lambda: len(entries(onex_sandbox)) == 3, 60, message="the three changes in One X")
    resumed = MailboxSubscription.objects.get(synced_user=user).provider_subscription_id
    assert resumed != first
    delivered = [
        d for d in ews.deliveries()
        if d["subscription_id"] == resumed and d.get("answer") == "OK"
    ]  # fmt: skip
    assert sum(d["events"].count("CreatedEvent") for d in delivered) == 3
