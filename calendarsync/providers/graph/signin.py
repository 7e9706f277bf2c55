"""Signing the admin in to Microsoft before admin consent: which tenant is theirs, which roles.

msal runs the authorization code flow (PKCE, state, nonce checked against the ID token). Since
msal 1.38 it no longer validates the ID token, so `validated_claims` does: the signature against
the tenant's published keys, issuer, audience and expiry.
"""

import logging
import warnings
from dataclasses import dataclass

import jwt
import msal
import requests
from django.conf import settings

from ..base import ProviderError
from .client import TIMEOUT, http_session
from .consent import TENANT_ID

logger = logging.getLogger(__name__)

# Directory role template ids that may grant application permissions tenant-wide.
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
CONSENT_ROLES = {GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR}


class SigninFailed(ProviderError):
    """The Microsoft sign-in did not prove a tenant (declined, failed, or a token we refuse)."""

    def __init__(self, message: str, *, code: str = "", description: str = ""):
        super().__init__(message, permanent=True, code=code)
        self.description = description


@dataclass(frozen=True)
class SignedInAdmin:
    tenant_id: str
    username: str
    may_consent: bool  # holds a role that can grant application permissions


def _login_base() -> str:
    return settings.MS_LOGIN_URL.rstrip("/")


def _app() -> msal.ConfidentialClientApplication:
    # "organizations": a work account of any tenant; the ID token then says which one.
    return msal.ConfidentialClientApplication(
        settings.MS_CLIENT_ID,
        client_credential=settings.MS_CLIENT_SECRET,
        authority=f"{_login_base()}/organizations",
        http_client=http_session(),
        instance_discovery=False,
        timeout=TIMEOUT[1],
    )


def start(redirect_uri: str, state: str) -> dict:
    """msal's flow (JSON-safe, kept in the session); its `auth_uri` is where the admin goes."""
    try:
        # The answer comes back in the query, not as form_post (msal's advice): the session
        # cookie is SameSite=Lax, so a cross-site POST would arrive without the session that
        # holds this flow. The code is single-use and bound to our PKCE verifier.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "response_mode='form_post'", UserWarning)
            return _app().initiate_auth_code_flow(
                scopes=[],
                redirect_uri=redirect_uri,
                state=state,
                prompt="select_account",
                response_mode="query",
            )
    except (requests.RequestException, ValueError) as exc:
        raise SigninFailed(f"sign-in service unreachable: {type(exc).__name__}") from exc


def finish(flow: dict, answer: dict) -> SignedInAdmin:
    """Redeem the answer's code; the validated ID token names the tenant and the roles."""
    try:
        result = _app().acquire_token_by_auth_code_flow(flow, answer)
    except (requests.RequestException, ValueError, RuntimeError) as exc:
        # ValueError: state mismatch; RuntimeError: the ID token's nonce is not ours.
        raise SigninFailed(f"sign-in refused: {type(exc).__name__}", code="signin") from exc
    if "error" in result:
        raise SigninFailed(
            f"sign-in failed: {result['error']}",
            code=result["error"],
            description=result.get("error_description", ""),
        )
    claims = validated_claims(result.get("id_token", ""))
    roles = set(claims.get("wids") or ())
    return SignedInAdmin(
        tenant_id=claims["tid"],
        username=claims.get("preferred_username", ""),
        may_consent=bool(roles & CONSENT_ROLES),
    )


def validated_claims(id_token: str) -> dict:
    try:
        tenant_id = jwt.decode(id_token, options={"verify_signature": False}).get("tid", "")
        if not TENANT_ID.fullmatch(str(tenant_id)):
            raise SigninFailed("ID token names no tenant", code="id_token")
        key_id = jwt.get_unverified_header(id_token).get("kid")
        keys = http_session().get(
            f"{_login_base()}/{tenant_id}/discovery/v2.0/keys", timeout=TIMEOUT
        )
        keys.raise_for_status()
        key = next((k for k in keys.json().get("keys", []) if k.get("kid") == key_id), None)
        if key is None:
            raise SigninFailed("ID token signed with an unknown key", code="id_token")
        return jwt.decode(
            id_token,
            jwt.PyJWK(key, algorithm="RS256"),
            algorithms=["RS256"],
            audience=settings.MS_CLIENT_ID,
            issuer=f"{_login_base()}/{tenant_id}/v2.0",
            options={"require": ["exp", "iat", "iss", "aud", "tid"]},
        )
    except (jwt.InvalidTokenError, requests.RequestException, ValueError) as exc:
        raise SigninFailed(f"ID token refused: {type(exc).__name__}", code="id_token") from exc
