"""Pytest fixtures: the Microsoft 365 sandbox on a free port with its own test CA.

`m365` starts the real HTTPS server in this process (background thread), points the product's
MS_* settings at it (trusting its CA through MS_CA_BUNDLE, never by turning verification off)
and hands back a handle that speaks to the sandbox-only /_sandbox controls over HTTP. A test
fails when the sandbox could not answer a request as Graph would (`crashes`).

Graph delivers only to https URLs: `https_live_server` puts an https front (tests/https_front.py,
a certificate from the same test CA, which the sandbox trusts) before Django's live_server; a
test that lets Graph reach the product sets PUBLIC_BASE_URL to its `url`.
"""

import json
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import trustme
from django.conf import settings

from calendarsync.models import Integration
from sandbox.m365 import demo
from sandbox.m365.addin import NO_SPOILING
from sandbox.m365.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, M365Server
from sandbox.tls import TLSHandler, TLSServer
from tests.https_front import HttpsFront

DEMO_TENANT = demo.DEMO_TENANT_ID
ANNA = "anna.andersson@demo.se"
BODY_FIELDS = {"body", "bodypreview", "uniquebody"}


class M365Handle:
    def __init__(self, server: M365Server):
        self.server = server
        self.sandbox = server.sandbox  # in-process state, for assertions only
        self.url = server.base_url
        self.ca_file = str(server.ca_file)
        self.ca = (
            server.ca
        )  # a certificate from it is one the sandbox trusts (NotificationEndpoint)
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = self.ca_file

    def control(self, method, path, payload=None):
        response = self.http.request(
            method, f"{self.url}/_sandbox/{path}", json=payload, timeout=15
        )
        response.raise_for_status()
        return response.json() if response.content else None

    # knobs and log
    def knobs(self, **changes):
        return self.control("POST", "knobs", changes)

    def throttle(self, match, count=1, retry_after=1):
        rules = self.control("GET", "knobs")["throttle"]
        rules.append({"match": match, "count": count, "retry_after": retry_after})
        return self.knobs(throttle=rules)

    def requests(self, since=0):
        return self.control("GET", f"requests?since={since}")["value"]

    def graph_requests(self):
        return [r for r in self.requests() if r["path"].startswith("/v1.0")]

    def clear_requests(self):
        self.control("DELETE", "requests")

    def deliveries(self):
        """Each POST Graph made (validations, notifications, lifecycle events), with `count`
        notifications in its `payload`; dropped and expired ones say so."""
        return self.control("GET", "deliveries")["value"]

    def delivered(self, kind="notification") -> list[dict]:
        """Every notification of `kind` that an endpoint accepted (2xx), in arrival order."""
        return [
            note
            for post in self.deliveries()
            if post["kind"] == kind and post.get("status") and 200 <= post["status"] < 300
            for note in post["payload"]["value"]
        ]

    def delivery_state(self):
        """{"pending": notifications waiting for a (re)try, "endpoints": {url: normal|slow|
        dropping}}."""
        answer = self.control("GET", "deliveries")
        return {"pending": answer["pending"], "endpoints": answer["endpoints"]}

    def crashes(self):
        return self.control("GET", "crashes")["value"]

    def clear_crashes(self):
        self.control("DELETE", "crashes")

    # tenants and events (changes as if made in Outlook: they notify subscribers)
    def add_tenant(self, name="Kund AB", users=(), consented=True):
        payload = {
            "name": name,
            "users": [{"mail": m, "displayName": m.split("@")[0]} for m in users],
            "consented": consented,
        }
        return self.control("POST", "tenants", payload)["id"]

    def revoke(self, tenant=DEMO_TENANT, code="700016"):
        self.control("POST", f"tenants/{tenant}/revoke", {"code": code})

    def consent(self, tenant=DEMO_TENANT):
        self.control("POST", f"tenants/{tenant}/consent")

    def remove_permissions(self, tenant=DEMO_TENANT, removed=True):
        self.control("POST", f"tenants/{tenant}/permissions", {"removed": removed})

    def create_event(self, mailbox, tenant=DEMO_TENANT, **event):
        return self.control("POST", f"tenants/{tenant}/users/{mailbox}/events", event)

    def update_event(self, mailbox, event_id, tenant=DEMO_TENANT, **changes):
        return self.control("PATCH", f"tenants/{tenant}/users/{mailbox}/events/{event_id}", changes)

    def delete_event(self, mailbox, event_id, tenant=DEMO_TENANT):
        return self.control("DELETE", f"tenants/{tenant}/users/{mailbox}/events/{event_id}")

    # Entra ID groups (changes as if made in Entra: each shows in the next /groups/delta round)
    def create_group(self, name, members=(), groups=(), tenant=DEMO_TENANT, **extra):
        """A security group; `members`: users by mail, UPN or id (or groups by id or name),
        `groups`: nested groups by id or name. Returns the group with its direct members."""
        payload = {"displayName": name, "members": list(members), "groups": list(groups)}
        return self.control("POST", f"tenants/{tenant}/groups", {**payload, **extra})

    def groups(self, tenant=DEMO_TENANT):
        return self.control("GET", f"tenants/{tenant}/groups")["value"]

    def add_group_members(self, group_id, members, tenant=DEMO_TENANT):
        payload = {"members": list(members)}
        return self.control("POST", f"tenants/{tenant}/groups/{group_id}/members", payload)

    def remove_group_members(self, group_id, members, tenant=DEMO_TENANT):
        payload = {"members": list(members)}
        return self.control("DELETE", f"tenants/{tenant}/groups/{group_id}/members", payload)

    def delete_group(self, group_id, tenant=DEMO_TENANT):
        self.control("DELETE", f"tenants/{tenant}/groups/{group_id}")

    def stale_group_delta(self, tenant=DEMO_TENANT):
        """Every groups delta/skip token issued so far answers 410 resyncRequired."""
        self.control("POST", f"tenants/{tenant}/groups/delta-reset")

    def set_app_roles(self, roles, tenant=DEMO_TENANT):
        """The application permissions the tenant consented to; None: all the app asks for."""
        payload = {"roles": None if roles is None else list(roles)}
        return self.control("POST", f"tenants/{tenant}/app-roles", payload)["app_roles"]

    def subscriptions(self):
        return self.control("GET", "subscriptions")["value"]

    def lifecycle(self, subscription_id, event):
        return self.control("POST", f"subscriptions/{subscription_id}/lifecycle", {"event": event})

    # sign-in (OpenID Connect authorization code flow)
    def signin(self, mode="auto", user=None, **extra):
        """The `signin` knob: mode "auto" signs `user` in at once, "form" shows the sign-in
        page, "error" sends `error`/`error_description` back."""
        knob = {"mode": mode, **extra}
        if user is not None:
            knob["user"] = user
        return self.knobs(signin=knob)

    def register_redirect_uris(self, uris):
        return self.control("POST", "redirect-uris", {"redirect_uris": list(uris)})["redirect_uris"]

    def spoil_id_tokens(self, wrong_nonce=False, wrong_tenant=None, unknown_key=False):
        """The `id_token` knob (all off again with no arguments)."""
        return self.knobs(
            id_token={
                "wrong_nonce": wrong_nonce,
                "wrong_tenant": wrong_tenant,
                "unknown_key": unknown_key,
            }
        )

    def jwks(self, tenant="common"):
        response = self.http.get(f"{self.url}/{tenant}/discovery/v2.0/keys", timeout=15)
        response.raise_for_status()
        return response.json()

    # the Outlook add-in: what nested app authentication and Office.js give the task pane
    def addin_token(self, mailbox, **kw) -> dict:
        """NAA's answer for `mailbox`: {"access_token", "id_token", "expires_in", "scope",
        "account"}. kw: tenant, client_id, scope (default: settings.MS_ADDIN_API_SCOPE when
        the product has it, else the sandbox's api://<client id>/access_as_user)."""
        payload = {"mailbox": mailbox, **kw}
        if "scope" not in payload and getattr(settings, "MS_ADDIN_API_SCOPE", None):
            payload["scope"] = settings.MS_ADDIN_API_SCOPE
        return self.control("POST", "addin/token", payload)

    def set_custom_properties(self, mailbox, event_id, properties, addin_id=None, tenant=None):
        """Office's customProperties.saveAsync on an event (or an occurrence): notifies
        subscribers with "updated". Returns the saved properties."""
        payload = {
            "mailbox": mailbox,
            "event_id": event_id,
            "addin_id": addin_id or settings.MS_ADDIN_ID,
            "properties": properties,
        }
        if tenant:
            payload["tenant"] = tenant
        return self.control("POST", "addin/custom-properties", payload)["properties"]

    def custom_properties(self, mailbox, event_id, addin_id=None, tenant=None) -> dict:
        query = {
            "mailbox": mailbox,
            "event_id": event_id,
            "addin_id": addin_id or settings.MS_ADDIN_ID,
        }
        if tenant:
            query["tenant"] = tenant
        return self.control("GET", f"addin/custom-properties?{urlencode(query)}")["properties"]

    def spoil_addin_tokens(self, **knob):
        """The `addin_token` knob: expired=True, wrong_audience=True or "<aud>",
        wrong_issuer=True, unknown_key=True (all off again with no arguments)."""
        return self.knobs(addin_token=dict(NO_SPOILING, **knob))

    def follow_signin(self, auth_uri):
        """Open an authorize URL (the signin knob decides who signs in); return the Location
        Microsoft sends the browser back to."""
        response = self.http.get(auth_uri, allow_redirects=False, timeout=15)
        assert response.status_code == 302, response.text[:500]
        return response.headers["Location"]


def selected_fields(entry) -> set[str]:
    return {f.strip().lower() for f in entry["query"].get("$select", "").split(",") if f.strip()}


def body_requests(entries) -> list[dict]:
    """Requests that asked for an event body: a read of events without $select (Graph then
    returns everything) or a $select naming a body field."""
    found = []
    for entry in entries:
        path = entry["path"].lower()
        reads_events = entry["method"] == "GET" and ("calendarview" in path or "/events" in path)
        if reads_events and (
            "$select" not in entry["query"] or selected_fields(entry) & BODY_FIELDS
        ):
            found.append(entry)
    return found


def follow_consent(handle: M365Handle, location: str) -> str:
    """Open the admin-consent URL the product redirected to; return where Microsoft sends the
    browser back (the product's callback with admin_consent or error)."""
    response = handle.http.get(location, allow_redirects=False, timeout=15)
    assert response.status_code == 302, response.text[:300]
    return response.headers["Location"]


def callback_path(url: str) -> tuple[str, dict]:
    split = urlsplit(url)
    return split.path, {k: v[-1] for k, v in parse_qs(split.query).items()}


def wait_for(predicate, timeout=20.0, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture(scope="session")
def m365_ca():
    return trustme.CA(organization_name="MSS M365 sandbox test CA")


@pytest.fixture
def m365(tmp_path, settings, m365_ca):
    server = M365Server(port=0, ca_file=tmp_path / "m365-ca.pem", ca=m365_ca).start()
    settings.MS_LOGIN_URL = server.base_url
    settings.MS_GRAPH_URL = server.base_url + "/v1.0"
    settings.MS_CA_BUNDLE = str(server.ca_file)
    settings.MS_CLIENT_ID = DEFAULT_CLIENT_ID
    settings.MS_CLIENT_SECRET = DEFAULT_CLIENT_SECRET
    handle = M365Handle(server)
    yield handle
    handle.http.close()
    crashes = list(server.sandbox.crashes)
    server.stop()
    assert not crashes, f"the M365 sandbox could not answer as Graph would: {crashes}"


@pytest.fixture
def https_live_server(live_server, m365_ca, settings):
    """Django's live_server behind an https front the M365 sandbox trusts. The product sees what
    production's TLS terminator sends (X-Forwarded-Proto: https)."""
    front = HttpsFront(live_server.url, m365_ca)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    yield front
    front.stop()


class _EndpointHandler(TLSHandler):
    endpoint: "NotificationEndpoint"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = parse_qs(urlsplit(self.path).query).get("validationToken")
        if token:
            payload = token[0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        else:
            endpoint = self.endpoint
            status, delay = endpoint.status, endpoint.delay
            endpoint.posts.append({"time": time.monotonic(), "body": json.loads(body)})
            if delay:
                time.sleep(delay)
            payload = b""
            self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class NotificationEndpoint:
    """An https webhook endpoint the M365 sandbox trusts (a certificate from `ca`): answers
    Graph's validation, keeps every POST (`posts`: time and body), and answers `status` after
    `delay` seconds; change both while it runs to play an outage or a slow endpoint."""

    def __init__(self, ca, status=202, delay=0.0):
        self.status, self.delay = status, delay
        self.posts: list[dict] = []
        handler = type("Endpoint", (_EndpointHandler,), {"endpoint": self})
        self.server = https_server(handler, ca)
        self.url = f"{self.server.base_url}/hook"

    def notifications(self) -> list[dict]:
        return [note for post in self.posts for note in post["body"]["value"]]

    def stop(self):
        self.server.stop()


def https_server(handler, ca) -> TLSServer:
    """A started https server for `handler` (a sandbox.tls.TLSHandler), certified by `ca`: a
    notification receiver the sandbox trusts when `ca` is the sandbox's own."""
    return TLSServer(handler, "127.0.0.1", 0, ca=ca).start()


@pytest.fixture
def eager_celery():
    """Run tasks in-process (no broker) for tests that exercise task entry points."""
    from mss.celery import app

    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings_parallel_suffix):
    """End-to-end tests share the test database with a Celery worker process: on SQLite that
    needs a file (an in-memory database lives inside one process). Only when such a test runs."""
    from django.conf import settings as django_settings

    if not any(item.get_closest_marker("e2e") for item in request.session.items):
        return
    db = django_settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        test = db.setdefault("TEST", {})
        if not test.get("NAME") or "memory" in str(test.get("NAME")):
            test["NAME"] = str(Path(tempfile.gettempdir()) / f"mss-test-{os.getpid()}.sqlite3")


def connected_graph_integration(company, tenant: str) -> Integration:
    """An Exchange Online integration of `company` for a sandbox tenant, consented and syncing
    every meeting (none made private), as a test's population needs it."""
    return Integration.objects.create(
        company=company,
        kind=Integration.Kind.GRAPH,
        name="Exchange Online",
        status=Integration.Status.CONNECTED,
        tenant_id=tenant,
        all_meetings_private=False,
    )
