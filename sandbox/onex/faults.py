"""Knobs that make the sandbox misbehave the way a real API does: slow, rate-limited, flaky, down.

Set at start from environment variables, changed at runtime with POST /_sandbox/knobs.
"""

import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields

ENV_PREFIX = "ONEX_SANDBOX_"


@dataclass
class Knobs:
    latency_ms: float = 0.0  # added to every API answer
    rate_429: float = 0.0  # share of API requests answered 429 with Retry-After
    rate_5xx: float = 0.0  # share answered 502/503/504
    rate_batch_op_5xx: float = 0.0  # share of a batch's operations that fail alone with 503
    retry_after: int = 1  # seconds, sent with 429 (and the rate limit's own 429)
    outage_seconds: float = 0.0  # from the moment it is set, every API request fails
    outage_mode: str = "503"  # "503" answers 503; "drop" closes the connection unanswered
    token_lifetime: int = 3599  # seconds, the expires_in of new tokens
    # Requests per window per client id (all its tokens), as the contract says; 0 = unlimited.
    rate_limit: int = 600
    rate_window_seconds: float = 60.0  # a fixed window, aligned to the clock (tests shorten it)
    # Statuses for the next API requests, in order; 0 lets that request through untouched.
    fail_next: list = field(default_factory=list)
    seed: int | None = None  # makes the random shares reproducible

    @classmethod
    def from_env(cls, environ=os.environ):
        knobs = cls()
        for spec in fields(cls):
            raw = environ.get(ENV_PREFIX + spec.name.upper())
            if raw not in (None, "") and spec.name != "fail_next":
                setattr(knobs, spec.name, _convert(spec.name, raw))
        return knobs


def _convert(name, value):
    kind = type(getattr(Knobs(), name))
    if name == "seed":
        return None if value in (None, "") else int(value)
    if name == "fail_next":
        return [int(v) for v in value]
    if kind is float:
        return float(value)
    if kind is int:
        return int(value)
    return str(value)


class Faults:
    """Decides, per API request, whether to delay it or answer with an injected failure."""

    def __init__(self, knobs=None):
        self.lock = threading.Lock()
        self.knobs = knobs or Knobs()
        self.outage_until = 0.0
        self.random = random.Random(self.knobs.seed)
        self.windows = {}  # budget key (client id) -> (window number, requests in it)
        if self.knobs.outage_seconds:
            self.outage_until = time.monotonic() + self.knobs.outage_seconds

    def update(self, changes):
        with self.lock:
            for name, value in changes.items():
                if name not in {f.name for f in fields(Knobs)}:
                    raise KeyError(name)
                setattr(self.knobs, name, _convert(name, value))
            if "outage_seconds" in changes:
                self.outage_until = time.monotonic() + self.knobs.outage_seconds
            if "seed" in changes:
                self.random = random.Random(self.knobs.seed)
            return self.describe()

    def describe(self):
        state = asdict(self.knobs)
        state["outage_remaining"] = max(0.0, self.outage_until - time.monotonic())
        return state

    def delay(self):
        if self.knobs.latency_ms:
            time.sleep(self.knobs.latency_ms / 1000)

    def injected(self, key=None):
        """None, or (status, headers, mode) for the failure this request gets. `key`: whose
        rate limit the request counts against (None: the token endpoint, not limited)."""
        with self.lock:
            knobs = self.knobs
            if time.monotonic() < self.outage_until:
                return 503, {}, knobs.outage_mode  # down: not even the limiter answers
            if key and knobs.rate_limit:
                self._count(key)  # every request that reaches the API counts, failed or not
            if knobs.fail_next:
                status = knobs.fail_next.pop(0)
                return (status, self._retry_after(status), "answer") if status else None
            if key and knobs.rate_limit:
                limited = self._rate_limited(key)
                if limited:
                    return limited
            roll = self.random.random()
            if roll < knobs.rate_429:
                return 429, self._retry_after(429), "answer"
            if roll < knobs.rate_429 + knobs.rate_5xx:
                status = self.random.choice((502, 503, 503, 504))
                return status, {}, "answer"
            return None

    def batch_op_fails(self):
        with self.lock:
            return self.random.random() < self.knobs.rate_batch_op_5xx

    def _retry_after(self, status):
        return {"Retry-After": str(self.knobs.retry_after)} if status == 429 else {}

    def _window(self, now):
        """(this window's number, whole seconds until it ends, rounded up: at the Reset the
        next window has begun, never a moment before)."""
        length = self.knobs.rate_window_seconds
        number = math.floor(now / length)
        return number, max(1, math.ceil((number + 1) * length - now))

    def _count(self, key):
        number, _ = self._window(time.time())
        window, count = self.windows.get(key, (number, 0))
        self.windows[key] = (number, count + 1 if window == number else 1)

    def _rate_limited(self, key):
        if self._used(key) <= self.knobs.rate_limit:
            return None
        headers = self._rate_headers(key)
        return 429, {**headers, "Retry-After": headers["RateLimit-Reset"]}, "answer"

    def _used(self, key):
        number, _ = self._window(time.time())
        window, count = self.windows.get(key, (number, 0))
        return count if window == number else 0

    def _rate_headers(self, key):
        _, reset = self._window(time.time())
        return {
            "RateLimit-Limit": str(self.knobs.rate_limit),
            "RateLimit-Remaining": str(max(0, self.knobs.rate_limit - self._used(key))),
            "RateLimit-Reset": str(reset),
        }

    def rate_headers(self, key):
        """The RateLimit-* headers every answer to a request counted against `key` carries."""
        if not self.knobs.rate_limit or not key:
            return {}
        with self.lock:
            return self._rate_headers(key)
