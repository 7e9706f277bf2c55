"""Each request's id on its log lines and in its answer's X-Request-ID header: the incoming
X-Request-ID when it is sane (the proxy's, so its access log and ours join), else a new one.

The id stays set until the request has finished (request_finished), not only while the
middleware runs: Django logs a 4xx/5xx answer ("Not Found: …") after the middleware chain.
"""

from django.core.signals import request_finished
from django.dispatch import receiver

from calendarsync import logcontext

HEADER = "X-Request-ID"


def request_id(get_response):
    def middleware(request):
        request.request_id = logcontext.request_id_from(request.headers.get(HEADER))
        logcontext.request_id.set(request.request_id)
        response = get_response(request)
        response[HEADER] = request.request_id
        return response

    return middleware


@receiver(request_finished, dispatch_uid="mss_request_id_clear")
def _request_finished(sender, **kwargs):
    logcontext.request_id.set(None)
