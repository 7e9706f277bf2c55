"""The EWS sandbox's state, independent of HTTP: the directory of mailboxes, knobs, service
account, push subscriptions, the request log, the add-in's identity tokens, and the changes
tests make "as if in Outlook"."""

import itertools
import json
import threading
import time

from . import demo, groups
from .addin import IdentityTokens
from .auth import DEFAULT_PASSWORD, DEFAULT_USERNAME, Accounts
from .calendar import Directory, clean_booking_fields
from .knobs import Knobs
from .push import Push

LOG_LIMIT = 100_000


class EwsSandbox:
    def __init__(self, *, username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD, with_demo=True):
        self.with_demo = with_demo
        self.accounts = Accounts(username, password)
        self.knobs = Knobs()
        self.directory = Directory()
        self.push = Push(self)
        self.identity = IdentityTokens()
        self.base_url = ""  # set by the server once it has its port
        self.log: list[dict] = []
        self.log_seq = itertools.count(1)
        self.log_lock = threading.Lock()
        self.people: dict[str, dict] = {}  # email -> {"extension", "mobile"}
        # Called with (kind, bytes) for every SOAP message sent: "response" or "notification".
        self.observers: list = []
        self.busy_lock = threading.Lock()
        if with_demo:
            demo.load(self)

    # ----- log and observers

    def record(self, entry: dict):
        entry["seq"] = next(self.log_seq)
        entry["time"] = time.time()
        with self.log_lock:
            self.log.append(entry)
            if len(self.log) > LOG_LIMIT:
                del self.log[: len(self.log) - LOG_LIMIT]

    def requests(self, since=0) -> list[dict]:
        with self.log_lock:
            return [dict(e) for e in self.log if e["seq"] > since]

    def clear_requests(self):
        with self.log_lock:
            self.log.clear()

    def observe(self, kind: str, payload: bytes):
        for observer in list(self.observers):
            observer(kind, payload)

    # ----- knobs

    def set_knobs(self, changes: dict) -> dict:
        self.knobs.update(changes)
        if "password" in changes:
            self.accounts.set_password(changes["password"])
        with self.directory.lock:
            self.directory.changed.notify_all()  # status and retry timings may have changed
        return self.knobs.as_dict()

    def take_busy(self) -> int | None:
        """The back-off (ms) when this call is one of the `server_busy` knob's, else None."""
        with self.busy_lock:
            busy = self.knobs.server_busy
            if busy.get("count", 0) > 0:
                busy["count"] -= 1
                return int(busy.get("back_off_ms", 0))
        return None

    def reset(self):
        self.push.stop_all()
        self.knobs = Knobs()
        self.accounts.set_password(None)
        with self.directory.lock:
            self.directory.changed.notify_all()
        self.directory = Directory()
        self.push = Push(self)
        self.people.clear()
        self.clear_requests()
        if self.with_demo:
            demo.load(self)

    # ----- mailboxes and changes as if made in Outlook (each notifies the push threads)

    def add_mailbox(self, email: str, name: str, extension=None, mobile=None):
        if not isinstance(email, str) or "@" not in email:
            raise ValueError("email must be an e-mail address")
        box = self.directory.add_mailbox(email, name or email.split("@")[0])
        if extension or mobile:
            self.people[box.email] = {"extension": extension, "mobile": mobile}
        return box

    # ----- distribution groups as if in Exchange admin (groups.py)

    def add_group(self, email: str, name: str, members) -> dict:
        with self.directory.lock:
            return groups.add_group(self.directory, email, name, members)

    def change_group_members(self, email: str, *, add=(), remove=()) -> dict:
        with self.directory.lock:
            return groups.change_members(self.directory, email, add=add, remove=remove)

    def delete_group(self, email: str) -> None:
        with self.directory.lock:
            groups.delete_group(self.directory, email)

    def list_groups(self) -> list[dict]:
        with self.directory.lock:
            return groups.listing(self.directory)

    def _box(self, email):
        box = self.directory.mailbox(email)
        if box is None:
            raise KeyError(email)
        return box

    def add_booking(self, email: str, payload: dict):
        fields = clean_booking_fields(payload)
        with self.directory.lock:
            booking = self._box(email).add(fields)
            self.directory.changed.notify_all()
            return booking

    def update_booking(self, email: str, booking_id: str, payload: dict):
        fields = clean_booking_fields(payload, partial=True)
        with self.directory.lock:
            booking = self._box(email).update(booking_id, fields)
            self.directory.changed.notify_all()
            return booking

    def delete_booking(self, email: str, booking_id: str, soft=False):
        with self.directory.lock:
            booking = self._box(email).delete(booking_id, soft=soft)
            self.directory.changed.notify_all()
            return booking

    # ----- the Outlook add-in (Office.js on the item, as if in Outlook)

    def identity_token(self, email: str, aud: str) -> str:
        box = self._box(email)
        return self.identity.token(self.base_url, box.email, aud, self.knobs.identity_token)

    def set_custom_properties(self, email: str, item_id: str, addin_id: str, properties: dict):
        """Office's customProperties.saveAsync: all of the add-in's properties as one JSON string
        in PublicStrings `cecp-<add-in id>`, on an item or one occurrence. Pushes a modification."""
        value = json.dumps(properties, separators=(",", ":"))
        with self.directory.lock:
            box = self._box(email)
            booking, index = box.locate(item_id)
            box.set_extended(booking, index, f"cecp-{addin_id}", value)
            self.directory.changed.notify_all()

    def custom_properties(self, email: str, item_id: str, addin_id: str) -> dict:
        with self.directory.lock:
            box = self._box(email)
            booking, index = box.locate(item_id)
            raw = box.instance(booking, index).extended().get(f"cecp-{addin_id}")
        try:
            properties = json.loads(raw) if raw else {}
        except ValueError:
            properties = {}
        return properties if isinstance(properties, dict) else {}
