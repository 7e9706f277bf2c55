"""Microsoft's msgraph-sdk, replayed: the requests it made (tests/data/msgraph-sdk-requests.json,
recorded by tests/tools/record_msgraph_sdk.py) get from the sandbox what the SDK needs.

The recording holds each request as the SDK sent it (percent-encoding included, e.g.
`/users/anna.andersson%40demo.se` and `%24select`), with placeholders for what changes from run
to run. Plain requests replay it in order; every answer must have the recorded status and the
shape the SDK parses.
"""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msal
import pytest
import requests

from sandbox.m365.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.m365_sandbox import DEMO_TENANT, NotificationEndpoint

RECORDING = json.loads(
    (Path(__file__).parent / "data" / "msgraph-sdk-requests.json").read_text(encoding="utf-8")
)


@pytest.fixture
def token(m365):
    app = msal.ConfidentialClientApplication(
        DEFAULT_CLIENT_ID,
        client_credential=DEFAULT_CLIENT_SECRET,
        authority=f"{m365.url}/{DEMO_TENANT}",
        http_client=m365.http,
        instance_discovery=False,
    )
    return app.acquire_token_for_client(["https://graph.microsoft.com/.default"])["access_token"]


def fill(value, names: dict):
    """The recording's placeholders: {eventId}, {subscriptionId}, {notificationUrl},
    {expiry+N} (N minutes from now)."""
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    if not isinstance(value, str):
        return value
    expiry = re.fullmatch(r"\{expiry\+(\d+)\}", value)
    if expiry:
        return (datetime.now(UTC) + timedelta(minutes=int(expiry.group(1)))).isoformat()
    for name, filled in names.items():
        value = value.replace("{" + name + "}", filled)
    return value


def send(m365, token, recorded, names) -> requests.Response:
    request = requests.Request(
        recorded["method"],
        m365.url,  # the exact URL is set below: requests must not re-encode what the SDK sent
        headers={**recorded["headers"], "Authorization": f"Bearer {token}"},
        json=fill(recorded["body"], names) if "body" in recorded else None,
    )
    prepared = m365.http.prepare_request(request)
    prepared.url = m365.url + fill(recorded["path"], names)
    return m365.http.send(prepared, timeout=15)


def assert_what_the_sdk_needs(m365, recorded, response):
    expect = recorded["expect"]
    assert response.status_code == expect["status"], (recorded["path"], response.text[:500])
    assert response.headers["request-id"] and response.headers["client-request-id"]
    if expect["shape"] == "empty":
        assert response.content == b""
        return None
    body = response.json()
    assert "error" not in body
    if expect["shape"] == "collection":
        assert isinstance(body["value"], list)
        assert all(isinstance(item.get("id"), str) for item in body["value"])
        assert body.get("@odata.nextLink", m365.url).startswith(m365.url)
    elif expect["shape"] == "subscription":
        wanted = {"id", "resource", "changeType", "notificationUrl", "expirationDateTime"}
        assert wanted <= set(body) and all(body[key] for key in wanted)
        datetime.fromisoformat(body["expirationDateTime"].replace("Z", "+00:00"))
    else:
        assert isinstance(body.get("id"), str)
    return body


def test_the_recording_covers_what_the_issue_asks_of_the_sdk():
    seen = [(r["method"], r["path"].split("?")[0]) for r in RECORDING["requests"]]
    paths = [path for _method, path in seen]
    assert "/v1.0/users" in paths
    assert any(p.endswith("/calendarView") and "%40" in p for p in paths)  # an encoded UPN
    assert any(
        r["path"].split("?")[0].endswith("/calendarView") and "select=" in r["path"]
        for r in RECORDING["requests"]
    )
    assert any("singleValueExtendedProperties" in r["path"] for r in RECORDING["requests"])
    assert [m for m, p in seen if p.startswith("/v1.0/subscriptions")] == [
        "POST",
        "PATCH",
        "POST",
        "DELETE",
    ]
    assert "failed" not in RECORDING["sdk"] and RECORDING["sdk"]["eventsWithProperty"]


def test_the_sandbox_answers_every_recorded_sdk_request_as_the_sdk_needs(m365, token):
    made = [m365.create_event(RECORDING["mailbox"], **body) for body in RECORDING["meetings"]]
    meeting = made[0]  # the one with the add-in's property, in Pacific Standard Time
    endpoint = NotificationEndpoint(m365.ca)
    names = {"eventId": meeting["id"], "notificationUrl": endpoint.url}
    viewed = []
    try:
        for recorded in RECORDING["requests"]:
            response = send(m365, token, recorded, names)
            body = assert_what_the_sdk_needs(m365, recorded, response)
            path = recorded["path"].split("?")[0]
            if recorded["method"] == "POST" and path == "/v1.0/subscriptions":
                names["subscriptionId"] = body["id"]
            if path.endswith("/events") and recorded["method"] == "GET":
                chosen = [e for e in body["value"] if e["id"] == meeting["id"]]
                assert chosen[0]["singleValueExtendedProperties"][0]["value"] == (
                    '{"forwarding": "divert"}'
                )
            if path.endswith("/calendarView") and "$select=" in recorded["path"]:
                selected = set(
                    re.search(r"\$select=([^&]+)", recorded["path"])
                    .group(1)
                    .replace("%2C", ",")
                    .split(",")
                )
                assert all(set(e) <= selected | {"@odata.etag"} for e in body["value"])
                viewed += body["value"]
    finally:
        endpoint.stop()
    # Every page the SDK followed, together: the fortnight's meetings, each once.
    assert sorted(e["id"] for e in viewed) == sorted(e["id"] for e in made)
    (pacific,) = [e for e in viewed if e["id"] == meeting["id"]]
    assert pacific["start"] == {"dateTime": "2030-01-02T18:00:00.0000000", "timeZone": "UTC"}
    assert m365.subscriptions() == []  # created, renewed, reauthorized and deleted
    validations = [d for d in m365.deliveries() if d["kind"] == "validation"]
    assert validations and all(d["ok"] for d in validations)
