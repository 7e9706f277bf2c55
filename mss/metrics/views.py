"""GET /metrics: Prometheus's text format, for Prometheus only.

Open in development. In production it answers only with METRICS_TOKEN as a bearer token
(404 while none is set, 401 for a wrong or missing one); never a session, never a cookie.
"""

import hmac

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

from calendarsync.metrics_state import StateCollector

from . import process_registry

BEARER = "bearer "


def exposition() -> bytes:
    """The processes' metrics, then the database's state read now."""
    state = CollectorRegistry()
    state.register(StateCollector())
    return generate_latest(process_registry()) + generate_latest(state)


def _authorized(request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    if given[: len(BEARER)].lower() != BEARER:
        return False
    return hmac.compare_digest(given[len(BEARER) :].strip().encode(), token.encode())


@never_cache
@require_GET
def metrics(request) -> HttpResponse:
    if settings.PRODUCTION:
        token = settings.METRICS_TOKEN
        if not token:
            raise Http404  # switched off until a token is set
        if not _authorized(request, token):
            return HttpResponse(status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
