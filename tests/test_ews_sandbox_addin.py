"""The EWS sandbox's add-in side: Exchange's auth metadata document (anonymous, while EWS stays
behind NTLM), identity tokens it verifies, and custom properties on items that GetItem and the
EWS provider read and that push a modification. Every SOAP answer is schema-checked by `ews`."""

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from cryptography import x509
from django.conf import settings
from exchangelib import EWSTimeZone
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.items import CalendarItem
from exchangelib.properties import ModifiedEvent

from calendarsync.items import AddinChoice, ItemKind
from calendarsync.providers import provider_for

PERSON = "kalle@kommun.example.se"
AUD = "https://mss.example.se/addin/taskpane/"
EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"
TZ = EWSTimeZone("Europe/Stockholm")
START = datetime(2030, 3, 4, tzinfo=UTC)  # a Monday
END = START + timedelta(days=5)
CHOICE = {"forwarding": "divert", "reason": "MOTE", "open_diversion": True}


@pytest.fixture
def person(ews):
    ews.add_mailbox(PERSON, "Kalle Kommun")
    return PERSON


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify(metadata: dict, token: str, audience=AUD) -> dict:
    """Check an identity token as the product must: the metadata's certificate by x5t, then
    signature, issuer, audience and lifetime."""
    x5t = jwt.get_unverified_header(token)["x5t"]
    found = [k for k in metadata["keys"] if k["keyinfo"]["x5t"] == x5t]
    if not found:
        raise jwt.InvalidKeyError(f"no certificate {x5t}")
    cert = x509.load_der_x509_certificate(base64.b64decode(found[0]["keyvalue"]["value"]))
    return jwt.decode(
        token,
        cert.public_key(),
        algorithms=["RS256"],
        audience=audience,
        issuer=metadata["issuer"],
        leeway=300,
        options={"require": ["exp", "nbf"]},  # PyJWT reads Exchange's numeric strings too
    )


def single(ews, **extra):
    return ews.create_event(
        PERSON, subject="Kundbesök", start="2030-03-05T09:00:00Z", end="2030-03-05T10:00:00Z",
        **extra,
    )  # fmt: skip


def series(ews):
    return ews.create_event(
        PERSON, subject="Daglig avstämning", start="2030-03-04T07:00:00Z",
        end="2030-03-04T07:15:00Z", recurrence={"pattern": "daily", "count": 3},
    )  # fmt: skip


@pytest.fixture
def addin_property():
    """exchangelib reading cecp-<MS_ADDIN_ID> as the product does (GetItem with that
    ExtendedFieldURI), registered on CalendarItem as `custom`."""

    class Custom(ExtendedProperty):
        distinguished_property_set_id = "PublicStrings"
        property_name = f"cecp-{settings.MS_ADDIN_ID}"
        property_type = "String"

    CalendarItem.register("custom", Custom)
    yield
    CalendarItem.deregister("custom")


def view(account):
    return list(
        account.calendar.view(start=START.astimezone(TZ), end=END.astimezone(TZ)).only(
            "subject", "start", "type", "custom"
        )
    )


# ----- the auth metadata document


def test_the_metadata_document_is_anonymous_while_ews_stays_behind_ntlm(ews):
    anonymous = requests.get(
        f"{ews.url}/autodiscover/metadata/json/1", verify=ews.ca_file, timeout=15
    )
    assert anonymous.status_code == 200
    assert anonymous.headers["Content-Type"].startswith("application/json")
    entry = ews.requests()[-1]
    assert (entry["path"], entry["auth"], entry["status"]) == (
        "/autodiscover/metadata/json/1",
        None,
        200,
    )
    soap = requests.post(ews.ews_url, data=b"<x/>", verify=ews.ca_file, timeout=15)
    assert soap.status_code == 401
    assert "NTLM" in soap.headers.get("WWW-Authenticate", "")


def test_the_metadata_document_has_exchanges_shape_and_certificate(ews):
    document = ews.metadata()
    realm = "127.0.0.1"
    assert document["name"] == "Exchange" and document["realm"] == realm
    assert document["serviceName"] == EXCHANGE
    assert document["issuer"] == f"{EXCHANGE}@{realm}"
    assert document["allowedAudiences"] == [f"{EXCHANGE}@{realm}"]
    assert document["id"] and document["version"] == "1.0"
    (key,) = document["keys"]
    assert key["usage"] == "signing" and key["keyvalue"]["type"] == "x509Certificate"
    der = base64.b64decode(key["keyvalue"]["value"])
    x509.load_der_x509_certificate(der)  # a real certificate
    assert key["keyinfo"]["x5t"] == b64url(hashlib.sha1(der, usedforsecurity=False).digest())
    assert document["endpoints"] == [
        {
            "location": f"{ews.url}/autodiscover/metadata/json/1",
            "protocol": "OAuth2",
            "usage": "metadata",
        }
    ]


def test_an_outage_takes_the_metadata_document_down_too(ews):
    ews.knobs(outage="503")
    response = requests.get(
        f"{ews.url}/autodiscover/metadata/json/1", verify=ews.ca_file, timeout=15
    )
    assert response.status_code == 503


# ----- identity tokens


def test_an_identity_token_verifies_against_the_metadata_document(ews, person):
    token = ews.identity_token(PERSON, AUD)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT" and header["alg"] == "RS256" and header["x5t"]
    claims = verify(ews.metadata(), token)
    assert isinstance(claims["exp"], str) and isinstance(claims["nbf"], str)
    assert claims["aud"] == AUD and int(claims["exp"]) - int(claims["nbf"]) == 8 * 3600
    assert claims["appctxsender"] == f"{EXCHANGE}@127.0.0.1"
    assert claims["isbrowserhostedapp"] == "true"
    context = json.loads(claims["appctx"])  # a JSON string inside the token
    assert context == {
        "msexchuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{PERSON}")),
        "version": "ExIdTok.V1",
        "amurl": f"{ews.url}/autodiscover/metadata/json/1",
    }


def test_the_exchange_id_is_stable_per_mailbox(ews, person):
    ews.add_mailbox("lisa@kommun.example.se", "Lisa")

    def uid(mailbox):
        claims = jwt.decode(ews.identity_token(mailbox, AUD), options={"verify_signature": False})
        return json.loads(claims["appctx"])["msexchuid"]

    assert uid(PERSON) == uid(PERSON.upper()) != uid("lisa@kommun.example.se")


@pytest.mark.parametrize(
    ("knob", "error"),
    [
        ({"expired": True}, jwt.ExpiredSignatureError),
        ({"unknown_key": True}, jwt.InvalidKeyError),
        ({"wrong_audience": True}, jwt.InvalidAudienceError),
        ({"wrong_audience": "https://annan.example.se/pane"}, jwt.InvalidAudienceError),
    ],
)
def test_the_identity_token_knob_spoils_tokens(ews, person, knob, error):
    ews.spoil_identity_tokens(**knob)
    with pytest.raises(error):
        verify(ews.metadata(), ews.identity_token(PERSON, AUD))
    ews.spoil_identity_tokens()
    assert verify(ews.metadata(), ews.identity_token(PERSON, AUD))["aud"] == AUD


def test_the_amurl_knob_names_another_metadata_address(ews, person):
    ews.spoil_identity_tokens(amurl="https://evil.example.se/autodiscover/metadata/json/1")
    claims = verify(ews.metadata(), ews.identity_token(PERSON, AUD))  # still properly signed
    assert json.loads(claims["appctx"])["amurl"] == (
        "https://evil.example.se/autodiscover/metadata/json/1"
    )


def test_unknown_knob_values_mailboxes_and_missing_fields_are_refused(ews, person):
    with pytest.raises(requests.HTTPError):
        ews.spoil_identity_tokens(forged=True)
    url = f"{ews.url}/_sandbox/addin/identity-token"
    assert (
        ews.http.post(url, json={"mailbox": "ingen@kommun.example.se", "aud": AUD}).status_code
        == 404
    )
    assert ews.http.post(url, json={"mailbox": PERSON}).status_code == 400
    assert ews.http.post(url, data=b"[]").status_code == 400


# ----- custom properties


def test_custom_properties_are_returned_by_get_item_and_kept_per_addin(ews, person, addin_property):
    booking = single(ews, extended={"cecp-another-addin": '{"a":1}'})
    assert booking["item_id"]
    ews.set_custom_properties(PERSON, booking["item_id"], {"forwarding": "info"})
    assert ews.set_custom_properties(PERSON, booking["item_id"], CHOICE) == CHOICE
    assert ews.custom_properties(PERSON, booking["item_id"]) == CHOICE
    assert ews.custom_properties(PERSON, booking["item_id"], addin_id="another-addin") == {"a": 1}
    (item,) = view(ews.account(PERSON))
    item = ews.account(PERSON).calendar.get(id=item.id)  # GetItem, not only FindItem
    assert json.loads(item.custom) == CHOICE
    asked = ews.requests(operation="GetItem")[-1]["extended_fields"]
    assert f"cecp-{settings.MS_ADDIN_ID}" in asked


def test_an_occurrence_gets_its_own_properties_as_an_exception(ews, person, addin_property):
    series(ews)
    account = ews.account(PERSON)
    first, second, third = view(account)
    ews.set_custom_properties(PERSON, second.id, {"forwarding": "skip"})
    assert ews.custom_properties(PERSON, second.id) == {"forwarding": "skip"}
    items = view(account)
    assert [i.custom for i in items] == [None, '{"forwarding":"skip"}', None]
    assert [i.type for i in items] == ["Occurrence", "Exception", "Occurrence"]
    assert json.loads(account.calendar.get(id=second.id).custom) == {"forwarding": "skip"}


def test_the_ews_provider_reads_the_saved_choice(ews, on_prem, company):
    integration = on_prem(company, PERSON)
    chosen, plain = single(ews), single(ews)
    series(ews)
    ews.set_custom_properties(PERSON, chosen["item_id"], {**CHOICE, "mssLink": "abc"})
    items = provider_for(integration).fetch(PERSON, START, END, include_subject=True)
    occurrences = sorted((i for i in items if i.kind != ItemKind.SINGLE), key=lambda i: i.start)
    ews.set_custom_properties(PERSON, occurrences[2].provider_item_id, {"forwarding": "info"})
    items = provider_for(integration).fetch(PERSON, START, END, include_subject=True)
    by_id = {item.provider_item_id: item for item in items}
    assert by_id[chosen["item_id"]].addin_choice == AddinChoice("divert", "MOTE", True)
    assert by_id[plain["item_id"]].addin_choice is None
    daily = sorted((i for i in items if i.kind != ItemKind.SINGLE), key=lambda i: i.start)
    assert [i.addin_choice for i in daily] == [None, None, AddinChoice("info")]


def test_saving_custom_properties_pushes_a_modification(ews, person, push_receiver):
    booking = single(ews)
    ews.account(PERSON).calendar.subscribe_to_push(push_receiver.url, status_frequency=1)
    ews.set_custom_properties(PERSON, booking["id"], CHOICE)  # a booking id works too
    push_receiver.wait_for(lambda r: any(isinstance(e, ModifiedEvent) for e in r.events()))
    (modified,) = [e for e in push_receiver.events() if isinstance(e, ModifiedEvent)]
    assert modified.item_id.id == booking["item_id"]
    assert ("notification", "SendNotification") in ews.checked.seen


def test_unknown_items_and_bad_bodies_are_refused(ews, person):
    url = f"{ews.url}/_sandbox/addin/custom-properties"
    body = {"mailbox": PERSON, "item_id": "bm9wZQ==", "addin_id": "x", "properties": {}}
    assert ews.http.post(url, json=body, timeout=15).status_code == 404
    booking = single(ews)
    for wrong in ({"properties": "{}"}, {"addin_id": ""}, {"item_id": 7}):
        answer = ews.http.post(url, json={**body, "item_id": booking["item_id"], **wrong})
        assert answer.status_code == 400, wrong
    assert ews.http.post(url, json={**body, "mailbox": "ingen@x.se"}).status_code == 404


# ----- CORS


@pytest.mark.parametrize("path", ["identity-token", "custom-properties"])
def test_the_addin_endpoints_answer_a_cors_preflight(ews, path):
    response = ews.http.options(
        f"{ews.url}/_sandbox/addin/{path}",
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


def test_only_the_addin_endpoints_are_cross_origin(ews, person):
    origin = {"Origin": "http://127.0.0.1:8000"}
    token = ews.http.post(
        f"{ews.url}/_sandbox/addin/identity-token",
        json={"mailbox": PERSON, "aud": AUD},
        headers=origin,
        timeout=15,
    )
    assert token.status_code == 200 and token.headers["Access-Control-Allow-Origin"] == "*"
    for path in ("/_sandbox/knobs", "/autodiscover/metadata/json/1"):
        answer = ews.http.get(f"{ews.url}{path}", headers=origin, timeout=15)
        assert answer.status_code == 200 and "Access-Control-Allow-Origin" not in answer.headers
    for path in ("/_sandbox/knobs", "/EWS/Exchange.asmx"):
        preflight = ews.http.options(f"{ews.url}{path}", headers=origin, timeout=15)
        assert preflight.status_code == 405
        assert "Access-Control-Allow-Origin" not in preflight.headers
