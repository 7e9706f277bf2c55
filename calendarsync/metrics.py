"""The sync core's and the providers' Prometheus metrics (served at /metrics by mss.metrics).

Counters and histograms only: what the database knows (mailboxes waiting, subscriptions,
integrations) is read at scrape time (calendarsync.metrics_state). Labels are fixed words or
HTTP status codes: never an email, a subject, a tenant or an integration.
"""

import functools
import time

from prometheus_client import Counter, Histogram

SYNCS = Counter(
    "mss_syncs",
    "Mailbox syncs by kind (change: one mailbox for a person's change; chunk: a bulk run) "
    "and outcome (ok, failed, busy: another run held it, inactive: it may not sync now).",
    ["kind", "outcome"],
)
SYNC_DURATION = Histogram(
    "mss_sync_duration_seconds",
    "How long one sync run took (one mailbox, or a whole chunk), by kind.",
    ["kind"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 240),
)
PROVIDER_RESPONSES = Counter(
    "mss_provider_http_responses",
    "HTTP answers from Microsoft Graph (and its sign-in) or EWS, by provider and status "
    "(status 'error': no answer, e.g. connection refused or timed out).",
    ["provider", "status"],
)
PROVIDER_THROTTLE_WAIT = Histogram(
    "mss_provider_throttle_wait_seconds",
    "Waits a provider asked for (Graph 429/503 Retry-After, EWS ErrorServerBusy back-off).",
    ["provider"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
NOTIFICATIONS_RECEIVED = Counter(
    "mss_notifications_received",
    "Requests to a change-notification endpoint (Graph webhook, EWS push), by provider.",
    ["provider"],
)
NOTIFICATIONS_REFUSED = Counter(
    "mss_notifications_refused",
    "Notification requests not taken, by provider and reason (bad_request, unproven, "
    "not_recorded: database or broker away, answered 503; unsubscribed: EWS told to stop).",
    ["provider", "reason"],
)
NOTIFICATION_ANSWER = Histogram(
    "mss_notification_answer_seconds",
    "How long a notification endpoint took to answer, by provider.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

GRAPH = "graph"
EWS = "ews"
# What a refusing answer's status says (the EWS Unsubscribe answer is a 200: counted apart).
REFUSED_BY_STATUS = {400: "bad_request", 403: "unproven", 503: "not_recorded"}


def timed_sync(kind: str):
    """Count a sync function's outcomes (one SyncOutcome, or a dict of them by mailbox) and
    time the run; an exception counts as one 'crashed' outcome and is raised."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.monotonic()
            try:
                result = function(*args, **kwargs)
            except Exception:
                SYNCS.labels(kind, "crashed").inc()
                raise
            finally:
                SYNC_DURATION.labels(kind).observe(time.monotonic() - started)
            outcomes = result.values() if isinstance(result, dict) else [result]
            for outcome in outcomes:
                SYNCS.labels(kind, str(outcome.status)).inc()
            return result

        return wrapper

    return decorate


def notification_endpoint(provider: str):
    """Count and time a notification view's requests; a 400/403/503 answer is refused."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            started = time.monotonic()
            NOTIFICATIONS_RECEIVED.labels(provider).inc()
            response = view(request, *args, **kwargs)
            if reason := REFUSED_BY_STATUS.get(response.status_code):
                NOTIFICATIONS_REFUSED.labels(provider, reason).inc()
            NOTIFICATION_ANSWER.labels(provider).observe(time.monotonic() - started)
            return response

        return wrapper

    return decorate


def count_response(provider: str, status) -> None:
    PROVIDER_RESPONSES.labels(provider, str(status)).inc()


def graph_response_hook(response, *args, **kwargs):
    """A requests response hook for the Graph session (Graph and its sign-in)."""
    count_response(GRAPH, response.status_code)


def throttled(provider: str, seconds: float) -> None:
    PROVIDER_THROTTLE_WAIT.labels(provider).observe(max(0.0, seconds))
