"""Knobs that make the sandbox misbehave the way a real API does: slow, rate-limited, flaky, down.

Set at start from environment variables, changed at runtime with POST /_sandbox/knobs.
"""

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
    rate_limit: int = 0  # requests per minute per token; 0 = unlimited
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
        self.windows = {}  # token -> (minute, count)
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

    def injected(self, token=None):
        """None, or (status, headers, mode) for the failure this request gets."""
        with self.lock:
            knobs = self.knobs
            if time.monotonic() < self.outage_until:
                return 503, {}, knobs.outage_mode
            if knobs.fail_next:
                status = knobs.fail_next.pop(0)
                return (status, self._retry_after(status), "answer") if status else None
            if token and knobs.rate_limit:
                limited = self._rate_limited(token)
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

    def _rate_limited(self, token):
        minute = int(time.time() // 60)
        window, count = self.windows.get(token, (minute, 0))
        if window != minute:
            window, count = minute, 0
        count += 1
        self.windows[token] = (window, count)
        reset = 60 - int(time.time() % 60)
        if count > self.knobs.rate_limit:
            headers = {
                "Retry-After": str(reset),
                "RateLimit-Limit": str(self.knobs.rate_limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(reset),
            }
            return 429, headers, "answer"
        return None

    def rate_headers(self, token):
        if not self.knobs.rate_limit or not token:
            return {}
        _, count = self.windows.get(token, (0, 0))
        return {
            "RateLimit-Limit": str(self.knobs.rate_limit),
            "RateLimit-Remaining": str(max(0, self.knobs.rate_limit - count)),
            "RateLimit-Reset": str(60 - int(time.time() % 60)),
        }
