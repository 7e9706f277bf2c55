"""One X's rate budget: one per client id, shared by every worker and process.

One X allows so many requests per minute per client's token (onex-api.md, "Errors and limits").
The budget is a sliding-window log of the requests sent in the last window: stricter than the
server's fixed window, since no window of that length, wherever it starts, ever holds more than
the limit. It lives in Redis when the cache is Redis (one Lua script per step, so workers
cannot race), else in this process (the embedded default runs one worker).

Answers correct it: when `RateLimit-Remaining` says fewer requests remain than the log
counts, placeholders that expire at `RateLimit-Reset` make up the difference, and a 429's
`Retry-After` pauses every lane of every worker until then.

Lanes: bulk work (chunk runs, resyncs, audits) leaves the last units of the window to a person's
change (the interactive lane). How many grows with the interactive requests of the last window,
from a quarter of `ONEX_RATE_INTERACTIVE_SHARE` (5 % by default) to all of it (20 %): a resync at
night may use 95 % of the limit, and in office hours changes still never queue behind it.
"""

import bisect
import enum
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# The client's window is this share longer than the server's, so requests that reach the server
# a little later than they were counted (latency, jitter) cannot crowd into one server window.
WINDOW_MARGIN = 0.02
REDIS_BACKENDS = ("django.core.cache.backends.redis.RedisCache", "django_redis.cache.RedisCache")


class Lane(enum.StrEnum):
    INTERACTIVE = "interactive"  # a person is waiting: a change notification, one mailbox
    BULK = "bulk"  # chunk runs, resyncs, audits, directory reads


class OverBudget(Exception):
    """The next unit is further away than the caller may wait."""

    def __init__(self, wait):
        super().__init__(f"the One X rate budget has no room for {wait:.1f} s")
        self.wait = wait


class RateBudget:
    """The arithmetic both stores share; subclasses keep the log (`_take`, `_correct`)."""

    def __init__(self, limit, *, window_seconds=60.0, interactive_share=0.2):
        if limit < 1 or window_seconds <= 0 or not 0 <= interactive_share < 1:
            raise ValueError("a rate budget needs a limit ≥ 1, a window > 0 and a share in [0, 1)")
        self.limit = int(limit)
        self.window_ms = int(window_seconds * (1 + WINDOW_MARGIN) * 1000)
        # Units bulk leaves free: reserve_min plus the window's interactive ones, up to the max.
        self.reserve_max = min(self.limit - 1, round(self.limit * interactive_share))
        self.reserve_min = min(self.reserve_max, max(1, round(self.reserve_max / 4)))
        if not interactive_share:
            self.reserve_min = self.reserve_max = 0

    def acquire(self, lane: Lane, *, max_wait: float, sleep: Callable = time.sleep) -> int:
        """Take one unit, waiting for room up to `max_wait` seconds; returns the units in use
        once it is taken (for `observe`). Raises OverBudget when the wait would be longer."""
        waited = 0.0
        while True:
            wait_ms, used = self._take(lane)
            if not wait_ms:
                return used
            # A little jitter, so the workers woken by one expiry do not all ask at once.
            wait = wait_ms / 1000 + random.uniform(0, 0.01)
            if waited + wait > max_wait:
                raise OverBudget(wait)
            sleep(wait)
            waited += wait

    def observe(self, headers, *, used=None, retry_after=None) -> None:
        """Feed one answer's rate-limit headers (and a 429's Retry-After, in seconds)."""
        remaining = _header_int(headers, "RateLimit-Remaining")
        reset = _header_int(headers, "RateLimit-Reset")
        if remaining is not None and reset is None:
            reset = self.window_ms // 1000
        if remaining is not None and used is not None and self.limit - remaining <= used:
            remaining = None  # the log already counts at least what the server does
        if remaining is None and retry_after is None:
            return
        self._correct(
            -1 if remaining is None else max(0, remaining),
            0 if reset is None else max(0, reset) * 1000,
            -1 if retry_after is None else int(retry_after * 1000),
        )

    def units_left(self) -> dict[Lane, int]:
        """The units each lane could take now, without taking any (for monitoring)."""
        used, interactive, paused = self._usage()
        if paused:
            return dict.fromkeys(Lane, 0)
        reserve = min(self.reserve_max, self.reserve_min + interactive)
        return {
            Lane.INTERACTIVE: max(0, self.limit - used),
            Lane.BULK: max(0, self.limit - reserve - used),
        }


def _header_int(headers, name):
    try:
        return int(float(headers[name]))
    except (KeyError, TypeError, ValueError):
        return None


# The shared store --------------------------------------------------------------------------

# KEYS: log (sorted set of sent requests, scored by ms), pause (ms), sequence, interactive log.
# ARGV: lane, limit, window ms, reserve min, reserve max.
# Returns {wait ms (0 = taken), units in use}.
ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[3])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return {paused - now, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local allowed = tonumber(ARGV[2])
if ARGV[1] == 'bulk' then
  allowed = allowed - math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) + redis.call('ZCARD', KEYS[4]))
end
if used < allowed then
  local n = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[1], now, n)
  if ARGV[1] ~= 'bulk' then redis.call('ZADD', KEYS[4], now, n) end
  for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4]}) do redis.call('PEXPIRE', key, window) end
  return {0, used + 1}
end
local oldest = redis.call('ZRANGE', KEYS[1], used - allowed, used - allowed, 'WITHSCORES')
return {math.max(1, oldest[2] + window - now), used}
"""

# ARGV: limit, window ms, remaining (-1 = not said), reset ms, retry-after ms (-1 = none).
CORRECT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[2])
local retry = tonumber(ARGV[5])
if retry >= 0 then
  local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now + retry > paused then redis.call('SET', KEYS[2], now + retry, 'PX', retry + 1000) end
end
local remaining = tonumber(ARGV[3])
if remaining < 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local missing = tonumber(ARGV[1]) - remaining - redis.call('ZCARD', KEYS[1])
local expires = now + math.min(tonumber(ARGV[4]), window) - window
for _ = 1, missing do
  redis.call('ZADD', KEYS[1], expires, 'p' .. redis.call('INCR', KEYS[3]))
end
if missing > 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  redis.call('PEXPIRE', KEYS[3], window)
end
return missing
"""


# KEYS as ACQUIRE's; ARGV: window ms. Read-only: {units in use, interactive ones, paused 0/1}.
USAGE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local since = '(' .. (now - tonumber(ARGV[1]))
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
return {
  redis.call('ZCOUNT', KEYS[1], since, '+inf'),
  redis.call('ZCOUNT', KEYS[4], since, '+inf'),
  paused > now and 1 or 0,
}
"""


class RedisBudget(RateBudget):
    """The log in Redis, shared by every process that uses the same Redis and key."""

    def __init__(self, connection: redis.Redis, key: str, limit, **options):
        super().__init__(limit, **options)
        self.connection = connection
        self.keys = [f"{key}:log", f"{key}:pause", f"{key}:seq", f"{key}:interactive"]
        self._acquire = connection.register_script(ACQUIRE)
        self._correct_script = connection.register_script(CORRECT)
        self._usage_script = connection.register_script(USAGE)
        self._fallback = LocalBudget(limit, **options)  # while Redis cannot be reached

    def _take(self, lane):
        args = [str(lane), self.limit, self.window_ms, self.reserve_min, self.reserve_max]
        try:
            wait_ms, used = self._acquire(keys=self.keys, args=args)
            return int(wait_ms), int(used)
        except redis.RedisError as error:
            logger.warning("One X rate budget: Redis unavailable (%s); this process only", error)
            return self._fallback._take(lane)

    def _correct(self, remaining, reset_ms, retry_ms):
        args = [self.limit, self.window_ms, remaining, reset_ms, retry_ms]
        try:
            self._correct_script(keys=self.keys, args=args)
        except redis.RedisError as error:
            logger.warning("One X rate budget: Redis unavailable (%s); this process only", error)
            self._fallback._correct(remaining, reset_ms, retry_ms)

    def _usage(self):
        # A Redis error is raised: another process's view of the budget cannot stand in.
        used, interactive, paused = self._usage_script(keys=self.keys, args=[self.window_ms])
        return int(used), int(interactive), bool(paused)

    def clear(self):
        self.connection.delete(*self.keys)


# The process-local store -------------------------------------------------------------------


class LocalBudget(RateBudget):
    """The same log in this process, for the embedded default (no Redis)."""

    def __init__(self, limit, **options):
        super().__init__(limit, **options)
        self._lock = threading.Lock()
        self._sent: list[float] = []  # ms scores, sorted
        self._interactive: list[float] = []  # the interactive lane's, sorted
        self._paused_until = 0.0

    @staticmethod
    def _now_ms():
        return time.monotonic() * 1000

    def _expire(self, now):
        for log in (self._sent, self._interactive):
            del log[: bisect.bisect_right(log, now - self.window_ms)]

    def _take(self, lane):
        with self._lock:
            now = self._now_ms()
            if self._paused_until > now:
                return max(1, int(self._paused_until - now)), 0
            self._expire(now)
            used, allowed = len(self._sent), self.limit
            if lane == Lane.BULK:
                allowed -= min(self.reserve_max, self.reserve_min + len(self._interactive))
            if used < allowed:
                self._sent.append(now)  # now is the latest score: the list stays sorted
                if lane != Lane.BULK:
                    self._interactive.append(now)
                return 0, used + 1
            return max(1, int(self._sent[used - allowed] + self.window_ms - now)), used

    def _correct(self, remaining, reset_ms, retry_ms):
        with self._lock:
            now = self._now_ms()
            if retry_ms >= 0:
                self._paused_until = max(self._paused_until, now + retry_ms)
            if remaining < 0:
                return
            self._expire(now)
            expires = now + min(reset_ms, self.window_ms) - self.window_ms
            for _ in range(self.limit - remaining - len(self._sent)):
                bisect.insort(self._sent, expires)

    def _usage(self):
        with self._lock:
            now = self._now_ms()
            self._expire(now)
            return len(self._sent), len(self._interactive), self._paused_until > now

    def clear(self):
        with self._lock:
            self._sent.clear()
            self._interactive.clear()
            self._paused_until = 0.0


# From settings -----------------------------------------------------------------------------

_budgets: dict[tuple, RateBudget] = {}
_connections: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def budget_for(base_url: str, client_id: str) -> RateBudget | None:
    """The budget of this One X client id (None when ONEX_RATE_LIMIT_PER_MINUTE is 0), in
    Redis when the default cache is Redis, else in this process."""
    limit = settings.ONEX_RATE_LIMIT_PER_MINUTE
    if not limit:
        return None
    cache = settings.CACHES["default"]
    location = cache.get("LOCATION", "") if cache.get("BACKEND") in REDIS_BACKENDS else ""
    if isinstance(location, list | tuple):
        location = location[0]  # the primary; replicas are for reads
    options = {
        "window_seconds": settings.ONEX_RATE_WINDOW_SECONDS,
        "interactive_share": settings.ONEX_RATE_INTERACTIVE_SHARE,
    }
    # The API's address is part of the key: a client id is only unique at one One X.
    name = hashlib.sha256(f"{base_url.rstrip('/')} {client_id}".encode()).hexdigest()[:16]
    key = (location, name, limit, *options.values())
    with _lock:
        if key not in _budgets:
            if location:
                if location not in _connections:
                    _connections[location] = redis.Redis.from_url(location)
                connection = _connections[location]
                _budgets[key] = RedisBudget(connection, f"onex:budget:{name}", limit, **options)
            else:
                _budgets[key] = LocalBudget(limit, **options)
        return _budgets[key]
