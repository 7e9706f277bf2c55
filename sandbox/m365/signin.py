"""Signing a person in, as Entra ID does it: the OpenID Connect authorization code flow.

`GET /{tenant}/oauth2/v2.0/authorize` ("organizations", "common" or a tenant id) checks the
request the way Entra does: an unknown app or an unregistered redirect URI gets an error page
and no redirect; other errors go back to the redirect URI with error, error_description and
state. Then a "Sign in to your account" page lists the tenants' people (or, with the `signin`
knob's auto mode, one of them is signed in at once) and the browser goes back with a code.
`POST /{tenant}/oauth2/v2.0/token` with grant_type=authorization_code redeems it once (client
secret, the same redirect URI, the PKCE verifier) for an RS256 ID token whose keys are at
`/{tenant}/discovery/v2.0/keys`. The `id_token` knob spoils tokens for the relying party's tests.

What msal 1.39 sends and expects: PKCE with S256, a nonce that is the SHA-256 hex of its own
(echoed as is in the ID token), client_info=1 on both legs (the redirect and the token answer then
carry client_info, base64url of {"uid": oid, "utid": tid}), scope "openid profile offline_access"
when the app asks for none.
"""

import base64
import hashlib
import html
import json
import re
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import unquote_plus, urlencode, urlsplit

from joserfc import jwt

from ..keys import b64url, signing_key
from . import demo

ORGANIZATIONS = ("organizations", "common")
# The product's callbacks (Django paths end in a slash); the sign-in one also without it.
CALLBACK_PATHS = (
    "/microsoft-sync/graph/signin/callback/",
    "/microsoft-sync/graph/signin/callback",
    "/microsoft-sync/graph/consent/callback/",
)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
CODE_LIFETIME = 600  # Entra's authorization codes last about ten minutes
PENDING_LIFETIME = 3600  # a sign-in page left open
TOKEN_LIFETIME = 3600
PAGE_USERS = 25  # people listed per tenant on the sign-in page (bench tenants have thousands)
RESPONSE_MODES = ("query", "fragment", "form_post")


def redirect_uris_for(base_url: str) -> list[str]:
    return [base_url.rstrip("/") + path for path in CALLBACK_PATHS]


DEFAULT_REDIRECT_URIS = tuple(redirect_uris_for("http://127.0.0.1:8000"))


def fingerprint(value: str) -> str:
    """What the request log shows of a code: enough to tell two apart, useless to redeem."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def token_error(status, error, code, description) -> tuple[int, dict]:
    """An error answer of the token endpoint, in Entra's shape."""
    return status, {
        "error": error,
        "error_description": f"{description}\r\nTrace ID: {secrets.token_hex(8)}",
        "error_codes": [int(code)],
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": secrets.token_hex(8),
        "correlation_id": secrets.token_hex(8),
    }


def basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """client_secret_basic: form-urlencoded id and secret, base64 of "id:secret" (RFC 6749)."""
    if not authorization or not authorization.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(authorization[6:], validate=True).decode()
    except ValueError:
        return None, None
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


class SignIn:
    """A Sandbox's sign-in state: registered redirect URIs, open sign-ins, codes, signing keys."""

    def __init__(self, sandbox, redirect_uris=()):
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.redirect_uris: list[str] = []
        self.register(DEFAULT_REDIRECT_URIS)
        self.register(redirect_uris)
        self.pending: dict[str, dict] = {}  # sign-in page's ctx → the checked request
        self.codes: dict[str, dict] = {}  # SHA-256 of a code → what it was issued for
        # Made on first use: an RSA key takes ~0.1 s and every test starts a sandbox. A restart
        # makes new keys (ID tokens are checked right after sign-in, nothing keeps them).
        self._keys: dict[str, dict] = {}

    # ----- the app registration's redirect URIs

    def register(self, uris) -> list[str]:
        with self.lock:
            for uri in uris:
                if uri not in self.redirect_uris:
                    self.redirect_uris.append(uri)
            return list(self.redirect_uris)

    def reset_redirect_uris(self) -> list[str]:
        with self.lock:
            self.redirect_uris = list(DEFAULT_REDIRECT_URIS)
            return list(self.redirect_uris)

    def registered(self, uri: str) -> bool:
        with self.lock:
            registered = list(self.redirect_uris)
        if uri in registered:
            return True
        split = urlsplit(uri)
        if split.scheme != "http" or split.hostname not in LOOPBACK_HOSTS or split.fragment:
            return False
        # Loopback redirect URIs: Entra ignores the port of http://127.0.0.1 and http://localhost
        # ones (local servers pick free ports, RFC 8252 §7.3). The sandbox also lets the two hosts
        # stand for each other, so live-server tests on random ports need not register anything.
        # The path (and query) must still equal a registered loopback URI's exactly.
        for known in registered:
            other = urlsplit(known)
            if (
                other.scheme == "http"
                and other.hostname in LOOPBACK_HOSTS
                and (other.path, other.query) == (split.path, split.query)
            ):
                return True
        return False

    # ----- keys

    def key(self, name: str = "signing") -> dict:
        """ "signing" is the published key; "rogue" (the unknown_key knob) is in no JWKS."""
        with self.lock:
            if name not in self._keys:
                self._keys[name] = signing_key(f"M365 sandbox {name} key")
            return self._keys[name]

    def jwks(self, tenant_key: str) -> dict:
        key = self.key("signing")
        public = key["jwk"].as_dict(private=False)
        tenant = "{tenantid}" if tenant_key in ORGANIZATIONS else tenant_key
        return {
            "keys": [
                {
                    # Entra's keys carry no "alg": RS256 is the only one it signs ID tokens with.
                    "kty": "RSA",
                    "use": "sig",
                    "kid": key["kid"],
                    "x5t": key["x5t"],
                    "n": public["n"],
                    "e": public["e"],
                    "x5c": [key["x5c"]],
                    "issuer": f"{self.sandbox.base_url}/{tenant}/v2.0",
                }
            ]
        }

    # ----- the authorization request

    def check(self, tenant_key: str, query: dict) -> tuple[str | None, dict | None, dict | None]:
        """Check an authorization request like Entra. Returns (page, request, error): `page` is
        an AADSTS message to show without going back; otherwise `request` is the checked request
        and `error` (if any) the error parameters to send back to its redirect URI."""
        sandbox = self.sandbox
        if tenant_key not in ORGANIZATIONS and tenant_key not in sandbox.tenants:
            return (
                f"AADSTS90002: Tenant '{tenant_key}' not found. Check to make sure you have the "
                "correct tenant ID and are signing into the correct cloud.",
                None,
                None,
            )
        client_id = query.get("client_id", "")
        if client_id != sandbox.client_id:
            return (
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant_key}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in the "
                "tenant. You may have sent your authentication request to the wrong tenant.",
                None,
                None,
            )
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri:
            return (
                "AADSTS900144: The request body must contain the following parameter: "
                "'redirect_uri'.",
                None,
                None,
            )
        if not self.registered(redirect_uri):
            return (
                f"AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does "
                f"not match the redirect URIs configured for the application '{client_id}'. "
                "Make sure the redirect URI sent in the request matches one added to your "
                "application in the Azure portal.",
                None,
                None,
            )
        response_mode = query.get("response_mode") or "query"
        scopes = query.get("scope", "").split()
        request = {
            "tenant_key": tenant_key,
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_mode": response_mode if response_mode in RESPONSE_MODES else "query",
            "scopes": scopes,
            "state": query.get("state") or None,
            "nonce": query.get("nonce") or None,
            "code_challenge": query.get("code_challenge") or None,
            "client_info": query.get("client_info") == "1",
            "login_hint": query.get("login_hint", ""),
            "prompt": query.get("prompt", ""),
            "max_age": query.get("max_age"),
            "created": time.time(),
        }

        def error(name, description):
            return None, request, {"error": name, "error_description": description}

        if response_mode not in RESPONSE_MODES:
            return error(
                "invalid_request",
                f"AADSTS90023: The response_mode '{response_mode}' is not supported.",
            )
        if query.get("response_type") != "code":
            return error(
                "unsupported_response_type",
                f"AADSTS700054: response_type '{query.get('response_type', '')}' is not enabled "
                "for the application. Use the authorization code flow (response_type=code).",
            )
        if "openid" not in scopes:
            return error(
                "invalid_scope",
                "AADSTS70011: The provided value for the input parameter 'scope' is not valid: "
                "a sign-in needs the 'openid' scope.",
            )
        for name in ("state", "nonce"):
            if not request[name]:
                return error(
                    "invalid_request",
                    f"AADSTS900144: The request body must contain the following parameter: "
                    f"'{name}'.",
                )
        if not request["code_challenge"]:
            return error(
                "invalid_request",
                "AADSTS9002325: Proof Key for Code Exchange is required for this sign-in: send "
                "code_challenge and code_challenge_method=S256.",
            )
        # Entra also takes "plain" (and assumes it when the method is left out); msal sends S256
        # and the sandbox insists on it, so a client that drops it is caught here.
        if query.get("code_challenge_method") != "S256":
            method = query.get("code_challenge_method", "")
            return error(
                "invalid_request",
                f"AADSTS501491: The code_challenge_method '{method}' is not supported here; "
                "use S256.",
            )
        return None, request, None

    def remember(self, request: dict) -> str:
        """Keep a checked request while its sign-in page is open; the page posts back its ctx."""
        ctx = secrets.token_urlsafe(24)
        with self.lock:
            now = time.time()
            stale = [k for k, v in self.pending.items() if v["created"] + PENDING_LIFETIME < now]
            for key in stale:
                del self.pending[key]
            self.pending[ctx] = request
        return ctx

    def recall(self, ctx: str) -> dict | None:
        with self.lock:
            return self.pending.get(ctx or "")

    def forget(self, ctx: str):
        with self.lock:
            self.pending.pop(ctx or "", None)

    # ----- people

    @staticmethod
    def roles(tenant: dict, user: dict) -> list[str]:
        return list(tenant.get("roles", {}).get(user["id"], []))

    def identities(self, tenant_key: str) -> list[tuple[dict, list[dict]]]:
        """The people the sign-in page offers, by tenant: those with a role first."""
        sandbox = self.sandbox
        with sandbox.lock:
            tenants = (
                list(sandbox.tenants.values())
                if tenant_key in ORGANIZATIONS
                else [sandbox.tenants[tenant_key]]
            )
            found = []
            for tenant in tenants:
                users = sorted(
                    tenant["users"].values(),
                    key=lambda u, t=tenant: (not self.roles(t, u), u["mail"]),
                )
                if users:
                    found.append((tenant, users[:PAGE_USERS]))
        return found

    def identity(self, request: dict, login: str) -> tuple[dict | None, dict | None, str | None]:
        """The tenant and user signing in as `login`, or why they cannot. With /organizations or
        /common the user's home tenant; with a tenant id, only that tenant's people."""
        sandbox = self.sandbox
        login = (login or "").strip()
        tenant_key = request["tenant_key"]
        if tenant_key not in ORGANIZATIONS:
            tenant = sandbox.tenants.get(tenant_key)
            user = sandbox.find_user(tenant, login) if tenant and login else None
            if user:
                return tenant, user, None
        home, user = sandbox.tenant_of_user(login) if login else (None, None)
        if user is None:
            where = "" if tenant_key in ORGANIZATIONS else f" {tenant_key}"
            return (
                None,
                None,
                f"AADSTS50034: The user account {login or '(none)'} does not exist in the"
                f"{where} directory. To sign into this application, the account must be added "
                "to the directory.",
            )
        if tenant_key not in ORGANIZATIONS:
            name = sandbox.tenants[tenant_key]["name"]
            return (
                None,
                None,
                f"AADSTS50020: User account '{login}' from identity provider "
                f"'https://sts.windows.net/{home['id']}/' does not exist in tenant '{name}' and "
                f"cannot access the application '{request['client_id']}' in that tenant. The "
                "account needs to be added as an external user in the tenant first.",
            )
        return home, user, None

    # ----- codes and tokens

    @staticmethod
    def client_info(tenant: dict, user: dict) -> str:
        info = {"uid": user["id"], "utid": tenant["id"]}
        return b64url(json.dumps(info, separators=(",", ":")).encode())

    def issue_code(self, request: dict, tenant: dict, user: dict) -> dict:
        """Sign `user` in for `request`: the parameters going back to the redirect URI."""
        code = "1.A" + secrets.token_urlsafe(64)
        session_state = str(uuid.uuid4())
        now = time.time()
        grant = {
            "client_id": request["client_id"],
            "redirect_uri": request["redirect_uri"],
            "code_challenge": request["code_challenge"],
            "nonce": request["nonce"],
            "scopes": request["scopes"],
            "max_age": request["max_age"],
            "tenant_id": tenant["id"],
            "user_id": user["id"],
            "auth_time": int(now),
            "exp": now + CODE_LIFETIME,
            "used": False,
        }
        with self.lock:
            for key in [k for k, v in self.codes.items() if v["exp"] + CODE_LIFETIME < now]:
                del self.codes[key]
            self.codes[hashlib.sha256(code.encode()).hexdigest()] = grant
        params = {"code": code}
        if request["client_info"]:
            params["client_info"] = self.client_info(tenant, user)
        params["state"] = request["state"]
        params["session_state"] = session_state
        return params

    def redeem(self, tenant_key: str, form: dict, authorization: str | None) -> tuple[int, dict]:
        """grant_type=authorization_code at the token endpoint."""
        sandbox = self.sandbox
        basic_id, basic_secret = basic_credentials(authorization)
        client_id = basic_id or form.get("client_id")
        secret = basic_secret if basic_id else form.get("client_secret")
        if tenant_key not in ORGANIZATIONS and tenant_key not in sandbox.tenants:
            return token_error(
                400, "invalid_request", "90002", f"AADSTS90002: Tenant '{tenant_key}' not found."
            )
        if client_id != sandbox.client_id:
            return token_error(
                400,
                "unauthorized_client",
                "700016",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant_key}'.",
            )
        if not secret:
            return token_error(
                401,
                "invalid_client",
                "7000218",
                "AADSTS7000218: The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
            )
        if secret != sandbox.client_secret:
            return token_error(
                401, "invalid_client", "7000215", "AADSTS7000215: Invalid client secret provided."
            )
        code = form.get("code") or ""
        if not code:
            return token_error(
                400,
                "invalid_request",
                "900144",
                "AADSTS900144: The request body must contain the following parameter: 'code'.",
            )
        now = time.time()
        with self.lock:
            grant = self.codes.get(hashlib.sha256(code.encode()).hexdigest())
            used = grant["used"] if grant else False
            if grant:
                # One redemption attempt per code, successful or not (RFC 6749 §4.1.2).
                grant["used"] = True
        if grant is None:
            return token_error(
                400,
                "invalid_grant",
                "70000",
                "AADSTS70000: The provided value for the 'code' parameter is not valid.",
            )
        if used:
            return token_error(
                400,
                "invalid_grant",
                "54005",
                "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with "
                "a new valid code or use an existing refresh token.",
            )
        if grant["exp"] < now:
            return token_error(
                400,
                "invalid_grant",
                "70008",
                "AADSTS70008: The provided authorization code or refresh token has expired due "
                "to inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        if grant["client_id"] != client_id:
            return token_error(
                400,
                "invalid_grant",
                "70000",
                "AADSTS70000: The provided authorization code was issued to a different client.",
            )
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return token_error(
                400,
                "invalid_grant",
                "500112",
                f"AADSTS500112: The reply address '{form.get('redirect_uri', '')}' does not match "
                f"the reply address '{grant['redirect_uri']}' provided when requesting "
                "Authorization code.",
            )
        verifier = form.get("code_verifier") or ""
        if not verifier:
            return token_error(
                400,
                "invalid_grant",
                "50148",
                "AADSTS50148: The code_verifier is missing, but the authorization request "
                "supplied a code_challenge (PKCE).",
            )
        if b64url(hashlib.sha256(verifier.encode()).digest()) != grant["code_challenge"]:
            return token_error(
                400,
                "invalid_grant",
                "501481",
                "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in "
                "the authorization request.",
            )
        if tenant_key not in ORGANIZATIONS and tenant_key != grant["tenant_id"]:
            return token_error(
                400,
                "invalid_grant",
                "700005",
                "AADSTS700005: Provided Authorization Code is intended to use against other "
                "tenant, thus rejected.",
            )
        tenant = sandbox.tenants.get(grant["tenant_id"])
        user = tenant["users"].get(grant["user_id"]) if tenant else None
        if user is None:
            return token_error(
                400,
                "invalid_grant",
                "50034",
                "AADSTS50034: The user account does not exist in the directory.",
            )
        return 200, self.token_answer(grant, tenant, user, client_info=form.get("client_info"))

    def token_answer(self, grant: dict, tenant: dict, user: dict, *, client_info) -> dict:
        scopes = [s for s in grant["scopes"] if s != "offline_access"]
        answer = {
            "token_type": "Bearer",
            "scope": " ".join([*scopes, "https://graph.microsoft.com/User.Read"]),
            "expires_in": TOKEN_LIFETIME - 1,
            "ext_expires_in": TOKEN_LIFETIME - 1,
            # A delegated token the sandbox's Graph does not take: the product reads only the
            # ID token, and Graph calls are the app's own (client credentials).
            "access_token": "sbx-user." + secrets.token_urlsafe(32),
        }
        if "offline_access" in grant["scopes"]:
            answer["refresh_token"] = "sbx-refresh." + secrets.token_urlsafe(48)
        answer["id_token"] = self.id_token(grant, tenant, user)
        if str(client_info) == "1":
            answer["client_info"] = self.client_info(tenant, user)
        return answer

    def id_token(self, grant: dict, tenant: dict, user: dict) -> str:
        """The ID token, spoiled as the `id_token` knob asks: wrong_nonce, wrong_tenant (iss and
        tid name that tenant id), unknown_key (signed with a key in no JWKS)."""
        knob = self.sandbox.knobs.get("id_token") or {}
        tenant_id = knob.get("wrong_tenant") or tenant["id"]
        now = int(time.time())
        client_id = grant["client_id"]
        claims = {
            "aud": client_id,
            "iss": f"{self.sandbox.base_url}/{tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "name": user["displayName"],
            "nonce": (
                hashlib.sha256(secrets.token_bytes(16)).hexdigest()
                if knob.get("wrong_nonce")
                else grant["nonce"]
            ),
            "oid": user["id"],
            "preferred_username": user["userPrincipalName"],
            # Pairwise: the same person has another sub in another app.
            "sub": b64url(hashlib.sha256(f"{client_id}/{user['id']}".encode()).digest()),
            "tid": tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if "email" in grant["scopes"]:
            claims["email"] = user["mail"]
        if grant.get("max_age") is not None:
            claims["auth_time"] = grant["auth_time"]
        wids = self.roles(tenant, user)
        if wids:
            claims["wids"] = wids
        key = self.key("rogue" if knob.get("unknown_key") else "signing")
        header = {"typ": "JWT", "alg": "RS256", "kid": key["kid"], "x5t": key["x5t"]}
        return jwt.encode(header, claims, key["jwk"])


def _element_id(login: str, taken: set[str]) -> str:
    # signin-<local part>, dots and the like as dashes (usable as a CSS #id selector).
    base = "signin-" + re.sub(r"[^A-Za-z0-9_-]+", "-", login.split("@")[0].lower())
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


PAGE_STYLE = """
body{margin:0;background:#f2f2f2;font-family:"Segoe UI","Helvetica Neue",Arial,sans-serif;
color:#1b1b1b}
.card{box-sizing:border-box;width:440px;max-width:calc(100% - 40px);margin:60px auto 0;
background:#fff;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
.logo{display:grid;grid-template-columns:10px 10px;gap:2px;margin-bottom:16px}
.logo span{width:10px;height:10px}
.logo .r{background:#f25022}.logo .g{background:#7fba00}.logo .b{background:#00a4ef}
.logo .y{background:#ffb900}
h1{font-size:24px;font-weight:600;margin:0 0 16px}
h2{font-size:15px;font-weight:600;margin:20px 0 6px;color:#555}
.tile{display:block;width:100%;text-align:left;background:#fff;border:0;
border-bottom:1px solid #e6e6e6;padding:10px 4px;cursor:pointer;font:inherit}
.tile:hover{background:#f2f2f2}
.tile small{display:block;color:#666}
.tile em{font-style:normal;color:#0067b8;font-size:13px}
input[type=email]{width:100%;box-sizing:border-box;border:0;border-bottom:1px solid #666;
padding:6px 0;font:inherit;font-size:15px;margin:12px 0}
.next{background:#0067b8;color:#fff;border:0;padding:6px 24px;font:inherit;float:right}
.error{color:#e81123;margin:8px 0}
.foot{clear:both;padding-top:24px;font-size:12px;color:#666}
"""


def page(title: str, content: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>"
        f'<div class="card"><div class="logo" aria-label="Microsoft"><span class="r"></span>'
        f'<span class="g"></span><span class="b"></span><span class="y"></span></div>'
        f'{content}<p class="foot">Microsoft 365 sandbox — not Microsoft.</p></div></body></html>'
    )


class SignInPages:
    """The HTTP side, mixed into server.Handler (it brings sandbox, _send and _redirect)."""

    def _authorize(self, tenant_key, query, entry):
        signin = self.sandbox.signin
        message, request, error = signin.check(tenant_key, query)
        if message:
            entry.update(status=200, error=message.split(":")[0])
            self.sandbox.record(entry)
            return self._signin_error_page(message)
        if error:
            return self._auth_response(request, error, entry)
        knob = dict(self.sandbox.knobs.get("signin") or {"mode": "form"})
        mode = knob.get("mode", "form")
        if mode == "auto":
            return self._signed_in(request, knob.get("user", ""), entry)
        if mode == "error":
            return self._auth_response(
                request,
                {
                    "error": knob.get("error", "access_denied"),
                    "error_description": knob.get(
                        "error_description",
                        "AADSTS65004: User declined to consent to access the app.",
                    ),
                },
                entry,
            )
        if request["prompt"] == "none":
            return self._auth_response(
                request,
                {
                    "error": "login_required",
                    "error_description": "AADSTS50058: A silent sign-in request was sent but no "
                    "user is signed in.",
                },
                entry,
            )
        entry["status"] = 200
        self.sandbox.record(entry)
        return self._signin_page(tenant_key, signin.remember(request), request["login_hint"])

    def _signin_answer(self, tenant_key, form, entry):
        signin = self.sandbox.signin
        ctx = form.get("ctx", "")
        request = signin.recall(ctx)
        if request is None:
            entry.update(status=200, error="AADSTS90015")
            self.sandbox.record(entry)
            return self._signin_error_page(
                "AADSTS90015: The sign-in request is unknown or has expired. Go back to the "
                "application and sign in again."
            )
        return self._signed_in(request, form.get("user") or form.get("login", ""), entry, ctx=ctx)

    def _signed_in(self, request, login, entry, *, ctx=None):
        signin = self.sandbox.signin
        tenant, user, problem = signin.identity(request, login)
        entry["user"] = login
        if problem:
            entry.update(status=200, error=problem.split(":")[0])
            self.sandbox.record(entry)
            if ctx:  # the page again, saying what was wrong (as Entra's does)
                return self._signin_page(request["tenant_key"], ctx, login, problem)
            return self._signin_error_page(problem)
        signin.forget(ctx)
        entry["tenant"] = tenant["id"]
        return self._auth_response(request, signin.issue_code(request, tenant, user), entry)

    def _auth_response(self, request, params, entry):
        """Back to the redirect URI with `params` (+ state), as its response_mode asks."""
        params = dict(params)
        if "state" not in params and request["state"] is not None:
            params["state"] = request["state"]
        if "error" in params:
            entry["error"] = params["error"]
        uri, mode = request["redirect_uri"], request["response_mode"]
        entry["status"] = 200 if mode == "form_post" else 302
        self.sandbox.record(entry)
        if mode == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in params.items()
            )
            body = (
                '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Working...'
                f'</title></head><body onload="document.forms[0].submit()"><form method="POST" '
                f'name="hiddenform" action="{html.escape(uri)}">{fields}<noscript><p>Script is '
                'disabled. Click Submit to continue.</p><input type="submit" value="Submit">'
                "</noscript></form></body></html>"
            )
            return self._send(
                200, body, {"Cache-Control": "no-store"}, content_type="text/html; charset=utf-8"
            )
        if mode == "fragment":
            return self._redirect(f"{uri}#{urlencode(params)}")
        return self._redirect(f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}")

    def _signin_page(self, tenant_key, ctx, login_hint="", problem=None):
        signin = self.sandbox.signin
        taken: set[str] = set()
        groups = []
        for tenant, users in signin.identities(tenant_key):
            tiles = []
            for user in users:
                roles = [demo.ROLE_NAMES.get(w, w) for w in signin.roles(tenant, user)]
                role_text = f"<em>{html.escape(', '.join(roles))}</em>" if roles else ""
                tiles.append(
                    f'<button class="tile" type="submit" name="user" '
                    f'value="{html.escape(user["mail"])}" '
                    f'id="{_element_id(user["mail"], taken)}">'
                    f"{html.escape(user['displayName'])}"
                    f"<small>{html.escape(user['mail'])}</small>{role_text}</button>"
                )
            groups.append(f"<h2>{html.escape(tenant['name'])}</h2>{''.join(tiles)}")
        error = f'<p class="error" role="alert">{html.escape(problem)}</p>' if problem else ""
        content = (
            "<h1>Sign in to your account</h1>"
            f'<form method="post" action="/{html.escape(tenant_key)}/login">'
            f'<input type="hidden" name="ctx" value="{html.escape(ctx)}">'
            f"<p>Pick an account</p>{''.join(groups)}{error}"
            '<label for="login">Or sign in with another account</label>'
            f'<input type="email" id="login" name="login" placeholder="Email or phone" '
            f'value="{html.escape(login_hint or "")}">'
            '<button class="next" type="submit" id="next">Next</button></form>'
        )
        return self._send(
            200,
            page("Sign in to your account", content),
            {"Cache-Control": "no-store"},
            content_type="text/html; charset=utf-8",
        )

    def _signin_error_page(self, message):
        content = (
            "<h1>Sign in</h1><p>Sorry, but we’re having trouble signing you in.</p>"
            f'<p class="error" role="alert">{html.escape(message)}</p>'
        )
        return self._send(
            200,
            page("Sign in to your account", content),
            {"Cache-Control": "no-store"},
            content_type="text/html; charset=utf-8",
        )
