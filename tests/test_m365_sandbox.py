"""The Microsoft 365 sandbox speaks the wire formats the product relies on."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import msal
import pytest

from sandbox.m365 import calendar, demo
from sandbox.m365.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, M365Server
from sandbox.tls import TLSHandler
from tests.m365_sandbox import ANNA, DEMO_TENANT, https_server

SCOPES = ["https://graph.microsoft.com/.default"]
PROPERTY = "String {00020329-0000-0000-C000-000000000046} Name cecp-test"


@pytest.fixture
def server(tmp_path):
    server = M365Server(port=0, ca_file=tmp_path / "ca.pem").start()
    yield server
    server.stop()


@pytest.fixture
def handle(server):
    from tests.m365_sandbox import M365Handle

    return M365Handle(server)


def app_for(handle, tenant=DEMO_TENANT, secret=DEFAULT_CLIENT_SECRET):
    return msal.ConfidentialClientApplication(
        DEFAULT_CLIENT_ID,
        client_credential=secret,
        authority=f"{handle.url}/{tenant}",
        http_client=handle.http,
        instance_discovery=False,
    )


def graph(handle, path, token, **kwargs):
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return handle.http.request(
        kwargs.pop("method", "GET"), f"{handle.url}/v1.0{path}", headers=headers, **kwargs
    )


def window(days=14):
    now = datetime.now(UTC)
    return {
        "startDateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endDateTime": (now + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@pytest.fixture
def token(handle):
    return app_for(handle).acquire_token_for_client(SCOPES)["access_token"]


def test_it_writes_its_ca_and_serves_https_that_msal_trusts(handle):
    result = app_for(handle).acquire_token_for_client(SCOPES)
    assert result["token_type"] == "Bearer" and result["access_token"]
    assert open(handle.ca_file).read().startswith("-----BEGIN CERTIFICATE-----")


def test_it_answers_a_revoked_consent_like_entra_id(handle):
    for code, error in (("700016", "unauthorized_client"), ("7000229", "invalid_client")):
        handle.revoke(code=code)
        result = app_for(handle).acquire_token_for_client(SCOPES)
        assert result["error"] == error
        assert int(code) in result["error_codes"]
        assert f"AADSTS{code}" in result["error_description"]
    handle.consent()
    assert "access_token" in app_for(handle).acquire_token_for_client(SCOPES)


def test_it_rejects_a_wrong_client_secret(handle):
    result = app_for(handle, secret="wrong").acquire_token_for_client(SCOPES)
    assert result["error"] == "invalid_client" and 7000215 in result["error_codes"]


def test_it_rejects_unknown_select_fields_with_graphs_error_shape(handle, token):
    response = graph(
        handle, f"/users/{ANNA}/calendarView", token, params={**window(), "$select": "id,foo"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "RequestBroker--ParseUri"
    assert "'foo'" in response.json()["error"]["message"]


def test_it_pages_calendar_view_and_honours_preferences(handle, token):
    params = {**window(), "$select": "id,start,end,subject,type"}
    prefer = {"Prefer": 'outlook.timezone="UTC", odata.maxpagesize=5'}
    response = graph(handle, f"/users/{ANNA}/calendarView", token, params=params, headers=prefer)
    assert response.status_code == 200
    assert 'outlook.timezone="UTC"' in response.headers["Preference-Applied"]
    page = response.json()
    assert len(page["value"]) == 5
    seen = [e["id"] for e in page["value"]]
    while "@odata.nextLink" in page:
        page = handle.http.get(
            page["@odata.nextLink"], headers={"Authorization": f"Bearer {token}", **prefer}
        ).json()
        seen += [e["id"] for e in page["value"]]
    assert len(seen) == len(set(seen)) > 10
    assert all(
        set(e) == {"@odata.etag", "id", "start", "end", "subject", "type"} for e in page["value"]
    )


def test_it_expands_recurrence_with_a_moved_and_a_cancelled_occurrence(handle, token):
    params = {**window(21), "$select": "id,start,type,seriesMasterId,subject", "$top": "500"}
    events = graph(handle, f"/users/{ANNA}/calendarView", token, params=params).json()["value"]
    standups = [e for e in events if e["subject"].startswith("Daglig stand-up")]
    kinds = {e["type"] for e in standups}
    assert kinds == {"occurrence", "exception"}
    assert all(e["seriesMasterId"] for e in standups)
    assert not any(e["type"] == "seriesMaster" for e in events)
    days = [e["start"]["dateTime"][:10] for e in standups]
    workdays = demo._workdays(datetime.now(demo.STOCKHOLM).date(), 10)
    assert workdays[4].isoformat() not in days  # the cancelled (deleted) occurrence
    moved = [e for e in standups if e["type"] == "exception"]
    assert moved[0]["start"]["dateTime"].startswith(f"{workdays[2]}T08:30")


def test_it_returns_all_day_events_as_midnight_dates_in_any_time_zone(handle, token):
    params = {**window(), "$select": "id,start,end,isAllDay", "$top": "500"}
    for zone in ("UTC", "W. Europe Standard Time"):
        prefer = {"Prefer": f'outlook.timezone="{zone}"'}
        events = graph(
            handle, f"/users/{ANNA}/calendarView", token, params=params, headers=prefer
        ).json()["value"]
        all_day = [e for e in events if e["isAllDay"]]
        assert all_day
        assert all(e["start"]["dateTime"].endswith("T00:00:00.0000000") for e in all_day)
        assert all(e["start"]["timeZone"] == zone for e in all_day)


def test_it_expands_only_the_named_extended_property(handle, token):
    created = handle.create_event(
        ANNA,
        subject="Med tillägg",
        start={"dateTime": "2030-01-02T10:00:00", "timeZone": "UTC"},
        end={"dateTime": "2030-01-02T11:00:00", "timeZone": "UTC"},
        singleValueExtendedProperties=[
            {"id": PROPERTY, "value": '{"forwarding": "divert"}'},
            {"id": "String {00020329-0000-0000-C000-000000000046} Name other", "value": "x"},
        ],
    )
    params = {
        "startDateTime": "2030-01-02T00:00:00Z",
        "endDateTime": "2030-01-03T00:00:00Z",
        "$select": "id",
        "$expand": f"singleValueExtendedProperties($filter=id eq '{PROPERTY}')",
    }
    events = graph(handle, f"/users/{ANNA}/calendarView", token, params=params).json()["value"]
    assert [e["id"] for e in events] == [created["id"]]
    assert events[0]["singleValueExtendedProperties"] == [
        {"id": PROPERTY, "value": '{"forwarding": "divert"}'}
    ]


def test_it_batches_at_most_20_and_can_throttle_inner_requests(handle, token):
    step = {
        "method": "GET",
        "url": f"/users/{ANNA}/calendarView?startDateTime="
        "2030-01-01T00:00:00Z&endDateTime=2030-01-02T00:00:00Z&$select=id",
    }
    too_many = {"requests": [dict(step, id=str(n)) for n in range(21)]}
    assert graph(handle, "/$batch", token, method="POST", json=too_many).status_code == 400
    handle.throttle("calendarView", count=1, retry_after=3)
    two = {"requests": [dict(step, id="a"), dict(step, id="b")]}
    response = graph(handle, "/$batch", token, method="POST", json=two)
    assert response.status_code == 200
    # Graph runs the steps in any order: whichever ran first met the throttle.
    answers = sorted(response.json()["responses"], key=lambda r: r["status"])
    assert {r["id"] for r in answers} == {"a", "b"}
    assert [r["status"] for r in answers] == [200, 429]
    assert answers[1]["headers"]["Retry-After"] == "3"


def test_it_answers_an_unknown_mailbox_with_error_invalid_user(handle, token):
    response = graph(handle, "/users/nobody@demo.se/calendarView", token, params=window())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ErrorInvalidUser"


class Receiver(TLSHandler):
    """A webhook endpoint over https (Graph delivers nowhere else)."""

    received: list
    plain = True

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        query = parse_qs(urlsplit(self.path).query)
        if "validationToken" in query:
            token = query["validationToken"][0].encode()
            self.send_response(200)
            kind = "text/plain" if self.plain else "text/html"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(token)))
            self.end_headers()
            self.wfile.write(token)
            return
        self.received.append(body)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(server):
    received = []
    handler = type("R", (Receiver,), {"received": received})
    https = https_server(handler, server.ca)  # the sandbox trusts its own CA
    yield https.httpd, received, f"{https.base_url}/hook"
    https.stop()


def subscribe(handle, token, url):
    return graph(
        handle,
        "/subscriptions",
        token,
        method="POST",
        json={
            "changeType": "created,updated,deleted",
            "resource": f"/users/{ANNA}/events",
            "notificationUrl": url,
            "lifecycleNotificationUrl": url,
            "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=4000)).isoformat(),
            "clientState": "secret-state",
        },
    )


def test_it_validates_subscriptions_and_delivers_real_webhooks(handle, token, receiver):
    httpd, received, url = receiver
    response = subscribe(handle, token, url)
    assert response.status_code == 201, response.text
    subscription = response.json()
    handle.create_event(
        ANNA,
        subject="Ny",
        start={"dateTime": "2030-01-02T10:00:00", "timeZone": "UTC"},
        end={"dateTime": "2030-01-02T11:00:00", "timeZone": "UTC"},
    )
    from tests.m365_sandbox import wait_for

    wait_for(lambda: received, message="a notification")
    import json

    note = json.loads(received[0])["value"][0]
    assert note["subscriptionId"] == subscription["id"]
    assert note["changeType"] == "created" and note["clientState"] == "secret-state"
    handle.lifecycle(subscription["id"], "reauthorizationRequired")
    wait_for(lambda: len(received) == 2, message="a lifecycle event")
    assert json.loads(received[1])["value"][0]["lifecycleEvent"] == "reauthorizationRequired"


def test_it_refuses_a_subscription_whose_endpoint_answers_validation_as_html(
    handle, token, receiver
):
    httpd, received, url = receiver
    httpd.RequestHandlerClass.plain = False
    response = subscribe(handle, token, url)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ValidationError"


def test_it_logs_every_graph_request(handle, token):
    handle.clear_requests()
    graph(handle, f"/users/{ANNA}/calendarView", token, params={**window(), "$select": "id"})
    entries = handle.graph_requests()
    assert [e["path"] for e in entries] == [f"/v1.0/users/{ANNA}/calendarView"]
    assert entries[0]["query"]["$select"] == "id"


def test_the_demo_tenant_holds_a_realistic_fortnight():
    tenant = demo.demo_tenant(datetime.now(UTC))
    assert {u["mail"] for u in tenant["users"].values()} >= {"anna.andersson@demo.se"}
    events = [e for per_user in tenant["events"].values() for e in per_user.values()]
    assert any(e["sensitivity"] == "private" for e in events)
    assert any(e["isAllDay"] and e["showAs"] == "oof" for e in events)
    assert any(e["responseStatus"]["response"] == "declined" for e in events)
    assert any(e["showAs"] == "tentative" for e in events)
    assert any(e.get("recurrence") for e in events)
    assert any(e["subject"] == "Lunch" for e in events)
    now = datetime.now(UTC)
    view = calendar.calendar_view(list(events), now, now + timedelta(days=14))
    assert len(view) > 50


def test_a_restart_keeps_consent_subscriptions_and_events(tmp_path, m365_ca):
    state = tmp_path / "m365.json"
    first = M365Server(port=0, ca_file=tmp_path / "ca.pem", state_file=state, ca=m365_ca)
    first.sandbox.set_consent(DEMO_TENANT, False, code="7000112")
    tenant = first.sandbox.tenants[DEMO_TENANT]
    user = first.sandbox.find_user(tenant, ANNA)
    _, _, event = first.sandbox.create_event(tenant, user, {"subject": "Kvar efter omstart"})
    first.sandbox.subscriptions["s1"] = {"id": "s1", "tenantId": DEMO_TENANT}
    first.sandbox.save()
    first.httpd.server_close()

    again = M365Server(port=0, ca_file=tmp_path / "ca.pem", state_file=state, ca=m365_ca)
    tenant = again.sandbox.tenants[DEMO_TENANT]
    assert tenant["consented"] is False and tenant["revoked_code"] == "7000112"
    assert event["id"] in tenant["events"][user["id"]]
    assert "s1" in again.sandbox.subscriptions
    again.httpd.server_close()
