"""The Microsoft 365 sandbox's add-in side: nested app authentication tokens the tenant's
published keys verify, custom properties on events (what the Graph provider reads), the
Office.js stub, and CORS on exactly those endpoints."""

import html
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
import msal
import pytest
from django.conf import settings

from calendarsync.items import AddinChoice, ItemKind
from calendarsync.providers.graph.provider import GraphProvider
from sandbox.m365 import addin, demo
from sandbox.m365.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from sandbox.tls import TLSHandler
from tests.m365_sandbox import ANNA, DEMO_TENANT, https_server, wait_for

PUBLIC_STRINGS = "{00020329-0000-0000-C000-000000000046}"
START = datetime(2030, 1, 7, tzinfo=UTC)  # a Monday
END = START + timedelta(days=5)
CHOICE = {"forwarding": "divert", "reason": "MOTE", "open_diversion": True}


def verify(m365, token, *, audience=DEFAULT_CLIENT_ID, tenant=DEMO_TENANT):
    """Check a token as an API would: the tenant's published keys, issuer, audience, expiry."""
    keys = jwt.PyJWKSet.from_dict(m365.jwks(tenant))
    kid = jwt.get_unverified_header(token)["kid"]
    (key,) = [k for k in keys.keys if k.key_id == kid] or [None]
    if key is None:
        raise jwt.InvalidKeyError(f"no published key {kid}")
    return jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=f"{m365.url}/{tenant}/v2.0",
        options={"require": ["exp", "nbf", "iat"]},
    )


def booking(m365, mailbox=ANNA, **extra):
    return m365.create_event(
        mailbox,
        subject="Kundbesök",
        start={"dateTime": "2030-01-08T09:00:00", "timeZone": "UTC"},
        end={"dateTime": "2030-01-08T10:00:00", "timeZone": "UTC"},
        **extra,
    )


def read(mailbox=ANNA):
    return GraphProvider(DEMO_TENANT).fetch(mailbox, START, END, include_subject=True)


# ----- tokens


def test_it_issues_naa_tokens_that_the_tenants_published_key_verifies(m365):
    answer = m365.addin_token(ANNA)
    claims = verify(m365, answer["access_token"])
    anna = m365.sandbox.find_user(m365.sandbox.tenants[DEMO_TENANT], ANNA)
    assert claims["tid"] == DEMO_TENANT and claims["oid"] == anna["id"]
    assert claims["preferred_username"] == ANNA and claims["name"] == "Anna Andersson"
    assert "access_as_user" in claims["scp"].split()
    assert claims["azp"] == DEFAULT_CLIENT_ID and claims["ver"] == "2.0"
    assert claims["exp"] - claims["iat"] == 3600
    assert answer["expires_in"] == 3599 and answer["scope"].endswith("/access_as_user")
    identity = verify(m365, answer["id_token"])
    assert identity["oid"] == anna["id"] and "nonce" not in identity
    host = urlsplit(m365.url).netloc
    assert answer["account"] == {
        "homeAccountId": f"{anna['id']}.{DEMO_TENANT}",
        "environment": host,
        "tenantId": DEMO_TENANT,
        "username": ANNA,
        "localAccountId": anna["id"],
        "name": "Anna Andersson",
    }


def test_the_scope_asked_for_is_the_tokens_without_the_openid_scopes(m365):
    scope = f"api://app.example.se/{DEFAULT_CLIENT_ID}/access_as_user"
    answer = m365.addin_token(ANNA, scope=f"openid profile {scope} offline_access")
    assert answer["scope"] == scope
    assert verify(m365, answer["access_token"])["scp"] == "access_as_user"


def test_the_tenant_is_the_mailboxs_own_unless_another_is_named(m365):
    tenant = m365.add_tenant("Kund AB", users=["kim@kund.example.se"])
    claims = verify(m365, m365.addin_token("kim@kund.example.se")["access_token"], tenant=tenant)
    assert claims["tid"] == tenant
    assert claims["iss"] == f"{m365.url}/{tenant}/v2.0"
    elsewhere = m365.http.post(
        f"{m365.url}/_sandbox/addin/token",
        json={"mailbox": "kim@kund.example.se", "tenant": DEMO_TENANT},
        timeout=15,
    )
    assert elsewhere.status_code == 400 and elsewhere.json()["error_codes"] == [50034]


def test_it_refuses_another_app_and_a_tenant_without_consent(m365):
    other_app = m365.http.post(
        f"{m365.url}/_sandbox/addin/token",
        json={"mailbox": ANNA, "client_id": "11111111-2222-3333-4444-555555555555"},
        timeout=15,
    )
    assert other_app.status_code == 400 and other_app.json()["error_codes"] == [700016]
    m365.revoke()
    revoked = m365.http.post(f"{m365.url}/_sandbox/addin/token", json={"mailbox": ANNA})
    assert revoked.status_code == 400 and revoked.json()["error_codes"] == [65001]


@pytest.mark.parametrize(
    ("knob", "error"),
    [
        ({"expired": True}, jwt.ExpiredSignatureError),
        ({"wrong_audience": True}, jwt.InvalidAudienceError),
        ({"wrong_audience": "api://elsewhere"}, jwt.InvalidAudienceError),
        ({"wrong_issuer": True}, jwt.InvalidIssuerError),
        ({"unknown_key": True}, jwt.InvalidKeyError),
    ],
)
def test_the_addin_token_knob_spoils_the_access_token(m365, knob, error):
    m365.spoil_addin_tokens(**knob)
    answer = m365.addin_token(ANNA)
    with pytest.raises(error):
        verify(m365, answer["access_token"])
    verify(m365, answer["id_token"])  # the ID token stays good: the API never sees it
    m365.spoil_addin_tokens()
    assert verify(m365, m365.addin_token(ANNA)["access_token"])["tid"] == DEMO_TENANT


def test_a_wrong_audience_can_be_named(m365):
    m365.spoil_addin_tokens(wrong_audience="api://elsewhere")
    token = m365.addin_token(ANNA)["access_token"]
    assert verify(m365, token, audience="api://elsewhere")["aud"] == "api://elsewhere"


# ----- custom properties


def test_custom_properties_are_stored_as_the_addins_extended_property_merged_by_id(m365):
    other = {"id": f"String {PUBLIC_STRINGS} Name other", "value": "x"}
    event = booking(m365, singleValueExtendedProperties=[other])
    m365.set_custom_properties(ANNA, event["id"], {"forwarding": "info"})
    m365.set_custom_properties(ANNA, event["id"], CHOICE)
    stored = m365.sandbox.tenants[DEMO_TENANT]["events"][demo.user_id(ANNA)][event["id"]]
    ours = f"String {PUBLIC_STRINGS} Name cecp-{settings.MS_ADDIN_ID}"
    assert stored["singleValueExtendedProperties"] == [
        other,
        {"id": ours, "value": json.dumps(CHOICE, separators=(",", ":"))},
    ]
    assert m365.custom_properties(ANNA, event["id"]) == CHOICE
    assert m365.custom_properties(ANNA, event["id"], addin_id="another-addin") == {}


def test_the_graph_provider_reads_the_saved_choice(m365):
    chosen, plain = booking(m365), booking(m365)
    m365.set_custom_properties(ANNA, chosen["id"], {**CHOICE, "mssLink": "ignored"})
    items = {item.provider_item_id: item for item in read()}
    assert items[chosen["id"]].addin_choice == AddinChoice("divert", "MOTE", True)
    assert items[plain["id"]].addin_choice is None


def test_an_occurrence_gets_its_own_choice_and_becomes_an_exception(m365):
    series = m365.create_event(
        ANNA,
        subject="Daglig avstämning",
        start={"dateTime": "2030-01-07T08:00:00", "timeZone": "UTC"},
        end={"dateTime": "2030-01-07T08:15:00", "timeZone": "UTC"},
        recurrence={
            "pattern": {"type": "daily", "interval": 1},
            "range": {"type": "numbered", "startDate": "2030-01-07", "numberOfOccurrences": 3},
        },
    )
    second = f"{series['id']}-20300108"
    m365.set_custom_properties(ANNA, second, {"forwarding": "skip"})
    assert m365.custom_properties(ANNA, second) == {"forwarding": "skip"}
    assert m365.custom_properties(ANNA, series["id"]) == {}
    daily = sorted(
        (item for item in read() if item.series_master_id == series["id"]),
        key=lambda item: item.start,
    )
    assert [item.addin_choice for item in daily] == [None, AddinChoice("skip"), None]
    assert daily[1].kind == ItemKind.EXCEPTION and daily[0].kind == ItemKind.OCCURRENCE


def test_unknown_events_and_bad_bodies_are_refused(m365):
    url = f"{m365.url}/_sandbox/addin/custom-properties"
    body = {"mailbox": ANNA, "event_id": "AAMkADnothing", "properties": {}}
    assert m365.http.post(url, json=body, timeout=15).status_code == 404
    event = booking(m365)
    for wrong in ({"properties": "{}"}, {"event_id": None}):
        assert (
            m365.http.post(url, json={**body, "event_id": event["id"], **wrong}).status_code == 400
        )
    missing = {**body, "mailbox": "ingen@demo.se", "event_id": event["id"]}
    assert m365.http.post(url, json=missing, timeout=15).status_code == 404


class Hook(TLSHandler):
    """A webhook endpoint (https, as Graph demands): answers Graph's validation and keeps each
    notification (one POST may carry several)."""

    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = parse_qs(urlsplit(self.path).query).get("validationToken")
        if token:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(token[0].encode())))
            self.end_headers()
            self.wfile.write(token[0].encode())
            return
        self.received.extend(json.loads(body)["value"])
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook(m365_ca):
    received = []
    server = https_server(type("H", (Hook,), {"received": received}), m365_ca)
    yield f"{server.base_url}/hook", received
    server.stop()


def graph_token(m365):
    app = msal.ConfidentialClientApplication(
        DEFAULT_CLIENT_ID,
        client_credential=DEFAULT_CLIENT_SECRET,
        authority=f"{m365.url}/{DEMO_TENANT}",
        http_client=m365.http,
        instance_discovery=False,
    )
    return app.acquire_token_for_client(["https://graph.microsoft.com/.default"])["access_token"]


def test_saving_custom_properties_notifies_subscribers_like_an_outlook_edit(m365, hook):
    url, received = hook
    subscription = m365.http.post(
        f"{m365.url}/v1.0/subscriptions",
        headers={"Authorization": f"Bearer {graph_token(m365)}"},
        json={
            "changeType": "created,updated,deleted",
            "resource": f"/users/{ANNA}/events",
            "notificationUrl": url,
            "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=60)).isoformat(),
            "clientState": "hemligt",
        },
        timeout=15,
    )
    assert subscription.status_code == 201, subscription.text
    event = booking(m365)
    wait_for(lambda: received, message="the created notification")
    m365.set_custom_properties(ANNA, event["id"], CHOICE)
    wait_for(lambda: len(received) == 2, message="the updated notification")
    note = received[1]
    assert note["changeType"] == "updated" and note["resourceData"]["id"] == event["id"]
    assert note["clientState"] == "hemligt"


def test_a_graph_patch_merges_extended_properties_by_id(m365):
    ours = f"String {PUBLIC_STRINGS} Name cecp-{settings.MS_ADDIN_ID}"
    other = {"id": f"String {PUBLIC_STRINGS} Name other", "value": "x"}
    event = booking(m365, singleValueExtendedProperties=[other, {"id": ours, "value": "{}"}])
    patched = m365.http.patch(
        f"{m365.url}/v1.0/users/{ANNA}/events/{event['id']}",
        headers={"Authorization": f"Bearer {graph_token(m365)}"},
        json={
            "subject": "Flyttat",
            "singleValueExtendedProperties": [
                {"id": ours.upper(), "value": '{"forwarding":"info"}'}
            ],
        },
        timeout=15,
    )
    assert patched.status_code == 200, patched.text
    stored = m365.sandbox.tenants[DEMO_TENANT]["events"][demo.user_id(ANNA)][event["id"]]
    assert stored["subject"] == "Flyttat"
    assert stored["singleValueExtendedProperties"] == [
        other,
        {"id": ours.upper(), "value": '{"forwarding":"info"}'},
    ]
    assert m365.custom_properties(ANNA, event["id"]) == {"forwarding": "info"}


# ----- the Office.js stub and CORS


def test_it_serves_the_office_js_stub_cross_origin(m365):
    response = m365.http.get(f"{m365.url}/_sandbox/addin/office.js", timeout=15)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.content == addin.OFFICE_STUB.read_bytes()


def test_without_the_stub_file_office_js_is_not_found(m365, monkeypatch, tmp_path):
    monkeypatch.setattr(addin, "OFFICE_STUB", tmp_path / "missing.js")
    response = m365.http.get(f"{m365.url}/_sandbox/addin/office.js", timeout=15)
    assert response.status_code == 404
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["token", "custom-properties", "office.js"])
def test_the_addin_endpoints_answer_a_cors_preflight(m365, path):
    response = m365.http.options(
        f"{m365.url}/_sandbox/addin/{path}",
        headers={
            "Origin": "http://127.0.0.1:8000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=15,
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"content-type", "authorization"} <= allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_only_the_addin_endpoints_are_cross_origin(m365):
    origin = {"Origin": "http://127.0.0.1:8000"}
    token = m365.http.post(
        f"{m365.url}/_sandbox/addin/token", json={"mailbox": ANNA}, headers=origin, timeout=15
    )
    assert token.headers["Access-Control-Allow-Origin"] == "*"
    assert token.headers["Cache-Control"] == "no-store"
    for path in ("/_sandbox/knobs", f"/{DEMO_TENANT}/discovery/v2.0/keys", "/v1.0/users"):
        answer = m365.http.get(f"{m365.url}{path}", headers=origin, timeout=15)
        assert "Access-Control-Allow-Origin" not in answer.headers, path
        preflight = m365.http.options(f"{m365.url}{path}", headers=origin, timeout=15)
        assert preflight.status_code == 405, path
        assert "Access-Control-Allow-Origin" not in preflight.headers, path


def test_the_demo_page_opens_the_pane_beside_a_coming_booking(m365):
    pane = "http://127.0.0.1:8000/addin/taskpane/"
    response = m365.http.get(f"{m365.url}/_sandbox/addin/demo", params={"pane": pane}, timeout=15)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "Outlook-tillägget – demo" in page and "anna.andersson@demo.se" in page
    src = re.search(r'<iframe title="Telefonstatus" src="([^"]+)"', page).group(1)
    address, _, fragment = html.unescape(src).partition("#office-stub=")
    assert address == pane + "?lang=sv"
    config = json.loads(unquote(fragment))
    assert config["mode"] == "graph" and config["mailbox"] == "anna.andersson@demo.se"
    assert config["sandbox"] == m365.url and config["itemId"].startswith("AAMkAD")
