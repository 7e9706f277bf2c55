"""The Outlook add-in's Entra access token (nested app authentication, Exchange Online).

The pane asks MSAL for a token for our API (`settings.MS_ADDIN_API_SCOPE`); Entra issues it
with aud = our client id. It proves a tenant and a user when its RS256 signature checks out
against the tenant's published keys, and issuer, audience, times and scope are ours. The keys
are cached for an hour; a token signed with a key we do not know fetches them once more (at
most every KEY_REFRESH_SECONDS, as Microsoft's own libraries do), since Entra rotates keys.
"""

import logging
from dataclasses import dataclass

import jwt
import requests
from django.conf import settings
from django.core.cache import cache

from ..addin import TokenRefused, VerificationUnavailable
from .client import TIMEOUT, http_session
from .consent import TENANT_ID

logger = logging.getLogger(__name__)

SCOPE = "access_as_user"
KEYS_SECONDS = 3600
KEY_REFRESH_SECONDS = 300
LEEWAY_SECONDS = 60  # clock skew between Entra and us
MAX_KEYS_BYTES = 256 * 1024


@dataclass(frozen=True)
class EntraUser:
    tenant_id: str
    username: str  # preferred_username, lower case (the mailbox's address in Exchange Online)
    oid: str


def _login_base() -> str:
    return settings.MS_LOGIN_URL.rstrip("/")


def unverified_tenant(token: str) -> str:
    """The tenant the token names, before anything is checked (which integration to ask)."""
    try:
        tenant_id = jwt.decode(token, options={"verify_signature": False}).get("tid", "")
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"not a JWT: {type(exc).__name__}") from exc
    if not isinstance(tenant_id, str) or not TENANT_ID.fullmatch(tenant_id):
        raise TokenRefused("the token names no tenant")
    return tenant_id


def validate(token: str) -> EntraUser:
    """The tenant and user an add-in token proves; TokenRefused otherwise."""
    tenant_id = unverified_tenant(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"bad header: {type(exc).__name__}") from exc
    if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
        raise TokenRefused("not an RS256 token with a key id")
    key = _signing_key(tenant_id, header["kid"])
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=settings.MS_CLIENT_ID,
            issuer=f"{_login_base()}/{tenant_id}/v2.0",
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "nbf", "iat", "iss", "aud", "tid"]},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"token refused: {type(exc).__name__}") from exc
    if SCOPE not in str(claims.get("scp") or "").split():
        raise TokenRefused("the token is not for the add-in's API scope")
    username = claims.get("preferred_username")
    oid = claims.get("oid")
    if not isinstance(username, str) or not username or not isinstance(oid, str):
        raise TokenRefused("the token names no user")
    return EntraUser(tenant_id=tenant_id, username=username.strip().lower(), oid=oid)


def _keys_url(tenant_id: str) -> str:
    return f"{_login_base()}/{tenant_id}/discovery/v2.0/keys"


def _signing_key(tenant_id: str, key_id: str) -> jwt.PyJWK:
    url = _keys_url(tenant_id)
    cache_key = f"addin-jwks:{url}"
    keys = cache.get(cache_key)
    if keys is None or (key_id not in keys and _may_refresh(cache_key)):
        keys = fetch_keys(url)
        cache.set(cache_key, keys, KEYS_SECONDS)
        cache.set(f"{cache_key}:refreshed", True, KEY_REFRESH_SECONDS)
    if key_id not in keys:
        raise TokenRefused("the token is signed with an unknown key")
    try:
        return jwt.PyJWK(keys[key_id], algorithm="RS256")
    except jwt.PyJWTError as exc:
        raise TokenRefused(f"unusable key: {type(exc).__name__}") from exc


def _may_refresh(cache_key: str) -> bool:
    """An unknown key id refetches the keys, once per KEY_REFRESH_SECONDS (tokens with made-up
    key ids must not make us ask Entra on every request)."""
    return cache.add(f"{cache_key}:refreshed", True, KEY_REFRESH_SECONDS)


def fetch_keys(url: str) -> dict[str, dict]:
    """The tenant's published signing keys by key id (the seam tests may patch)."""
    try:
        response = http_session().get(url, timeout=TIMEOUT, allow_redirects=False)
        response.raise_for_status()
        if len(response.content) > MAX_KEYS_BYTES:
            raise ValueError("key set too large")
        published = response.json().get("keys", [])
    except (requests.RequestException, ValueError, AttributeError) as exc:
        logger.warning("Entra's signing keys could not be read: %s", type(exc).__name__)
        raise VerificationUnavailable(f"keys unavailable: {type(exc).__name__}") from exc
    return {
        key["kid"]: key
        for key in published
        if isinstance(key, dict) and isinstance(key.get("kid"), str) and key.get("kty") == "RSA"
    }
