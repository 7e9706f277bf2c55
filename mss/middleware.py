"""Headers every response carries that Django's own middleware does not set, and the idle
timeout of signed-in sessions."""

import time

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.utils.cache import add_never_cache_headers

SEEN = "_mss_seen"


def security_headers(get_response):
    def middleware(request):
        response = get_response(request)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        if getattr(request, "user", None) is not None and request.user.is_authenticated:
            # A signed-in page holds the company's data: never kept in a browser or proxy cache.
            add_never_cache_headers(response)
        return response

    return middleware


def idle_timeout(get_response):
    """Save a signed-in session again (which moves its expiry SESSION_COOKIE_AGE ahead) once
    it was last saved more than SESSION_REFRESH_SECONDS ago: an idle timeout without a
    database write on every request."""

    def middleware(request):
        if request.user.is_authenticated:
            now = int(time.time())
            if now - request.session.get(SEEN, 0) > settings.SESSION_REFRESH_SECONDS:
                request.session[SEEN] = now
        return get_response(request)

    return middleware


@receiver(user_logged_in, dispatch_uid="mss_session_seen")
def _seen_at_login(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        request.session[SEEN] = int(time.time())
