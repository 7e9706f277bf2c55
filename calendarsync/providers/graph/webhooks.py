"""Microsoft Graph change and lifecycle notification endpoints (called by Microsoft).

Both answer Graph's validation handshake with the token as text/plain. A notification is
answered at once: it proves itself (GraphProvider.verified_notices) and the core only records
what to do; the work runs later in a worker. A body Graph would never send is answered 400, an
unproven notification is never acted on.
"""

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calendarsync import tasks

from ..base import BadNotification
from .provider import GraphProvider

MAX_VALIDATION_TOKEN = 1024


def _receive(request) -> HttpResponse:
    token = request.GET.get("validationToken")
    if token is not None:
        # Django has already URL-decoded it; echo it verbatim, as plain text, never as HTML.
        return HttpResponse(token[:MAX_VALIDATION_TOKEN], content_type="text/plain; charset=utf-8")
    try:
        notices = GraphProvider.verified_notices(request.body)
    except BadNotification:
        return HttpResponse(status=400)
    if not notices:
        return HttpResponse(status=403)  # nothing proved itself
    tasks.act_on_notices(notices)
    return HttpResponse(status=202)


graph_notifications = csrf_exempt(require_POST(_receive))
graph_lifecycle = csrf_exempt(require_POST(_receive))
