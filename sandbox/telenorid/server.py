"""A Telenor ID stand-in: a real OpenID Connect provider over HTTPS.

A trustme test CA made at start (or shared), a ThreadingHTTPServer, and the endpoints a relying
party uses: discovery, authorize (with a Swedish login form and an SSO cookie), token, userinfo,
JWKS and RP-initiated logout. Sandbox-only endpoints under /_sandbox/ (JSON) let tests turn
knobs, manage identities, register the client's URIs, rotate the signing key and read the
request log. The rules are in provider.py and oauth.py; this module is only HTTP.
"""

import json
import re
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, unquote, urlsplit

from ..tls import TLSHandler, TLSServer
from . import demo, pages
from .oauth import OAuthError, PageError, redact
from .provider import (
    CLIENT_NAME,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_POST_LOGOUT_URI,
    DEFAULT_REDIRECT_URI,
    Provider,
    Step,
    WrongCredentials,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_POST_LOGOUT_URI",
    "DEFAULT_REDIRECT_URI",
    "TelenorIdServer",
]

SESSION_COOKIE = "telenorid_sso"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
HTML = "text/html; charset=utf-8"

ROUTES = {
    "/.well-known/openid-configuration": ({"GET"}, "discovery"),
    "/authorize": ({"GET", "POST"}, "authorize"),
    "/login": ({"POST"}, "login"),
    "/token": ({"POST"}, "token"),
    "/userinfo": ({"GET", "POST"}, "userinfo"),
    "/jwks": ({"GET"}, "jwks"),
    "/logout": ({"GET", "POST"}, "logout"),
}
IDENTITY = re.compile(r"^identities/([^/]+)$")


def _form(raw: bytes) -> dict[str, list[str]]:
    return parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)


def _flat(params: dict[str, list[str]]) -> dict:
    return {k: v[-1] if len(v) == 1 else v for k, v in params.items()}


class Handler(TLSHandler):
    server_version = "TelenorIdSandbox/1.0"
    provider: Provider  # set on the subclass the server makes

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    # ----- plumbing

    def _dispatch(self):
        split = urlsplit(self.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        self.raw = self.rfile.read(length) if length else b""
        self.entry = None
        try:
            if split.path.startswith("/_sandbox/"):
                return self._control(split.path[len("/_sandbox/") :].strip("/"))
            self.entry = {
                "method": self.command,
                "path": split.path,
                "query": redact(_flat(self.query)),
            }
            delay = self.provider.knobs.latency_ms / 1000
            if delay:
                time.sleep(delay)
            methods, name = ROUTES.get(split.path, (None, None))
            if methods is None:
                return self._send(404, {"error": "not_found"})
            if self.command not in methods:
                return self._send(
                    405, {"error": "method_not_allowed"}, {"Allow": ", ".join(sorted(methods))}
                )
            return getattr(self, f"_{name}")()
        except BrokenPipeError:
            return None

    def _send(self, status: int, body=None, headers=None, content_type="application/json"):
        if self.entry is not None:
            # Logged before the answer leaves, so a test holding the answer finds the entry.
            self.entry["status"] = status
            self.provider.record(self.entry)
            self.entry = None
        if body is None:
            payload = b""
        elif isinstance(body, bytes | str):
            payload = body.encode() if isinstance(body, str) else body
        else:
            payload = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            if isinstance(value, list):
                for item in value:
                    self.send_header(key, item)
            else:
                self.send_header(key, value)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _html(self, status: int, page: str, headers=None):
        return self._send(status, page, {**PAGE_HEADERS, **(headers or {})}, HTML)

    def _redirect(self, location: str, headers=None):
        return self._send(302, None, {"Location": location, **NO_STORE, **(headers or {})})

    def _content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def _session_id(self) -> str | None:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = cookie.get(SESSION_COOKIE)
        return morsel.value if morsel else None

    def _oauth_error(self, error: OAuthError):
        if self.entry is not None:
            self.entry["error"] = error.error
        return self._send(error.status, error.as_dict(), {**NO_STORE, **error.headers})

    # ----- endpoints

    def _discovery(self):
        return self._send(200, self.provider.discovery())

    def _jwks(self):
        return self._send(200, self.provider.keys.jwks(), {"Cache-Control": "max-age=60"})

    def _authorize(self):
        params = self.query
        if self.command == "POST":  # OpenID Connect Core 3.1.2.1: the request as a form
            if not self._content_type().startswith("application/x-www-form-urlencoded"):
                return self._html(400, pages.error_page("POST the request as a form."))
            params = _form(self.raw)
            self.entry["form"] = redact(_flat(params))
        try:
            answer = self.provider.authorize(params, self._session_id())
        except PageError as error:
            return self._html(400, pages.error_page(str(error)))
        if answer.step is Step.REDIRECT:
            return self._redirect(answer.location)
        return self._login_form(answer.transaction, email=answer.login_hint)

    def _login_form(self, transaction, *, email="", error=""):
        provider = self.provider
        shown = tuple(
            email_
            for email_, _ in demo.DEMO_PEOPLE
            if (who := provider.identities.get(email_)) and who.password == demo.DEMO_PASSWORD
        )
        page = pages.login_page(
            transaction,
            client_name=CLIENT_NAME,
            email=email,
            error=error,
            demo_accounts=shown,
            demo_password=demo.DEMO_PASSWORD,
        )
        return self._html(200, page)

    def _login(self):
        form = {k: v[-1] for k, v in _form(self.raw).items()}
        self.entry["form"] = redact({k: v for k, v in form.items() if k != "txn"})
        transaction, email = form.get("txn", ""), form.get("email", "")
        try:
            session_id, location = self.provider.login(transaction, email, form.get("password", ""))
        except WrongCredentials:
            return self._login_form(
                transaction, email=email, error="Fel e-postadress eller lösenord."
            )
        except PageError as error:
            return self._html(400, pages.error_page(str(error)))
        cookie = f"{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; Secure; SameSite=Lax"
        return self._redirect(location, {"Set-Cookie": cookie})

    def _token(self):
        form = _form(self.raw)
        authorization = self.headers.get("Authorization", "")
        self.entry["form"] = redact(_flat(form))
        self.entry["client_auth"] = (
            "client_secret_basic"
            if authorization.lower().startswith("basic ")
            else "client_secret_post"
            if "client_secret" in form
            else None
        )
        try:
            answer = self.provider.token(form, authorization, self._content_type())
        except OAuthError as error:
            return self._oauth_error(error)
        return self._send(200, answer, NO_STORE)

    def _userinfo(self):
        try:
            claims = self.provider.userinfo(self.headers.get("Authorization", ""))
        except OAuthError as error:
            return self._send(error.status, None, {**NO_STORE, **error.headers})
        return self._send(200, claims, NO_STORE)

    def _logout(self):
        params = self.query
        if self.command == "POST":
            params = _form(self.raw)
            self.entry["form"] = redact(_flat(params))
        try:
            location = self.provider.logout(params, self._session_id())
        except PageError as error:
            return self._html(400, pages.error_page(str(error)))
        clear = f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
        if location is None:
            return self._html(200, pages.logged_out_page(), {"Set-Cookie": clear})
        return self._redirect(location, {"Set-Cookie": clear})

    # ----- sandbox-only control plane (not logged, no latency)

    def _control(self, path: str):
        provider = self.provider
        method = self.command
        try:
            body = json.loads(self.raw) if self.raw else {}
        except ValueError:
            return self._send(400, {"error": "the body must be JSON"})
        try:
            return self._control_route(provider, method, path, body)
        except ValueError as problem:
            return self._send(400, {"error": str(problem)})

    def _control_route(self, provider: Provider, method: str, path: str, body):
        if (method, path) == ("GET", "health"):
            return self._send(200, {"ok": True})
        if path == "knobs" and method in ("GET", "POST"):
            if method == "POST":
                with provider.lock:
                    provider.knobs.update(body)
            return self._send(200, provider.knobs.as_dict())
        if (method, path) == ("POST", "reset"):
            provider.reset()
            return self._send(200, {"ok": True})
        if path == "requests" and method == "GET":
            since = int((self.query.get("since") or ["0"])[-1])
            with provider.lock:
                entries = [e for e in provider.log if e["seq"] > since]
            return self._send(200, {"value": entries})
        if path == "requests" and method == "DELETE":
            with provider.lock:
                provider.log.clear()
            return self._send(204)
        if (method, path) == ("POST", "rotate-key"):
            return self._send(200, provider.rotate_key())
        if (method, path) == ("GET", "identities"):
            with provider.lock:
                people = [i.public() for i in provider.identities.values()]
            return self._send(200, {"value": people})
        match = IDENTITY.match(path)
        if match and method == "PUT":
            return self._send(200, provider.put_identity(unquote(match[1]), body).public())
        if match and method == "DELETE":
            found = provider.delete_identity(unquote(match[1]))
            return self._send(204) if found else self._send(404, {"error": "no such identity"})
        if path == "clients" and method in ("GET", "POST"):
            if method == "POST":
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                provider.register(body.get("redirect_uris"), body.get("post_logout_redirect_uris"))
            return self._send(200, provider.client_info())
        return self._send(404, {"error": "not_found"})


class TelenorIdServer(TLSServer):
    """The HTTPS server around a Provider; `start()` runs it in a background thread."""

    def __init__(
        self,
        host="127.0.0.1",
        port=8013,
        *,
        ca_file=None,
        ca=None,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        redirect_uris=(DEFAULT_REDIRECT_URI,),
        post_logout_redirect_uris=(DEFAULT_POST_LOGOUT_URI,),
        with_demo=True,
    ):
        self.sandbox = Provider(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris,
            with_demo=with_demo,
        )
        handler = type("BoundHandler", (Handler,), {"provider": self.sandbox})
        super().__init__(
            handler, host, port, ca=ca, ca_file=ca_file, ca_name="MSS Telenor ID sandbox test CA"
        )
        self.sandbox.issuer = self.base_url
