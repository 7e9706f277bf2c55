"""The protocol rules of OAuth 2.0 / OpenID Connect the sandbox enforces, as pure functions.

An authorization request is checked by `parse_auth_request`, a token request's client by
`authenticate_client`; neither knows about state or HTTP.
"""

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

SCOPES = ("openid", "email", "profile")
CLAIMS = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
)
PROMPTS = {"none", "login", "consent", "select_account"}
# RFC 7636: a verifier is 43-128 unreserved characters; an S256 challenge is 43 base64url ones.
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
# Never in the request log: what would let someone who reads it sign in or redeem a code.
SENSITIVE = {"password", "client_secret", "code_verifier", "id_token_hint", "access_token"}
REDACTED = "[redacted]"


class OAuthError(Exception):
    """An error answered to the client as OAuth says (a redirect, or JSON from /token)."""

    def __init__(self, error, description, status=400, headers=None):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.headers = headers or {}

    def as_dict(self):
        return {"error": self.error, "error_description": self.description}


class PageError(Exception):
    """An error shown to the user on a page: the request cannot safely be sent back."""


class Repeated(ValueError):
    """A parameter sent more than once (RFC 6749, 3.1: MUST NOT)."""


@dataclass(frozen=True)
class AuthRequest:
    """An authorization request that passed every check."""

    redirect_uri: str
    state: str
    nonce: str
    scopes: tuple[str, ...]
    code_challenge: str
    prompt: frozenset
    max_age: int | None
    login_hint: str


def single(params: dict[str, list[str]], name: str) -> str | None:
    """One parameter's value: blank counts as absent (RFC 6749, 3.1), repeated is an error."""
    values = [v for v in params.get(name, []) if v != ""]
    if len(values) > 1:
        raise Repeated(name)
    return values[0] if values else None


def singles(params: dict[str, list[str]]) -> dict[str, str]:
    values = {name: single(params, name) for name in params}
    return {name: value for name, value in values.items() if value is not None}


def with_query(uri: str, params: dict) -> str:
    """`uri` with `params` (None values left out) added to whatever query it already has."""
    split = urlsplit(uri)
    added = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{split.query}&{added}" if split.query else added
    return urlunsplit((split.scheme, split.netloc, split.path, query, split.fragment))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def redact(params: dict) -> dict:
    return {k: (REDACTED if k in SENSITIVE else v) for k, v in params.items()}


def valid_uri(uri) -> bool:
    if not isinstance(uri, str):
        return False
    split = urlsplit(uri)
    return split.scheme in ("http", "https") and bool(split.netloc) and not split.fragment


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def parse_auth_request(params: dict[str, list[str]], redirect_uri: str) -> AuthRequest:
    """The checks made once client and redirect URI are known good; OAuthError for the first
    that fails (sent back to the redirect URI), Repeated for a duplicated parameter."""
    if single(params, "request") is not None:
        raise OAuthError("request_not_supported", "Request objects are not supported.")
    if single(params, "request_uri") is not None:
        raise OAuthError("request_uri_not_supported", "request_uri is not supported.")
    response_type = single(params, "response_type")
    if response_type is None:
        raise OAuthError("invalid_request", "response_type is required.")
    if response_type != "code":
        raise OAuthError("unsupported_response_type", f"response_type {response_type!r}: use code.")
    response_mode = single(params, "response_mode")
    if response_mode not in (None, "query"):
        raise OAuthError("invalid_request", f"response_mode {response_mode!r}: use query.")
    scopes = tuple((single(params, "scope") or "").split())
    if "openid" not in scopes:
        raise OAuthError("invalid_scope", "The scope must include openid.")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise OAuthError("invalid_scope", f"Unknown scope: {' '.join(unknown)}.")
    state = single(params, "state")
    if state is None:
        raise OAuthError("invalid_request", "state is required.")
    nonce = single(params, "nonce")
    if nonce is None:
        raise OAuthError("invalid_request", "nonce is required.")
    challenge = single(params, "code_challenge")
    if challenge is None:
        raise OAuthError("invalid_request", "code_challenge is required (PKCE).")
    method = single(params, "code_challenge_method") or "plain"  # RFC 7636, 4.3
    if method != "S256":
        raise OAuthError("invalid_request", f"code_challenge_method {method!r}: use S256.")
    if not CHALLENGE.match(challenge):
        raise OAuthError("invalid_request", "code_challenge is not an S256 challenge.")
    prompt = frozenset((single(params, "prompt") or "").split())
    if prompt - PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise OAuthError("invalid_request", f"Bad prompt {' '.join(sorted(prompt))!r}.")
    max_age = single(params, "max_age")
    if max_age is not None and not max_age.isdigit():
        raise OAuthError("invalid_request", "max_age must be a number of seconds.")
    return AuthRequest(
        redirect_uri=redirect_uri,
        state=state,
        nonce=nonce,
        scopes=scopes,
        code_challenge=challenge,
        prompt=prompt,
        max_age=int(max_age) if max_age is not None else None,
        login_hint=single(params, "login_hint") or "",
    )


def authenticate_client(values: dict, authorization: str, client_id: str, secret: str) -> str:
    """The client id, if the request proves the client's secret in exactly one of the two
    supported ways (client_secret_basic, client_secret_post); OAuthError otherwise."""
    challenge = {"WWW-Authenticate": 'Basic realm="Telenor ID"'}

    def refuse(description):
        return OAuthError("invalid_client", description, 401, challenge)

    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        if "client_secret" in values:
            raise OAuthError("invalid_request", "Use one client authentication method, not two.")
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except ValueError:
            raise refuse("Malformed Basic credentials.") from None
        given_id, sep, given_secret = decoded.partition(":")
        if not sep:
            raise refuse("Malformed Basic credentials.")
        if values.get("client_id", given_id) != given_id:
            raise refuse("client_id in the body differs from the Basic credentials.")
    elif "client_secret" in values:
        given_id, given_secret = values.get("client_id"), values["client_secret"]
        if given_id is None:
            raise refuse("client_id is required with client_secret_post.")
    else:
        raise refuse("Client authentication is required.")
    if not (same(given_id, client_id) & same(given_secret, secret)):
        raise refuse("Client authentication failed.")
    return given_id


def check_verifier(verifier: str | None, challenge: str) -> None:
    if verifier is None:
        raise OAuthError("invalid_request", "code_verifier is required (PKCE).")
    if not VERIFIER.match(verifier):
        raise OAuthError("invalid_request", "code_verifier is malformed (RFC 7636, 4.1).")
    if not same(s256(verifier), challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match code_challenge.")


def at_hash(access_token: str) -> str:
    """OpenID Connect Core 3.1.3.6: the left half of the token's SHA-256, base64url."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16])
