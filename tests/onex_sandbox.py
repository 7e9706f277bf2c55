"""Pytest fixtures: a One X sandbox on a free port with its own state file, and a client for it.

`onex_sandbox` starts the real HTTP server in this process (on a background thread), points
settings.ONEX_API_URL at it, and hands back a small handle for the sandbox-only controls.
"""

import time

import pytest
import requests

from onex.client import OneXClient
from sandbox.onex import Knobs, OneXSandbox

CLIENT_ID, CLIENT_SECRET = "mss-test", "mss-test-secret"


class SandboxHandle:
    """Speaks to the sandbox's /_sandbox controls over HTTP, as a test would from outside."""

    def __init__(self, server):
        self.server = server
        self.url = server.url
        self.http = requests.Session()

    def _control(self, method, path, payload=None):
        response = self.http.request(method, f"{self.url}/_sandbox{path}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def knobs(self, **changes):
        return self._control("POST", "/knobs", changes)

    def requests(self, since=0, *, path_contains=""):
        items = self._control("GET", f"/requests?since={since}")["items"]
        return [item for item in items if path_contains in item["path"]]

    def clear_requests(self):
        self._control("DELETE", "/requests")

    def expire_tokens(self):
        self._control("POST", "/tokens/expire")

    def put_company(self, company_id, name, subscriptions=(), reasons=()):
        spec = {"name": name, "subscriptions": list(subscriptions), "reasons": list(reasons)}
        self._control("PUT", f"/companies/{company_id}", spec)

    def put_subscription(self, company_id, subscription_id, **fields):
        return self._control(
            "PUT", f"/companies/{company_id}/subscriptions/{subscription_id}", fields
        )

    def delete_subscription(self, company_id, subscription_id):
        self._control("DELETE", f"/companies/{company_id}/subscriptions/{subscription_id}")

    def put_reason(self, company_id, code, sv, en="", **fields):
        payload = {"label": {"sv": sv, "en": en}, **fields}
        self._control("PUT", f"/companies/{company_id}/absence-reasons/{code}", payload)

    def delete_reason(self, company_id, code):
        self._control("DELETE", f"/companies/{company_id}/absence-reasons/{code}")

    def absences(self, company_id):
        return self._control("GET", f"/companies/{company_id}/absences")["items"]

    def page(self, company_id=None):
        query = f"?company={company_id}" if company_id else ""
        response = self.http.get(f"{self.url}/{query}", timeout=10)
        response.raise_for_status()
        return response.text


@pytest.fixture
def onex_sandbox(tmp_path, settings):
    server = OneXSandbox(
        port=0,
        state_path=str(tmp_path / "onex-sandbox.json"),
        knobs=Knobs(),  # explicit: no ONEX_SANDBOX_* variable of the shell leaks into a test
        clients=f"{CLIENT_ID}:{CLIENT_SECRET}",
    ).start()
    settings.ONEX_API_URL = server.url
    settings.ONEX_CLIENT_ID = CLIENT_ID
    settings.ONEX_CLIENT_SECRET = CLIENT_SECRET
    handle = SandboxHandle(server)
    yield handle
    handle.http.close()
    server.close()


class RecordingSleep:
    """Sleeps for real and remembers each wait, so tests can check what the client waited."""

    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)
        time.sleep(seconds)


@pytest.fixture
def onex_client(onex_sandbox):
    client = OneXClient(
        onex_sandbox.url,
        CLIENT_ID,
        CLIENT_SECRET,
        timeout=(2, 10),
        backoff_base=0.05,
        backoff_cap=0.5,
        sleep=RecordingSleep(),
    )
    yield client
    client.close()
