"""The One X sandbox over HTTP: the API of onex-api.md, a directory page and /_sandbox controls."""

import base64
import binascii
import itertools
import json
import os
import re
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .demo import demo_companies
from .faults import Faults, Knobs
from .page import render_directory
from .store import BATCH_MAX, Problem, Store, iso, parse_limit, parse_time, utcnow

DEFAULT_CLIENTS = "mss-demo:mss-demo-secret"
LOG_MAX = 200_000

API_ROUTES = [
    ("GET", re.compile(r"^/v1/companies/([^/]+)/subscriptions$"), "list_subscriptions"),
    ("GET", re.compile(r"^/v1/companies/([^/]+)/absence-reasons$"), "list_reasons"),
    ("GET", re.compile(r"^/v1/companies/([^/]+)/absences$"), "list_absences"),
    ("POST", re.compile(r"^/v1/companies/([^/]+)/absences:batch$"), "batch"),
    (
        "PUT",
        re.compile(r"^/v1/companies/([^/]+)/subscriptions/([^/]+)/absences/([^/]*)$"),
        "put_absence",
    ),
    (
        "DELETE",
        re.compile(r"^/v1/companies/([^/]+)/subscriptions/([^/]+)/absences/([^/]*)$"),
        "delete_absence",
    ),
]

CONTROL_ROUTES = [
    ("GET", re.compile(r"^/_sandbox/health$"), "health"),
    ("GET", re.compile(r"^/_sandbox/knobs$"), "get_knobs"),
    ("POST", re.compile(r"^/_sandbox/knobs$"), "set_knobs"),
    ("GET", re.compile(r"^/_sandbox/requests$"), "get_requests"),
    ("DELETE", re.compile(r"^/_sandbox/requests$"), "clear_requests"),
    ("POST", re.compile(r"^/_sandbox/reset$"), "reset"),
    ("POST", re.compile(r"^/_sandbox/tokens/expire$"), "expire_tokens"),
    ("PUT", re.compile(r"^/_sandbox/companies/([^/]+)$"), "put_company"),
    ("PUT", re.compile(r"^/_sandbox/companies/([^/]+)/subscriptions/([^/]+)$"), "put_sub"),
    ("DELETE", re.compile(r"^/_sandbox/companies/([^/]+)/subscriptions/([^/]+)$"), "del_sub"),
    ("PUT", re.compile(r"^/_sandbox/companies/([^/]+)/absence-reasons/([^/]+)$"), "put_reason"),
    ("DELETE", re.compile(r"^/_sandbox/companies/([^/]+)/absence-reasons/([^/]+)$"), "del_reason"),
    ("GET", re.compile(r"^/_sandbox/companies/([^/]+)/absences$"), "dump_absences"),
]


class OneXSandbox:
    """The server and its state; `start()` serves on a background thread, `close()` stops."""

    def __init__(self, host="127.0.0.1", port=0, state_path=None, knobs=None, clients=None):
        self.store = Store(state_path)
        self.faults = Faults(knobs or Knobs.from_env())
        clients = clients or os.environ.get("ONEX_SANDBOX_CLIENTS", DEFAULT_CLIENTS)
        self.clients = dict(pair.split(":", 1) for pair in clients.split(",") if ":" in pair)
        # Whose token is whose: the rate limit is the client id's, shared by all its tokens
        # (not kept in the state file; a token from before a restart counts on its own).
        self.token_clients = {}
        self.log = deque(maxlen=LOG_MAX)
        self.log_lock = threading.Lock()
        self.sequence = itertools.count(1)
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread = None

    @property
    def url(self):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self):
        self.httpd.serve_forever()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.store.close()

    def record(self, entry):
        with self.log_lock:
            entry["seq"] = next(self.sequence)
            self.log.append(entry)


def _handler_for(sandbox):
    class Handler(OneXHandler):
        pass

    Handler.sandbox = sandbox
    return Handler


class OneXHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a pooled client reuses connections
    server_version = "OneXSandbox/1"
    sandbox: OneXSandbox

    def setup(self):
        super().setup()
        # Headers and body leave in two writes; without NODELAY, Nagle plus delayed ACK would
        # add ~40 ms to every kept-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # the request log at /_sandbox/requests replaces it
        pass

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    # Dispatch -----------------------------------------------------------------------------

    def _dispatch(self):
        split = urlsplit(self.path)
        self.route_path = split.path
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.request_id = f"req-{time.time_ns():x}"
        self.logged = False
        self.rate_headers = {}  # one handler serves every request of a kept-alive connection
        self.body = self._read_body()
        if self.route_path == "/" and self.command == "GET":
            return self._send_html(render_directory(self.sandbox.store, self.query.get("company")))
        if self.route_path.startswith("/_sandbox/"):
            return self._run(CONTROL_ROUTES, logged=False)
        if self.route_path == "/oauth2/token" or self.route_path.startswith("/v1/"):
            return self._run(API_ROUTES, logged=True)
        self._send_problem(Problem(404, "not_found", f"No route {self.route_path}."))

    def _run(self, routes, *, logged):
        self.started = time.monotonic()
        self.logged, self.injected, self.ops = logged, False, None
        if logged:
            self._api()
        else:
            self._route(routes)

    def _record(self, status):
        """Log an API request before its answer leaves, so a test that has the answer sees it."""
        if not self.logged:
            return
        self.logged = False
        self.sandbox.record(
            {
                "at": iso(utcnow()),
                "method": self.command,
                "path": self.route_path,
                "query": self.query,
                "status": status,
                "injected": self.injected,
                "ops": self.ops,
                "ms": round((time.monotonic() - self.started) * 1000, 1),
            }
        )

    def _api(self):
        token = self._bearer()
        key = self.sandbox.token_clients.get(token, token)  # None: the token endpoint
        faults = self.sandbox.faults
        faults.delay()
        failure = faults.injected(key)
        if failure is None or failure[2] == "answer":  # an outage answers without them
            self.rate_headers = faults.rate_headers(key)
        if failure is not None:
            status, headers, mode = failure
            self.injected = True
            if mode == "drop":
                self._record(0)
                self.close_connection = True
                return
            code = {429: "rate_limited"}.get(status, "service_unavailable")
            return self._send_problem(
                Problem(status, code, "Injected by the sandbox.", headers=headers)
            )
        if self.route_path == "/oauth2/token":
            return self._route([("POST", re.compile(r"^/oauth2/token$"), "token")])
        try:
            if token is None:
                raise Problem(401, "invalid_token", "A Bearer token is required.")
            self.sandbox.store.check_token(token)
        except Problem as problem:
            return self._send_problem(problem)
        self._route(API_ROUTES)

    def _route(self, routes):
        allowed = False
        for method, pattern, name in routes:
            match = pattern.match(self.route_path)
            if not match:
                continue
            allowed = True
            if method == self.command:
                try:
                    return getattr(self, f"h_{name}")(*[unquote(g) for g in match.groups()])
                except Problem as problem:
                    return self._send_problem(problem)
        if allowed:
            return self._send_problem(Problem(405, "method_not_allowed", self.command))
        self._send_problem(Problem(404, "not_found", f"No route {self.route_path}."))

    # Plumbing -----------------------------------------------------------------------------

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self):
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as error:
            raise Problem(400, "invalid_json", "The body is not valid JSON.") from error

    def _bearer(self):
        header = self.headers.get("Authorization", "")
        return header[7:].strip() if header.startswith("Bearer ") else None

    def _send(self, status, body, content_type, headers=None):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**self.rate_headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, status, payload, headers=None):
        self._send(status, json.dumps(payload, ensure_ascii=False), "application/json", headers)

    def _send_empty(self, status):
        self._send(status, b"", "application/json")

    def _send_html(self, html):
        self._send(200, html, "text/html; charset=utf-8")

    def _send_problem(self, problem):
        payload = json.dumps(problem.as_json(self.request_id), ensure_ascii=False)
        self._send(problem.status, payload, "application/problem+json", problem.headers)

    # OAuth2 -------------------------------------------------------------------------------

    def h_token(self):
        header = self.headers.get("Authorization", "")
        try:
            key, secret = base64.b64decode(header[6:]).decode().split(":", 1)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            key, secret = None, None
        if not header.startswith("Basic ") or self.sandbox.clients.get(key) != secret:
            raise Problem(401, "invalid_client", "Unknown client id or wrong secret.")
        form = {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            raise Problem(400, "unsupported_grant_type", "Only client_credentials is supported.")
        lifetime = self.sandbox.faults.knobs.token_lifetime
        token = self.sandbox.store.issue_token(lifetime)
        self.sandbox.token_clients[token] = key
        self._send_json(
            200,
            {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"},
            {"Cache-Control": "no-store"},
        )

    # API ----------------------------------------------------------------------------------

    def h_list_subscriptions(self, company_id):
        since = None
        if self.query.get("updatedSince"):
            since = parse_time(self.query["updatedSince"])
            if since is None:
                raise Problem(422, "validation_error", "updatedSince must be RFC 3339.")
        page = self.sandbox.store.list_subscriptions(
            company_id,
            limit=parse_limit(self.query.get("limit"), 200, 500),
            cursor=self.query.get("cursor"),
            updated_since=since,
        )
        self._send_json(200, page)

    def h_list_reasons(self, company_id):
        self._send_json(200, {"items": self.sandbox.store.list_reasons(company_id)})

    def h_list_absences(self, company_id):
        bounds = {}
        for name in ("from", "to"):
            bounds[name] = None
            if self.query.get(name):
                bounds[name] = parse_time(self.query[name])
                if bounds[name] is None:
                    raise Problem(422, "validation_error", f"{name} must be RFC 3339.")
        page = self.sandbox.store.list_absences(
            company_id,
            start=bounds["from"],
            end=bounds["to"],
            subscription_id=self.query.get("subscriptionId"),
            limit=parse_limit(self.query.get("limit"), 100, 1000),
            cursor=self.query.get("cursor"),
        )
        self._send_json(200, page)

    def h_put_absence(self, company_id, subscription_id, external_id):
        body = self._json_body()
        status, entry = self.sandbox.store.put_absence(
            company_id, subscription_id, external_id, body
        )
        self._send_json(status, entry, {"ETag": f'"{entry["absenceId"]}-{entry["revision"]}"'})

    def h_delete_absence(self, company_id, subscription_id, external_id):
        self.sandbox.store.delete_absence(company_id, subscription_id, external_id)
        self._send_empty(204)

    def h_batch(self, company_id):
        body = self._json_body()
        operations = body.get("operations") if isinstance(body, dict) else None
        if not isinstance(operations, list) or not operations:
            raise Problem(422, "validation_error", "operations must be a non-empty list.")
        if len(operations) > BATCH_MAX:
            raise Problem(
                422,
                "validation_error",
                f"At most {BATCH_MAX} operations per batch.",
                errors=[{"field": "operations", "code": "too_many"}],
            )
        self.sandbox.store.company(company_id)
        self.ops = len(operations)
        self._send_json(200, {"results": [self._batch_one(company_id, op) for op in operations]})

    def _batch_one(self, company_id, op):
        store = self.sandbox.store
        try:
            if self.sandbox.faults.batch_op_fails():
                raise Problem(503, "service_unavailable", "Injected by the sandbox.")
            if not isinstance(op, dict) or op.get("op") not in ("put", "delete"):
                raise Problem(422, "validation_error", 'op must be "put" or "delete".')
            for field in ("subscriptionId", "externalId"):
                if not isinstance(op.get(field), str):
                    raise Problem(422, "validation_error", f"{field} is required.")
            if op["op"] == "put":
                # The contract's result is the status (and a problem on failure), nothing else.
                status, _entry = store.put_absence(
                    company_id, op["subscriptionId"], op["externalId"], op.get("body")
                )
                return {"status": status}
            store.delete_absence(company_id, op["subscriptionId"], op["externalId"])
            return {"status": 204}
        except Problem as problem:
            return {"status": problem.status, "error": problem.as_json(self.request_id)}

    # Controls -----------------------------------------------------------------------------

    def h_health(self):
        self._send_json(200, {"ok": True})

    def h_get_knobs(self):
        self._send_json(200, self.sandbox.faults.describe())

    def h_set_knobs(self):
        changes = self._json_body()
        if not isinstance(changes, dict):
            raise Problem(422, "validation_error", "Send a JSON object of knobs.")
        try:
            self._send_json(200, self.sandbox.faults.update(changes))
        except (KeyError, TypeError, ValueError) as error:
            raise Problem(422, "validation_error", f"Bad knob: {error}") from error

    def h_get_requests(self):
        since = int(self.query.get("since") or 0)
        with self.sandbox.log_lock:
            items = [entry for entry in self.sandbox.log if entry["seq"] > since]
        self._send_json(200, {"items": items})

    def h_clear_requests(self):
        with self.sandbox.log_lock:
            self.sandbox.log.clear()
        self._send_empty(204)

    def h_reset(self):
        store = self.sandbox.store
        with store.lock:
            store.data["companies"].clear()
            for spec in demo_companies():
                store.add_company_from_spec(spec)
        self._send_empty(204)

    def h_expire_tokens(self):
        self.sandbox.store.expire_tokens()
        self._send_empty(204)

    def h_put_company(self, company_id):
        spec = self._json_body() or {}
        self.sandbox.store.add_company_from_spec({**spec, "companyId": company_id})
        self._send_empty(204)

    def h_put_sub(self, company_id, subscription_id):
        spec = self._json_body() or {}
        sub = self.sandbox.store.put_subscription(
            company_id, {**spec, "subscriptionId": subscription_id}
        )
        self._send_json(200, sub)

    def h_del_sub(self, company_id, subscription_id):
        self.sandbox.store.delete_subscription(company_id, subscription_id)
        self._send_empty(204)

    def h_put_reason(self, company_id, code):
        spec = self._json_body() or {}
        self.sandbox.store.put_reason(company_id, {**spec, "code": code})
        self._send_empty(204)

    def h_del_reason(self, company_id, code):
        self.sandbox.store.delete_reason(company_id, code)
        self._send_empty(204)

    def h_dump_absences(self, company_id):
        self._send_json(200, {"items": self.sandbox.store.all_absences(company_id)})
