"""The Exchange identity token (Exchange On Prem): what `getUserIdentityTokenAsync` gives the
add-in, and how it proves itself.

An RS256 JWT whose `x5t` header names a certificate in the Exchange server's auth metadata
document, and whose `appctx` claim (a JSON string) holds the user's Exchange id (`msexchuid`)
and that document's address (`amurl`). The token is written by whoever sends it, so the
metadata is fetched only from the Exchange host of the integration the token claims (the EWS
URL an admin entered, through the same outbound guard and CA settings as EWS itself), never
from `amurl`: the token must not choose where we fetch its proof. The metadata is cached for
an hour; a certificate we do not know fetches it once more (at most every REFRESH_SECONDS).
"""

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cache as memoize
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.cache import cache

from calendarsync import outbound

from ..addin import TokenRefused, VerificationUnavailable, taskpane_url

logger = logging.getLogger(__name__)

EXCHANGE_SERVICE = "00000002-0000-0ff1-ce00-000000000000"  # Exchange's service principal
TOKEN_VERSION = "ExIdTok.V1"
METADATA_PATH = "/autodiscover/metadata/json/1"
METADATA_SECONDS = 3600
REFRESH_SECONDS = 300
LEEWAY_SECONDS = 300  # Exchange's own validation library allows five minutes of clock skew
TIMEOUT = (5, 15)
MAX_METADATA_BYTES = 256 * 1024


@dataclass(frozen=True)
class AppContext:
    """What the token's `appctx` says (before or after its signature is checked)."""

    msexchuid: str
    amurl: str

    @property
    def unique_id(self) -> str:
        """The user's identity as Microsoft recommends keying it: the Exchange id together
        with the metadata URL (the id is unique per Exchange organisation)."""
        return hashlib.sha256((self.msexchuid + self.amurl).encode()).hexdigest()


def is_identity_token(token: str) -> bool:
    """An Exchange identity token carries `appctx`; an Entra access token does not."""
    try:
        return "appctx" in jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return False


def app_context(claims: dict) -> AppContext:
    raw = claims.get("appctx")
    try:
        context = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        context = None
    if not isinstance(context, dict) or context.get("version") != TOKEN_VERSION:
        raise TokenRefused("no ExIdTok.V1 app context")
    msexchuid, amurl = context.get("msexchuid"), context.get("amurl")
    if not isinstance(msexchuid, str) or not msexchuid or not isinstance(amurl, str):
        raise TokenRefused("the app context names no user or metadata")
    if server_of(amurl) is None:
        raise TokenRefused("the app context's metadata URL is not https")
    return AppContext(msexchuid=msexchuid, amurl=amurl)


def unverified_context(token: str) -> AppContext:
    """The app context before the signature is checked: which Exchange server to ask."""
    try:
        return app_context(jwt.decode(token, options={"verify_signature": False}))
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"not a JWT: {type(exc).__name__}") from exc


def server_of(url: str) -> tuple[str, int] | None:
    """(host, port) of an https URL, None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme != "https" or not host or parts.username or parts.password:
        return None
    return host, port


def same_server(url: str, ews_url: str) -> bool:
    """Whether `url` names the very Exchange host (scheme, host and port) of `ews_url`."""
    server = server_of(url)
    return server is not None and server == server_of(ews_url)


def metadata_url(ews_url: str) -> str:
    """The auth metadata document of the Exchange host in the integration's EWS URL."""
    parts = urlsplit(ews_url)
    return urlunsplit(("https", parts.netloc, METADATA_PATH, "", ""))


def validate(token: str, integration) -> AppContext:
    """The app context of an identity token issued by `integration`'s Exchange server for our
    task pane; TokenRefused otherwise (VerificationUnavailable: the server cannot be asked)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"bad header: {type(exc).__name__}") from exc
    thumbprint = header.get("x5t")
    if (
        header.get("typ") != "JWT"
        or header.get("alg") != "RS256"
        or not isinstance(thumbprint, str)
    ):
        raise TokenRefused("not an RS256 JWT with a certificate thumbprint")
    thumbprint = thumbprint.rstrip("=")
    if not same_server(unverified_context(token).amurl, integration.ews_url):
        raise TokenRefused("the token is not from this integration's Exchange server")
    metadata = _metadata(metadata_url(integration.ews_url), thumbprint)
    certificate = metadata["keys"].get(thumbprint)
    if certificate is None:
        raise TokenRefused("the token is signed with an unknown certificate")
    try:
        claims = jwt.decode(
            token,
            _public_key(certificate),
            algorithms=["RS256"],
            issuer=metadata["issuer"],
            leeway=LEEWAY_SECONDS,
            # Exchange writes nbf and exp as numeric strings; PyJWT reads those too.
            options={"require": ["exp", "nbf", "iss", "aud"], "verify_aud": False},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"token refused: {type(exc).__name__}") from exc
    if not _is_our_pane(claims.get("aud")):
        raise TokenRefused("the token is for another add-in page")
    return app_context(claims)


def _is_our_pane(audience) -> bool:
    # Outlook names the page the add-in runs in, with its query (?lang=sv).
    if not isinstance(audience, str):
        return False
    parts = urlsplit(audience)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) == taskpane_url()


def _public_key(certificate_b64: str):
    try:
        key = x509.load_der_x509_certificate(base64.b64decode(certificate_b64)).public_key()
    except ValueError as exc:
        raise TokenRefused("the metadata's certificate cannot be read") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise TokenRefused("the metadata's certificate is not an RSA key")
    return key


def _metadata(url: str, thumbprint: str) -> dict:
    cache_key = f"addin-exchange-metadata:{url}"
    metadata = cache.get(cache_key)
    stale = metadata is not None and thumbprint not in metadata["keys"]
    if metadata is None or (stale and cache.add(f"{cache_key}:refreshed", True, REFRESH_SECONDS)):
        metadata = signing_metadata(fetch_metadata(url))
        cache.set(cache_key, metadata, METADATA_SECONDS)
        cache.set(f"{cache_key}:refreshed", True, REFRESH_SECONDS)
    return metadata


def signing_metadata(document) -> dict:
    """{"issuer", "keys": {x5t: base64 DER}} from Exchange's metadata document. A key counts
    only when its certificate's own SHA-1 thumbprint is the x5t it is listed under."""
    if not isinstance(document, dict):
        raise VerificationUnavailable("the metadata is not a JSON object")
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer.startswith(f"{EXCHANGE_SERVICE}@"):
        raise VerificationUnavailable("the metadata names no Exchange issuer")
    keys = {}
    for entry in document.get("keys") or ():
        try:
            if entry.get("usage") != "signing":
                continue
            value = entry["keyvalue"]["value"]
            der = base64.b64decode(value, validate=True)
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
        thumbprint = base64.urlsafe_b64encode(hashlib.sha1(der, usedforsecurity=False).digest())
        listed = str((entry.get("keyinfo") or {}).get("x5t") or "").rstrip("=")
        if thumbprint.rstrip(b"=").decode() == listed:
            keys[listed] = value
    return {"issuer": issuer, "keys": keys}


@memoize
def _session(ca_bundle: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never the environment's proxies or CAs
    session.verify = ca_bundle if ca_bundle and Path(ca_bundle).exists() else True
    return session


def fetch_metadata(url: str):
    """GET the metadata document at `url` (the integration's own host; no redirects)."""
    try:
        outbound.check_url(url)
    except outbound.RefusedURL as exc:
        raise VerificationUnavailable(f"metadata URL refused: {exc}") from exc
    try:
        session = _session(settings.EWS_CA_BUNDLE or "")
        with session.get(url, timeout=TIMEOUT, allow_redirects=False, stream=True) as response:
            if response.status_code != 200:
                raise VerificationUnavailable(f"metadata answered {response.status_code}")
            body = b""
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_METADATA_BYTES:
                    raise VerificationUnavailable("the metadata is too large")
        return json.loads(body)
    except (requests.RequestException, ValueError) as exc:
        logger.warning("Exchange's auth metadata could not be read: %s", type(exc).__name__)
        raise VerificationUnavailable(f"metadata unavailable: {type(exc).__name__}") from exc
