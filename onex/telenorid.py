"""Sign-in with Telenor ID (OpenID Connect, through mozilla-django-oidc).

The library runs the authorization code flow with PKCE, state and nonce, and checks the ID
token's signature against the JWKS. We add what it leaves out: the audience and issuer checks,
a verified email, users keyed by Telenor ID's `sub` rather than by email, memberships from One
X at every sign-in, a clear message when sign-in fails, and ending the Telenor ID session at
sign-out.
"""

import hashlib
import logging
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponseRedirect
from django.shortcuts import resolve_url
from django.utils.translation import gettext as _
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView

from . import memberships

logger = logging.getLogger(__name__)

USERNAME_PREFIX = "telenorid:"
SESSION_KEY = "signed_in_with_telenor_id"


def username_for(sub: str) -> str:
    """A stable username for a Telenor ID subject that no local account can have (150 max)."""
    if len(USERNAME_PREFIX + sub) <= 150:
        return USERNAME_PREFIX + sub
    return USERNAME_PREFIX + hashlib.sha256(sub.encode()).hexdigest()


class TelenorIdBackend(OIDCAuthenticationBackend):
    def get_payload_data(self, token, key):
        # The library checks only the signature; an ID token must also be for us, from them.
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=settings.TELENOR_ID_URL,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as error:
            raise SuspiciousOperation(f"Telenor ID token refused: {error}") from error

    def store_tokens(self, access_token, id_token):
        # Tokens are not kept; the session only remembers where it came from, for sign-out.
        self.request.session[SESSION_KEY] = True

    def verify_claims(self, claims):
        return bool(claims.get("sub") and claims.get("email") and claims.get("email_verified"))

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=username_for(claims["sub"]))

    def create_user(self, claims):
        user = self.UserModel(username=username_for(claims["sub"]))
        user.set_unusable_password()
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        user.email = claims["email"].strip().lower()
        user.first_name = (claims.get("given_name") or claims.get("name") or "")[:150]
        user.last_name = (claims.get("family_name") or "")[:150]
        user.save()
        memberships.sync_user(user, user.email)
        return user


class CallbackView(OIDCAuthenticationCallbackView):
    """The library's callback, with a Swedish message on the login page when sign-in fails."""

    def get(self, request):
        try:
            return super().get(request)
        except SuspiciousOperation as error:
            logger.warning("Telenor ID sign-in refused: %s", error)
        except requests.RequestException as error:
            logger.warning("Telenor ID could not be reached: %s", type(error).__name__)
        return self.login_failure()

    def login_failure(self):
        if self.request.GET.get("error") == "access_denied":
            message = _("The sign-in with Telenor ID was cancelled.")
        else:
            message = _("The sign-in with Telenor ID did not succeed. Try again.")
        messages.error(self.request, message)
        return HttpResponseRedirect(resolve_url(settings.LOGIN_URL))


def logout_url(request) -> str:
    """Where sign-out goes: Telenor ID's end-session endpoint when signed in through it.

    `client_id` names us instead of an `id_token_hint`, so no token ends up in a URL."""
    if not request.session.get(SESSION_KEY):
        return resolve_url(settings.LOGOUT_REDIRECT_URL)
    params = {
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": settings.TELENOR_ID_POST_LOGOUT_URL,
    }
    return f"{settings.OIDC_OP_LOGOUT_ENDPOINT}?{urlencode(params)}"
