"""Microsoft Graph change and lifecycle notification endpoints (called by Microsoft).

Both answer Graph's validation handshake with the token as text/plain. A notification is
answered at once: it proves itself (GraphProvider.read_notices) and the core only records what
to do; the work runs later in a worker. Graph delivers again, with backoff for up to 4 hours,
whatever it did not get a 2xx for, so the answers are:
- 202 once recorded (a missed notification, like a change, requests a sync of its mailbox);
- 202 for a subscription we do not hold: dropped, so Graph stops retrying it;
- 503 when the product cannot record it (database or broker away): Graph tries again later;
- 400 for a body Graph would never send, 403 when nothing proved itself.
An unproven notification is never acted on.
"""

import logging

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calendarsync import metrics, tasks

from ..base import BadNotification
from .provider import GraphProvider

logger = logging.getLogger(__name__)

MAX_VALIDATION_TOKEN = 1024


@metrics.notification_endpoint(metrics.GRAPH)
def _receive(request) -> HttpResponse:
    token = request.GET.get("validationToken")
    if token is not None:
        # Django has already URL-decoded it; echo it verbatim, as plain text, never as HTML.
        return HttpResponse(token[:MAX_VALIDATION_TOKEN], content_type="text/plain; charset=utf-8")
    try:
        read = GraphProvider.read_notices(request.body)
        if read.unproven and not read.notices:
            return HttpResponse(status=403)  # nothing proved itself
        tasks.act_on_notices(read.notices)
    except BadNotification:
        return HttpResponse(status=400)
    except tasks.NOT_RECORDED:
        logger.warning("Graph notification not recorded; answered 503", exc_info=True)
        return HttpResponse(status=503)
    return HttpResponse(status=202)


graph_notifications = csrf_exempt(require_POST(_receive))
graph_lifecycle = csrf_exempt(require_POST(_receive))
