"""Push subscriptions: a delivery thread per subscription POSTs real SendNotification requests
to the subscriber's URL, the way Exchange's push notification client does.

Events are read from the mailbox's change journal after the subscription's cursor, so a new
subscription made with an older watermark gets what it missed. A StatusEvent goes out when
nothing else did for a status period. A failed delivery is retried after retry_seconds,
doubling, until a status period has passed since the first failure; then the subscription is
dropped. An `Unsubscribe` answer ends it at once.
"""

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC

import requests
from lxml import etree

from .calendar import Change, Mailbox, encode_id
from .xml import M, child, envelope, m, response, response_message, t

BATCH = 10  # events per notification; MoreEvents says when more follow
POST_TIMEOUT = 10
SOAP_ACTION = "http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification"


@dataclass
class Subscription:
    id: str
    email: str
    url: str
    status_frequency: int  # minutes
    event_types: list[str]
    cursor: int  # the journal seq last delivered (or subscribed from)
    state: str = "active"  # active, unsubscribed (by the subscriber), expired (gave up)
    created: float = field(default_factory=time.time)
    last_success: float | None = None
    failures: int = 0

    def public(self) -> dict:
        return {
            "id": self.id,
            "mailbox": self.email,
            "url": self.url,
            "status_frequency": self.status_frequency,
            "event_types": self.event_types,
            "state": self.state,
            "cursor": self.cursor,
            "failures": self.failures,
        }


class Push:
    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[dict] = []
        self.http = requests.Session()
        self.http.trust_env = False

    @property
    def lock(self):
        return self.sandbox.directory.lock

    @property
    def changed(self):
        return self.sandbox.directory.changed

    def subscribe(self, box: Mailbox, url, frequency, event_types, cursor=None) -> Subscription:
        with self.lock:
            head = box.journal[-1].seq if box.journal else 0
            subscription = Subscription(
                id=encode_id("sub", secrets.token_hex(12)),
                email=box.email,
                url=url,
                status_frequency=frequency,
                event_types=event_types,
                cursor=head if cursor is None else cursor,
            )
            self.subscriptions[subscription.id] = subscription
        threading.Thread(
            target=self._run, args=(subscription,), daemon=True, name=f"ews-push-{box.email}"
        ).start()
        return subscription

    def unsubscribe(self, subscription_id, email=None, reason="Unsubscribe") -> bool:
        with self.lock:
            subscription = self.subscriptions.get(subscription_id)
            if subscription is None or subscription.state != "active":
                return False
            if email is not None and subscription.email != email:
                return False
            subscription.state = "unsubscribed" if reason == "Unsubscribe" else reason
            self.changed.notify_all()
            return True

    def stop_all(self):
        with self.lock:
            for subscription in self.subscriptions.values():
                if subscription.state == "active":
                    subscription.state = "stopped"
            self.subscriptions.clear()
            self.deliveries.clear()
            self.changed.notify_all()

    # ----- the delivery loop

    def _status_period(self, subscription) -> float:
        knob = self.sandbox.knobs.status_seconds
        return float(knob) if knob else subscription.status_frequency * 60.0

    def _pending(self, subscription, box) -> list[Change]:
        changes = [c for c in box.journal if c.seq > subscription.cursor]
        wanted = set(subscription.event_types or ())
        if wanted and changes:
            kept = [c for c in changes if c.kind in wanted]
            if not kept:  # nothing the subscriber asked for: move on silently
                subscription.cursor = changes[-1].seq
            return kept
        return changes

    def _run(self, subscription: Subscription):
        last_sent = time.monotonic()
        while True:
            with self.lock:
                while True:
                    if subscription.state != "active":
                        return
                    box = self.sandbox.directory.mailbox(subscription.email)
                    if box is None:
                        subscription.state = "expired"
                        return
                    pending = self._pending(subscription, box)
                    due = last_sent + self._status_period(subscription) - time.monotonic()
                    if pending or due <= 0:
                        break
                    self.changed.wait(timeout=min(due, 1.0))
                batch, more = pending[:BATCH], len(pending) > BATCH
                previous = box.watermark(subscription.cursor)
                head = batch[-1].seq if batch else (box.journal[-1].seq if box.journal else 0)
                body = notification(subscription, box, previous, batch, more)
            if not self._deliver(subscription, body, batch, more):
                return
            last_sent = time.monotonic()
            with self.lock:
                if subscription.state == "active":
                    subscription.cursor = max(subscription.cursor, head)

    def _deliver(self, subscription, body: bytes, batch, more) -> bool:
        """POST until answered; False when the subscription has ended."""
        first_failure = None
        attempt = 0
        while True:
            attempt += 1
            record = {
                "subscription_id": subscription.id,
                "mailbox": subscription.email,
                "url": subscription.url,
                "events": [c.kind for c in batch] or ["StatusEvent"],
                "more_events": more,
                "attempt": attempt,
                "time": time.time(),
                "body": body.decode(),
            }
            self.sandbox.observe("notification", body)
            answer = self._post(subscription.url, body, record)
            with self.lock:
                self.deliveries.append(record)
                if subscription.state != "active":
                    return False
                if answer == "OK":
                    subscription.last_success = time.time()
                    subscription.failures = 0
                    return True
                if answer == "Unsubscribe":
                    subscription.state = "unsubscribed"
                    return False
                subscription.failures += 1
            now = time.monotonic()
            first_failure = first_failure or now
            wait = self.sandbox.knobs.retry_seconds * 2 ** (attempt - 1)
            if now + wait - first_failure > self._status_period(subscription):
                with self.lock:
                    subscription.state = "expired"
                    record["gave_up"] = True
                return False
            with self.lock:
                self.changed.wait_for(lambda: subscription.state != "active", timeout=wait)
                if subscription.state != "active":
                    return False

    def _post(self, url, body, record) -> str | None:
        try:
            reply = self.http.post(
                url,
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION},
                timeout=POST_TIMEOUT,
            )
        except requests.RequestException as problem:
            record["status"] = None
            record["error"] = problem.__class__.__name__
            return None
        record["status"] = reply.status_code
        if reply.status_code != 200:
            return None
        try:
            root = etree.fromstring(reply.content)
        except etree.XMLSyntaxError:
            record["error"] = "unreadable answer"
            return None
        status = root.find(f".//{{{M}}}SubscriptionStatus")
        record["answer"] = status.text if status is not None else None
        return record["answer"] if record["answer"] in ("OK", "Unsubscribe") else None


def notification(subscription, box: Mailbox, previous, batch: list[Change], more) -> bytes:
    """A SendNotification request (its body element is m:SendNotification)."""
    message = response_message("SendNotificationResponseMessage")
    note = child(message, m("Notification"))
    note.append(t("SubscriptionId", subscription.id))
    note.append(t("PreviousWatermark", previous))
    note.append(t("MoreEvents", more))
    if not batch:
        status = child(note, t("StatusEvent"))
        status.append(t("Watermark", box.watermark()))
    for change in batch:
        note.append(_event(box, change))
    body = response("SendNotification", [message])
    body.tag = f"{{{M}}}SendNotification"
    return envelope(body, None)


def _event(box: Mailbox, change: Change):
    event = t(change.kind)
    event.append(t("Watermark", box.watermark(change.seq)))
    event.append(t("TimeStamp", change.timestamp.astimezone(UTC)))
    event.append(t("ItemId", Id=change.item_id, ChangeKey="AQAAAA=="))
    if change.kind == "MovedEvent":
        event.append(t("ParentFolderId", Id=box.folder_id("deleteditems"), ChangeKey="AQAAAA=="))
        event.append(t("OldItemId", Id=change.old_item_id, ChangeKey="AQAAAA=="))
        event.append(t("OldParentFolderId", Id=box.folder_id(), ChangeKey="AQAAAA=="))
    else:
        event.append(t("ParentFolderId", Id=box.folder_id(), ChangeKey="AQAAAA=="))
    return event
