"""The Telenor ID sandbox's state and behaviour, independent of HTTP.

One registered client (the product), identities with passwords, login transactions, SSO sessions,
authorization codes, access tokens, signing keys and the knobs that make it misbehave. It is as
strict as a real OpenID provider, so a relying-party bug fails against it: exact redirect URIs,
PKCE with S256 only, nonce and state required, single-use codes bound to client and redirect URI,
client authentication at the token endpoint (the rules themselves are in oauth.py).
"""

import itertools
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from . import demo
from .keys import ALGORITHM, KeyRing
from .knobs import Knobs
from .oauth import (
    CLAIMS,
    PROMPTS,
    SCOPES,
    AuthRequest,
    OAuthError,
    PageError,
    Repeated,
    at_hash,
    authenticate_client,
    check_verifier,
    parse_auth_request,
    same,
    single,
    singles,
    valid_uri,
    with_query,
)

DEFAULT_CLIENT_ID = "mss-kalenderkoppling"
DEFAULT_CLIENT_SECRET = "sandbox-telenorid-secret"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/oidc/callback/"
DEFAULT_POST_LOGOUT_URI = "http://127.0.0.1:8000/"
CLIENT_NAME = "MSS Kalenderkoppling"

CODE_SECONDS = 60
ACCESS_TOKEN_SECONDS = 3600
ID_TOKEN_SECONDS = 300
TRANSACTION_SECONDS = 600  # how long a login form stays usable
EXPIRED_SHIFT = 3600  # the `expired_token` knob moves iat and exp this far into the past
LOG_LIMIT = 100_000
# An opaque, stable subject per e-mail address (the same across sandbox restarts).
SUBJECT_NAMESPACE = uuid.UUID("4c1d7a52-6f0e-4b8e-9d43-1f6a2b7c9e01")
# What /token answers, by status, when the `token_error` knob is set.
INJECTED_STATUS = {"server_error": 500, "temporarily_unavailable": 503}


class WrongCredentials(Exception):
    pass


class Step(Enum):
    REDIRECT = "redirect"  # back to the client, with a code or an error
    LOGIN_FORM = "login_form"


@dataclass(frozen=True)
class Answer:
    """What the authorization endpoint does with a request."""

    step: Step
    location: str = ""
    transaction: str = ""
    login_hint: str = ""


@dataclass
class Identity:
    email: str
    password: str
    name: str
    email_verified: bool = True

    @property
    def sub(self) -> str:
        return str(uuid.uuid5(SUBJECT_NAMESPACE, self.email))

    def claims(self, scopes) -> dict:
        """The claims the granted scopes release (OpenID Connect Core 5.4)."""
        given, _, family = self.name.partition(" ")
        claims = {"sub": self.sub}
        if "email" in scopes:
            claims.update(email=self.email, email_verified=self.email_verified)
        if "profile" in scopes:
            claims.update(name=self.name, given_name=given, family_name=family)
        return claims

    def public(self) -> dict:
        return {
            "email": self.email,
            "name": self.name,
            "email_verified": self.email_verified,
            "sub": self.sub,
        }


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]


@dataclass
class Grant:
    """An authorization code and what it was issued for."""

    request: AuthRequest
    client_id: str
    email: str
    auth_time: float
    expires: float
    used: bool = False
    access_tokens: list[str] = field(default_factory=list)


class Provider:
    def __init__(
        self,
        *,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        redirect_uris=(DEFAULT_REDIRECT_URI,),
        post_logout_redirect_uris=(DEFAULT_POST_LOGOUT_URI,),
        with_demo=True,
        clock=time.time,
    ):
        self.lock = threading.RLock()
        self.clock = clock  # tests may move time forward
        self.issuer = ""  # the server sets it once it knows its port
        self.with_demo = with_demo
        self.client = Client(
            client_id, client_secret, list(redirect_uris), list(post_logout_redirect_uris)
        )
        self.keys = KeyRing()
        self.knobs = Knobs()
        self.identities: dict[str, Identity] = {}
        self.transactions: dict[str, tuple[AuthRequest, float]] = {}
        self.sessions: dict[str, dict] = {}
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, dict] = {}
        self.log: deque = deque(maxlen=LOG_LIMIT)
        self.log_seq = itertools.count(1)
        self.reset()

    # ----- sandbox controls

    def reset(self):
        """Demo identities, knobs off, no sessions, codes or tokens. Keys, the client's URIs
        and the request log stay."""
        with self.lock:
            self.knobs = Knobs()
            self.identities.clear()
            for person in demo.demo_identities() if self.with_demo else ():
                self.put_identity(person["email"], person)
            self.transactions.clear()
            self.sessions.clear()
            self.codes.clear()
            self.tokens.clear()

    def record(self, entry: dict):
        with self.lock:
            entry["seq"] = next(self.log_seq)
            entry["time"] = self.clock()
            self.log.append(entry)

    def put_identity(self, email: str, data: dict) -> Identity:
        email = (email or "").strip().lower()
        if "@" not in email:
            raise ValueError("an identity needs an e-mail address")
        if not isinstance(data, dict):
            raise ValueError("the identity must be a JSON object")
        password = data.get("password")
        if not isinstance(password, str) or not password:
            raise ValueError("password is required")
        name = data.get("name") or email.split("@")[0]
        verified = data.get("email_verified", True)
        if not isinstance(name, str) or not isinstance(verified, bool):
            raise ValueError("name must be a string and email_verified a boolean")
        identity = Identity(email, password, name, verified)
        with self.lock:
            self.identities[email] = identity
        return identity

    def delete_identity(self, email: str) -> bool:
        """Forget a person, with their SSO sessions and access tokens."""
        email = email.strip().lower()
        with self.lock:
            if self.identities.pop(email, None) is None:
                return False
            for sid in [s for s, v in self.sessions.items() if v["email"] == email]:
                del self.sessions[sid]
            for token in [t for t, v in self.tokens.items() if v["email"] == email]:
                del self.tokens[token]
            return True

    def register(self, redirect_uris=None, post_logout_redirect_uris=None):
        """Replace the client's redirect URIs and/or post-logout redirect URIs."""
        for uris in (redirect_uris, post_logout_redirect_uris):
            if uris is not None and (
                not isinstance(uris, list) or not all(valid_uri(u) for u in uris)
            ):
                raise ValueError("URIs must be a list of absolute http(s) URLs without fragment")
        with self.lock:
            if redirect_uris is not None:
                self.client.redirect_uris = list(redirect_uris)
            if post_logout_redirect_uris is not None:
                self.client.post_logout_redirect_uris = list(post_logout_redirect_uris)

    def client_info(self) -> dict:
        with self.lock:
            return {
                "client_id": self.client.client_id,
                "redirect_uris": list(self.client.redirect_uris),
                "post_logout_redirect_uris": list(self.client.post_logout_redirect_uris),
            }

    def rotate_key(self) -> dict:
        previous = self.keys.current.kid
        return {"kid": self.keys.rotate().kid, "previous": previous}

    # ----- discovery

    def discovery(self) -> dict:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "end_session_endpoint": f"{base}/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": list(CLAIMS),
            "prompt_values_supported": sorted(PROMPTS),
            "ui_locales_supported": ["sv"],
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
        }

    # ----- authorization endpoint

    def authorize(self, params: dict[str, list[str]], session_id: str | None) -> Answer:
        """PageError when client or redirect URI is wrong (never redirect there); otherwise a
        redirect back (with a code or an error) or the login form."""
        try:
            client_id, redirect_uri = single(params, "client_id"), single(params, "redirect_uri")
        except Repeated as repeated:
            raise PageError(f"The parameter {repeated} was sent more than once.") from None
        if client_id is None:
            raise PageError("The request has no client_id.")
        if client_id != self.client.client_id:
            raise PageError(f"Unknown client_id {client_id!r}.")
        if redirect_uri is None:
            raise PageError("The request has no redirect_uri.")
        if redirect_uri not in self.client_info()["redirect_uris"]:
            raise PageError(f"The redirect_uri {redirect_uri!r} is not registered for the client.")
        try:
            state = single(params, "state")
        except Repeated:
            state = None
        try:
            request = parse_auth_request(params, redirect_uri)
        except Repeated as repeated:
            error = OAuthError("invalid_request", f"The parameter {repeated} was sent twice.")
            return self._error_redirect(redirect_uri, error, state)
        except OAuthError as error:
            return self._error_redirect(redirect_uri, error, state)
        with self.lock:
            session = self._live_session(session_id, request.max_age)
            if session and "login" not in request.prompt:
                location = self._issue_code(request, session["email"], session["auth_time"])
                return Answer(Step.REDIRECT, location=location)
            if "none" in request.prompt:
                error = OAuthError("login_required", "The user is not signed in to Telenor ID.")
                return self._error_redirect(redirect_uri, error, state)
            self._sweep()
            transaction = secrets.token_urlsafe(24)
            self.transactions[transaction] = (request, self.clock() + TRANSACTION_SECONDS)
        return Answer(Step.LOGIN_FORM, transaction=transaction, login_hint=request.login_hint)

    def _error_redirect(self, redirect_uri, error: OAuthError, state) -> Answer:
        params = {**error.as_dict(), "state": state}
        return Answer(Step.REDIRECT, location=with_query(redirect_uri, params))

    def _live_session(self, session_id, max_age=None) -> dict | None:
        session = self.sessions.get(session_id or "")
        if not session or session["email"] not in self.identities:
            return None
        if max_age is not None and self.clock() - session["auth_time"] > max_age:
            return None
        return session

    def _issue_code(self, request: AuthRequest, email: str, auth_time: float) -> str:
        code = secrets.token_urlsafe(32)
        self.codes[code] = Grant(
            request, self.client.client_id, email, auth_time, self.clock() + CODE_SECONDS
        )
        return with_query(request.redirect_uri, {"code": code, "state": request.state})

    def _sweep(self):
        """Forget what can no longer be used (spent codes stay a while, to refuse a reuse)."""
        now = self.clock()
        for txn in [t for t, (_, expires) in self.transactions.items() if expires < now]:
            del self.transactions[txn]
        for code in [c for c, g in self.codes.items() if g.expires + TRANSACTION_SECONDS < now]:
            del self.codes[code]
        for token in [t for t, v in self.tokens.items() if v["expires"] < now]:
            del self.tokens[token]

    # ----- login form

    def pending(self, transaction: str) -> AuthRequest | None:
        with self.lock:
            request, expires = self.transactions.get(transaction or "", (None, 0))
            return request if expires >= self.clock() else None

    def login(self, transaction: str, email: str, password: str) -> tuple[str, str]:
        """Check the credentials for a pending login: the new SSO session id and where the
        browser goes next. WrongCredentials keeps the login pending."""
        with self.lock:
            request = self.pending(transaction)
            if request is None:
                raise PageError("The sign-in has expired or was already completed.")
            identity = self.identities.get((email or "").strip().lower())
            if identity is None or not same(identity.password, password or ""):
                raise WrongCredentials
            del self.transactions[transaction]
            session_id = secrets.token_urlsafe(32)
            auth_time = self.clock()
            self.sessions[session_id] = {"email": identity.email, "auth_time": auth_time}
            return session_id, self._issue_code(request, identity.email, auth_time)

    # ----- token endpoint

    def token(self, form: dict[str, list[str]], authorization: str, content_type: str) -> dict:
        if self.knobs.token_error:
            error = self.knobs.token_error
            raise OAuthError(error, "Injected by the sandbox.", INJECTED_STATUS.get(error, 400))
        if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "Send the form as x-www-form-urlencoded.")
        try:
            values = singles(form)
        except Repeated as repeated:
            raise OAuthError(
                "invalid_request", f"The parameter {repeated} was sent twice."
            ) from None
        client_id = authenticate_client(
            values, authorization, self.client.client_id, self.client.client_secret
        )
        grant_type = values.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "grant_type is required.")
        if grant_type != "authorization_code":
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is refused.")
        if "code" not in values:
            raise OAuthError("invalid_request", "code is required.")
        with self.lock:
            grant = self._redeem(values, client_id)
            identity = self.identities.get(grant.email)
            if identity is None:
                raise OAuthError("invalid_grant", "The user no longer exists.")
            access_token = secrets.token_urlsafe(32)
            self.tokens[access_token] = {
                "email": identity.email,
                "scopes": grant.request.scopes,
                "client_id": client_id,
                "expires": self.clock() + ACCESS_TOKEN_SECONDS,
            }
            grant.access_tokens.append(access_token)
            id_token = self._id_token(identity, grant, access_token)
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": " ".join(grant.request.scopes),
            "id_token": id_token,
        }

    def _redeem(self, values: dict, client_id: str) -> Grant:
        grant = self.codes.get(values["code"])
        if grant is None:
            raise OAuthError("invalid_grant", "Unknown authorization code.")
        if grant.used:
            # RFC 6749, 4.1.2: a code used twice revokes what it gave the first time.
            for token in grant.access_tokens:
                self.tokens.pop(token, None)
            raise OAuthError("invalid_grant", "The authorization code was already used.")
        grant.used = True  # whatever happens next, this code is spent
        if self.clock() > grant.expires:
            raise OAuthError("invalid_grant", "The authorization code has expired.")
        if grant.client_id != client_id:
            raise OAuthError("invalid_grant", "The code was issued to another client.")
        redirect_uri = values.get("redirect_uri")
        if redirect_uri is None:
            raise OAuthError("invalid_request", "redirect_uri is required.")
        if redirect_uri != grant.request.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization's.")
        check_verifier(values.get("code_verifier"), grant.request.code_challenge)
        return grant

    def _id_token(self, identity: Identity, grant: Grant, access_token: str) -> str:
        knobs = self.knobs
        issued = int(self.clock() - (EXPIRED_SHIFT if knobs.expired_token else 0))
        claims = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "exp": issued + ID_TOKEN_SECONDS,
            "iat": issued,
            "auth_time": int(min(grant.auth_time, issued)),
            "nonce": secrets.token_urlsafe(16) if knobs.wrong_nonce else grant.request.nonce,
            "at_hash": at_hash(access_token),
            **identity.claims(grant.request.scopes),
        }
        return self.keys.sign(claims, stray=knobs.unknown_key)

    # ----- userinfo endpoint

    def userinfo(self, authorization: str) -> dict:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            challenge = {"WWW-Authenticate": 'Bearer realm="Telenor ID"'}
            raise OAuthError("invalid_request", "A Bearer token is required.", 401, challenge)
        with self.lock:
            grant = self.tokens.get(token.strip())
            identity = self.identities.get(grant["email"]) if grant else None
            if identity is None or grant["expires"] < self.clock():
                challenge = {
                    "WWW-Authenticate": 'Bearer realm="Telenor ID", error="invalid_token", '
                    'error_description="The access token is unknown or has expired"'
                }
                raise OAuthError("invalid_token", "Unknown or expired token.", 401, challenge)
            return identity.claims(grant["scopes"])

    # ----- end session endpoint (OpenID Connect RP-Initiated Logout 1.0)

    def logout(self, params: dict[str, list[str]], session_id: str | None) -> str | None:
        """End the SSO session: where to send the browser, or None for the logged-out page.
        PageError (and the session kept) for a request that cannot be trusted."""
        try:
            values = singles(params)
        except Repeated as repeated:
            raise PageError(f"The parameter {repeated} was sent more than once.") from None
        client_id = values.get("client_id")
        if client_id is not None and client_id != self.client.client_id:
            raise PageError(f"Unknown client_id {client_id!r}.")
        hint = values.get("id_token_hint")
        if hint is not None:
            claims = self.keys.verify(hint)
            if claims is None or claims.get("iss") != self.issuer:
                raise PageError("The id_token_hint was not issued by Telenor ID.")
            audience = claims.get("aud")
            if self.client.client_id not in (
                audience if isinstance(audience, list) else [audience]
            ):
                raise PageError("The id_token_hint was issued to another client.")
        target = values.get("post_logout_redirect_uri")
        if target is not None:
            if hint is None and client_id is None:
                raise PageError("post_logout_redirect_uri needs id_token_hint or client_id.")
            if target not in self.client_info()["post_logout_redirect_uris"]:
                raise PageError(f"The post_logout_redirect_uri {target!r} is not registered.")
        with self.lock:
            self.sessions.pop(session_id or "", None)
        return None if target is None else with_query(target, {"state": values.get("state")})
