"""Change and lifecycle notifications, delivered the way Graph delivers them.

Microsoft's "Receive change notifications through webhooks" (and ../shared/reference/microsoft.md):
- One POST carries every notification pending for the same URL (`value`, up to MAX_PER_POST);
  a change notification has an `id` of its own. At most one POST per URL is under way: what
  arrives meanwhile goes together in the next one.
- A 2xx answer means delivered. Any other answer (a 4xx too), no answer, or none within the
  answer limit (10 s) makes Graph retry with exponential backoff, for up to 4 hours after the
  notification was made; then it is given up (recorded as `expired`).
- An endpoint where over 10 % of the answers of the last 10 minutes took longer than 10 s is
  "slow": new notifications wait 10 s first. Over 15 %: new notifications are dropped for
  10 minutes, for good.

Knobs (the sandbox's, read at each step): `delivery_time_scale` multiplies every interval of
that schedule (backoff, the 4 hours, the 10-minute windows, the 10 s wait), so a test can play
hours in seconds; `delivery_answer_seconds` is the answer limit (timeout and slowness, 10 s);
`delivery_batch_window_ms` is how long a new notification waits for others to share its POST.
"""

import itertools
import json
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from dataclasses import dataclass, field

MAX_PER_POST = 100
FIRST_RETRY_SECONDS = 10.0
LONGEST_RETRY_SECONDS = 30 * 60.0
GIVE_UP_SECONDS = 4 * 3600.0
WINDOW_SECONDS = 10 * 60.0
SLOW_SHARE = 0.10
DROP_SHARE = 0.15
SLOW_WAIT_SECONDS = 10.0
DROP_SECONDS = 10 * 60.0

DEFAULT_KNOBS = {
    "delivery_time_scale": 1.0,
    "delivery_answer_seconds": 10.0,
    "delivery_batch_window_ms": 50,
}


def backoff_seconds(attempts: int) -> float:
    """Unscaled wait before retry number `attempts` (1 = the first retry): 10 s, 20 s, 40 s …
    up to 30 minutes between tries."""
    return min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), LONGEST_RETRY_SECONDS)


def notification_id() -> str:
    return secrets.token_urlsafe(12)


@dataclass
class Pending:
    kind: str  # "notification" | "lifecycle"
    url: str
    notification: dict
    made_at: float  # monotonic
    due: float
    attempts: int = 0
    seq: int = 0
    gathering: bool = False  # new, only waiting for others to share its POST


@dataclass
class Endpoint:
    """What Graph remembers of one notification URL: recent answers, and a drop period."""

    answers: deque = field(default_factory=deque)  # (monotonic time, slow?)
    dropping_until: float = 0.0


class Deliverer:
    """The delivery schedule and its worker thread. `log(entry)` records each POST's outcome."""

    def __init__(self, knobs, log, ssl_context: ssl.SSLContext):
        self._knobs = knobs
        self._log = log
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # loopback only, whatever the environment says
            urllib.request.HTTPSHandler(context=ssl_context),
        )
        self._condition = threading.Condition()
        self._pending: list[Pending] = []
        self._in_flight: set[str] = set()
        self._endpoints: dict[str, Endpoint] = defaultdict(Endpoint)
        self._seq = itertools.count(1)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="m365-deliveries")
        self._thread.start()

    # ----- knobs

    def _knob(self, name) -> float:
        value = self._knobs().get(name, DEFAULT_KNOBS[name])
        return float(DEFAULT_KNOBS[name] if value is None else value)

    def _scaled(self, seconds: float) -> float:
        return seconds * self._knob("delivery_time_scale")

    # ----- the public side

    def enqueue(self, kind: str, url: str, notification: dict) -> str:
        """Queue one notification; returns what became of it: "queued", "slow" or "dropped"."""
        now = time.monotonic()
        with self._condition:
            state = self._state(url, now)
            if state == "dropping":
                self._log_dropped([Pending(kind, url, notification, now, now)])
                return "dropped"
            wait = self._knob("delivery_batch_window_ms") / 1000
            gathering = state == "normal"
            if state == "slow":
                wait = max(wait, self._scaled(SLOW_WAIT_SECONDS))
            self._pending.append(
                Pending(
                    kind,
                    url,
                    notification,
                    now,
                    now + wait,
                    seq=next(self._seq),
                    gathering=gathering,
                )
            )
            self._condition.notify_all()
        return "queued" if state == "normal" else state

    def pending(self) -> int:
        with self._condition:
            return len(self._pending)

    def endpoint_states(self) -> dict[str, str]:
        now = time.monotonic()
        with self._condition:
            return {url: self._state(url, now) for url in list(self._endpoints)}

    def clear(self):
        with self._condition:
            self._pending.clear()
            self._endpoints.clear()

    def stop(self):
        with self._condition:
            self._stopped = True
            self._condition.notify_all()

    # ----- slow and dropped endpoints

    def _state(self, url: str, now: float) -> str:
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            return "normal"
        if endpoint.dropping_until > now:
            return "dropping"
        window = self._scaled(WINDOW_SECONDS)
        while endpoint.answers and endpoint.answers[0][0] < now - window:
            endpoint.answers.popleft()
        if not endpoint.answers:
            return "normal"
        share = sum(1 for _t, slow in endpoint.answers if slow) / len(endpoint.answers)
        if share > DROP_SHARE:
            endpoint.dropping_until = now + self._scaled(DROP_SECONDS)
            endpoint.answers.clear()  # after the drop period the endpoint starts afresh
            return "dropping"
        return "slow" if share > SLOW_SHARE else "normal"

    # ----- the worker

    def _run(self):
        while True:
            with self._condition:
                if self._stopped:
                    return
                now = time.monotonic()
                batches, wake = self._take_due(now)
                for batch in batches:
                    self._in_flight.add(batch[0].url)
                    threading.Thread(target=self._post, args=(batch,), daemon=True).start()
                if not batches:
                    self._condition.wait(timeout=None if wake is None else max(0.0, wake - now))

    def _take_due(self, now: float) -> tuple[list[list[Pending]], float | None]:
        """The POSTs to make now (one per free URL), and when the next one falls due. A POST
        takes what is due and the new notifications still gathering for the same URL; retries
        keep their own schedule."""
        by_url: dict[str, list[Pending]] = defaultdict(list)
        gathering: dict[str, list[Pending]] = defaultdict(list)
        wake = None
        for item in self._pending:
            if item.url in self._in_flight:
                continue
            if item.due <= now:
                by_url[item.url].append(item)
            else:
                wake = item.due if wake is None else min(wake, item.due)
                if item.gathering:
                    gathering[item.url].append(item)
        batches = []
        for url, items in by_url.items():
            items += gathering.get(url, [])
            if self._state(url, now) == "dropping":
                for item in items:
                    self._pending.remove(item)
                self._log_dropped(items)
                continue
            items.sort(key=lambda item: item.seq)
            batch = items[:MAX_PER_POST]
            for item in batch:
                self._pending.remove(item)
            batches.append(batch)
        return batches, wake

    def _post(self, batch: list[Pending]):
        url = batch[0].url
        payload = {"value": [item.notification for item in batch]}
        limit = self._knob("delivery_answer_seconds")
        entry = {
            "kind": batch[0].kind,
            "url": url,
            "payload": payload,
            "count": len(batch),
            "ids": [item.notification.get("id") for item in batch],
            "attempt": max(item.attempts for item in batch),
            "attempts": [item.attempts for item in batch],
            "time": time.time(),
        }
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        started = time.monotonic()
        answered = True
        try:
            with self._opener.open(request, timeout=limit) as response:
                response.read()
                entry["status"] = response.status
        except urllib.error.HTTPError as exc:
            entry["status"] = exc.code
        except TimeoutError as exc:
            entry.update(status=None, error=f"no answer within {limit} s: {exc}")
        except (urllib.error.URLError, OSError) as exc:
            timed_out = isinstance(getattr(exc, "reason", None), TimeoutError)
            answered = timed_out  # a refused connection is no answer at all, not a slow one
            entry.update(status=None, error=str(exc))
        seconds = time.monotonic() - started
        entry["seconds"] = round(seconds, 3)
        delivered = entry["status"] is not None and 200 <= entry["status"] < 300
        self._log(entry)
        now = time.monotonic()
        with self._condition:
            self._in_flight.discard(url)
            if answered:
                slow = entry["status"] is None or seconds > limit
                self._endpoints[url].answers.append((now, slow))
            if not delivered:
                self._reschedule(batch, now)
            self._condition.notify_all()

    def _reschedule(self, batch: list[Pending], now: float):
        expired = []
        for item in batch:
            item.attempts += 1
            item.gathering = False
            item.due = now + self._scaled(backoff_seconds(item.attempts))
            if item.due > item.made_at + self._scaled(GIVE_UP_SECONDS):
                expired.append(item)
            else:
                self._pending.append(item)
        if expired:
            self._log(
                {
                    "kind": expired[0].kind,
                    "url": expired[0].url,
                    "expired": True,
                    "payload": {"value": [item.notification for item in expired]},
                    "count": len(expired),
                    "time": time.time(),
                    "status": None,
                    "error": "given up: no delivery within 4 hours",
                }
            )

    def _log_dropped(self, items: list[Pending]):
        self._log(
            {
                "kind": items[0].kind,
                "url": items[0].url,
                "dropped": True,
                "payload": {"value": [item.notification for item in items]},
                "count": len(items),
                "time": time.time(),
                "status": None,
                "error": "endpoint dropped: too many slow answers",
            }
        )
