"""`/healthz` (the process answers) and `/readyz` (what a request needs is reachable) for a
load balancer, answered by a middleware in front of the others: a probe comes by the machine's
address over plain http, which the host check and the https redirect would refuse, and it must
not touch a session."""

import logging
import threading
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from mss.celery import app as celery_app
from onex.client import OneXClient

logger = logging.getLogger(__name__)

ONEX_CHECK_SECONDS = 30.0  # One X is asked for a token at most this often per process
PROBE_TIMEOUT = 3.0


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker():
    with celery_app.connection_for_write() as conn:
        conn.connect()  # Redis: opens a channel, which pings


def _cache():
    cache.set("mss:readyz", "1", 10)
    if cache.get("mss:readyz") != "1":
        raise RuntimeError("the cache did not keep a value")


class _OneXToken:
    """One X's token endpoint, asked again only when the last answer is ONEX_CHECK_SECONDS
    old: probes every few seconds from every balancer must not become One X's load."""

    def __init__(self):
        self._lock = threading.Lock()
        self._checked_at = None
        self._error = None

    def __call__(self):
        with self._lock:
            now = time.monotonic()
            if self._checked_at is None or now - self._checked_at >= ONEX_CHECK_SECONDS:
                self._error = self._ask()
                self._checked_at = time.monotonic()
            if self._error is not None:
                raise self._error

    @staticmethod
    def _ask():
        client = OneXClient(
            settings.ONEX_API_URL,
            settings.ONEX_CLIENT_ID,
            settings.ONEX_CLIENT_SECRET,
            timeout=(PROBE_TIMEOUT, PROBE_TIMEOUT),
            max_attempts=1,
            budget=None,
        )
        try:
            client.fetch_token()
        except Exception as error:  # any failure is "not ready"; its kind is logged below
            return error
        finally:
            client.close()
        return None

    def forget(self):
        with self._lock:
            self._checked_at = None


onex_token = _OneXToken()

CHECKS = {"database": _database, "broker": _broker, "cache": _cache, "onex": onex_token}


def readiness() -> dict[str, str]:
    """Each part → "ok" or "failed"."""
    parts = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:
            # The kind only: a broker or database error's text can carry a URL with a password.
            logger.warning("readiness: %s failed (%s)", name, type(error).__name__)
            parts[name] = "failed"
        else:
            parts[name] = "ok"
    return parts


def probes(get_response):
    def middleware(request):
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
        if request.path == "/readyz":
            parts = readiness()
            failed = [name for name, state in parts.items() if state != "ok"]
            body = {"status": "failed: " + ", ".join(failed) if failed else "ok", **parts}
            return JsonResponse(
                body, status=503 if failed else 200, headers={"Cache-Control": "no-store"}
            )
        return get_response(request)

    return middleware
