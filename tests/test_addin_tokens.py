"""The add-in's tokens, checked on their own: Entra access tokens (nested app authentication)
and Exchange identity tokens, built here with keys of our own for the edge cases, and issued
by the sandboxes for the real thing."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.core.cache import cache
from jwt.algorithms import RSAAlgorithm

from calendarsync.providers.addin import TokenRefused, VerificationUnavailable, taskpane_url
from calendarsync.providers.ews import identity_token
from calendarsync.providers.graph import addin_token
from tests.m365_sandbox import ANNA, DEMO_TENANT

TENANT = "11111111-2222-4333-8444-555555555555"
CLIENT = "00000000-0000-0000-0000-0000000000aa"
EXCHANGE = "https://mail.kund.example.se/EWS/Exchange.asmx"
AMURL = "https://mail.kund.example.se:443/autodiscover/metadata/json/1"


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()  # cached keys and metadata of an earlier test must not answer for this one
    yield
    cache.clear()


@pytest.fixture(scope="module")
def private_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# ----- Entra access tokens


def jwk(private, kid):
    key = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return {**key, "kid": kid, "use": "sig"}


def seconds_from_now(seconds):
    """A time claim computed when the test runs, not when the suite was collected."""
    return lambda: int(time.time()) + seconds


def at_run_time(claims: dict) -> dict:
    return {key: value() if callable(value) else value for key, value in claims.items()}


def entra_token(private, kid="key-1", headers=None, **claims):
    now = int(time.time())
    payload = {
        "aud": CLIENT,
        "iss": f"https://login.example.test/{TENANT}/v2.0",
        "tid": TENANT,
        "oid": "0a0a0a0a-0000-4000-8000-000000000001",
        "preferred_username": "Anna.Andersson@Kund.se",
        "scp": "access_as_user",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "ver": "2.0",
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, private, algorithm="RS256", headers={"kid": kid, **(headers or {})})


@pytest.fixture
def entra(settings, monkeypatch, private_key):
    """Entra at login.example.test publishing key-1; `entra.fetched` lists each keys fetch."""
    settings.MS_LOGIN_URL = "https://login.example.test"
    settings.MS_CLIENT_ID = CLIENT
    state = SimpleNamespace(fetched=[], keys={"key-1": jwk(private_key, "key-1")})

    def fetch_keys(url):
        state.fetched.append(url)
        return dict(state.keys)

    monkeypatch.setattr(addin_token, "fetch_keys", fetch_keys)
    return state


def test_a_valid_entra_token_names_its_tenant_and_user(entra, private_key):
    user = addin_token.validate(entra_token(private_key))
    assert user == addin_token.EntraUser(
        tenant_id=TENANT,
        username="anna.andersson@kund.se",
        oid="0a0a0a0a-0000-4000-8000-000000000001",
    )
    assert entra.fetched == [f"https://login.example.test/{TENANT}/discovery/v2.0/keys"]


def test_the_tenants_keys_are_fetched_once_an_hour_not_per_token(entra, private_key):
    for _ in range(3):
        addin_token.validate(entra_token(private_key))
    assert len(entra.fetched) == 1


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": seconds_from_now(-600), "iat": seconds_from_now(-4200)},  # expired
        {"nbf": seconds_from_now(600)},  # not valid yet
        {"aud": "00000003-0000-0000-c000-000000000000"},  # a token for Microsoft Graph
        {"iss": f"https://sts.windows.net/{TENANT}/"},  # the v1.0 issuer
        {"iss": "https://login.example.test/99999999-2222-4333-8444-555555555555/v2.0"},
        {"scp": "User.Read"},  # not our API's scope
        {"nbf": None},  # every time claim is required
        {"iat": None},
        {"preferred_username": None},
        {"oid": None},
    ],
    ids=[
        "expired",
        "not-yet",
        "audience",
        "v1-issuer",
        "other-tenant-issuer",
        "scope",
        "no-nbf",
        "no-iat",
        "no-user",
        "no-oid",
    ],
)
def test_a_token_that_is_not_ours_is_refused(entra, private_key, claims):
    with pytest.raises(TokenRefused):
        addin_token.validate(entra_token(private_key, **at_run_time(claims)))


def test_a_token_signed_by_another_key_under_a_known_key_id_is_refused(entra, other_key):
    with pytest.raises(TokenRefused):
        addin_token.validate(entra_token(other_key))


def hs256(claims: dict, secret: bytes) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': 'key-1'})}.{part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_only_rs256_is_accepted(entra, private_key):
    # The classic confusion: HS256 "signed" with the public key as the secret.
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(entra_token(private_key), options={"verify_signature": False})
    forged = hs256(claims, public_pem)  # PyJWT itself refuses to make one
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "key-1"})
    for token in (forged, unsigned):
        with pytest.raises(TokenRefused):
            addin_token.validate(token)


def test_a_tenant_that_is_no_guid_is_refused_before_any_fetch(entra, private_key):
    with pytest.raises(TokenRefused):
        addin_token.validate(entra_token(private_key, tid="../../evil"))
    assert entra.fetched == []


def test_an_unknown_key_fetches_the_keys_once_more_then_is_refused(entra, private_key, other_key):
    addin_token.validate(entra_token(private_key))
    # Entra rotated its keys: a token with the new key id makes us look again, once.
    entra.keys["key-2"] = jwk(other_key, "key-2")
    cache.delete(f"addin-jwks:https://login.example.test/{TENANT}/discovery/v2.0/keys:refreshed")
    assert addin_token.validate(entra_token(other_key, kid="key-2")).tenant_id == TENANT
    assert len(entra.fetched) == 2
    # Made-up key ids do not make us ask Entra on every request.
    for kid in ("made-up-1", "made-up-2"):
        with pytest.raises(TokenRefused):
            addin_token.validate(entra_token(other_key, kid=kid))
    assert len(entra.fetched) == 2


def test_keys_that_cannot_be_read_are_unavailable_not_a_bad_token(settings, monkeypatch):
    settings.MS_LOGIN_URL = "https://127.0.0.1:9"  # nothing listens there
    with pytest.raises(VerificationUnavailable):
        addin_token.fetch_keys(f"https://127.0.0.1:9/{TENANT}/discovery/v2.0/keys")


def test_the_sandbox_token_for_our_api_is_accepted(m365, settings):
    token = m365.addin_token(ANNA)["access_token"]
    user = addin_token.validate(token)
    assert (user.tenant_id, user.username) == (DEMO_TENANT, ANNA)


@pytest.mark.parametrize(
    "knob",
    [{"expired": True}, {"wrong_audience": True}, {"wrong_issuer": True}, {"unknown_key": True}],
)
def test_spoiled_sandbox_tokens_are_refused(m365, knob):
    m365.spoil_addin_tokens(**knob)
    with pytest.raises(TokenRefused):
        addin_token.validate(m365.addin_token(ANNA)["access_token"])


def test_the_sandbox_id_token_is_no_access_token_for_our_api(m365):
    # Same signer and audience, but no scope: an ID token must not open the API.
    with pytest.raises(TokenRefused):
        addin_token.validate(m365.addin_token(ANNA)["id_token"])


# ----- Exchange identity tokens


def certificate(private):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Microsoft Exchange Server Auth")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(private, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def thumbprint(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()


def metadata_document(der: bytes, listed_x5t=None, realm="mail.kund.example.se"):
    return {
        "id": "_metadata",
        "version": "1.0",
        "name": "Exchange",
        "realm": realm,
        "serviceName": identity_token.EXCHANGE_SERVICE,
        "issuer": f"{identity_token.EXCHANGE_SERVICE}@{realm}",
        "allowedAudiences": [f"{identity_token.EXCHANGE_SERVICE}@{realm}"],
        "keys": [
            {
                "usage": "signing",
                "keyinfo": {"x5t": listed_x5t or thumbprint(der)},
                "keyvalue": {"type": "x509Certificate", "value": base64.b64encode(der).decode()},
            }
        ],
        "endpoints": [],
    }


def identity(private, der, *, header=None, context=None, **claims):
    now = int(time.time())
    appctx = {"msexchuid": "4e2a5c1d-0000-4000-8000-00000000abcd", "version": "ExIdTok.V1"}
    appctx["amurl"] = AMURL
    appctx.update(context or {})
    payload = {
        "aud": taskpane_url() + "?lang=sv",
        "iss": f"{identity_token.EXCHANGE_SERVICE}@mail.kund.example.se",
        "nbf": str(now),  # as Exchange writes them: numeric strings
        "exp": str(now + 8 * 3600),
        "appctxsender": f"{identity_token.EXCHANGE_SERVICE}@mail.kund.example.se",
        "isbrowserhostedapp": "true",
        "appctx": json.dumps(appctx),
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"typ": "JWT", "x5t": thumbprint(der), **(header or {})}
    return jwt.encode(payload, private, algorithm="RS256", headers=headers)


@pytest.fixture(scope="module")
def exchange_cert(private_key):
    return certificate(private_key)


@pytest.fixture
def exchange(monkeypatch, exchange_cert):
    """Exchange at mail.kund.example.se; `exchange.fetched` lists each metadata fetch."""
    state = SimpleNamespace(fetched=[], document=metadata_document(exchange_cert))

    def fetch_metadata(url):
        state.fetched.append(url)
        return state.document

    monkeypatch.setattr(identity_token, "fetch_metadata", fetch_metadata)
    return state


INTEGRATION = SimpleNamespace(ews_url=EXCHANGE)


def test_a_valid_identity_token_gives_the_users_unique_id(exchange, private_key, exchange_cert):
    context = identity_token.validate(identity(private_key, exchange_cert), INTEGRATION)
    expected = hashlib.sha256(("4e2a5c1d-0000-4000-8000-00000000abcd" + AMURL).encode())
    assert context.unique_id == expected.hexdigest()
    assert exchange.fetched == ["https://mail.kund.example.se/autodiscover/metadata/json/1"]


def test_exchanges_numeric_strings_for_times_are_accepted(exchange, private_key, exchange_cert):
    now = int(time.time())
    token = identity(private_key, exchange_cert, nbf=str(now), exp=str(now + 3600))
    assert identity_token.validate(token, INTEGRATION).msexchuid


def test_metadata_comes_from_the_integrations_host_whatever_the_token_says(
    exchange, private_key, exchange_cert
):
    # Same server, another path: still only the integration's own metadata address.
    token = identity(
        private_key,
        exchange_cert,
        context={"amurl": "https://mail.kund.example.se/evil/redirect?to=elsewhere"},
    )
    identity_token.validate(token, INTEGRATION)
    assert exchange.fetched == ["https://mail.kund.example.se/autodiscover/metadata/json/1"]


@pytest.mark.parametrize(
    "amurl",
    [
        "https://attacker.example.se/autodiscover/metadata/json/1",
        "https://mail.kund.example.se:8443/autodiscover/metadata/json/1",
        "http://mail.kund.example.se/autodiscover/metadata/json/1",
        "https://user@mail.kund.example.se/autodiscover/metadata/json/1",
    ],
)
def test_a_token_from_another_server_is_refused_without_any_fetch(
    exchange, private_key, exchange_cert, amurl
):
    token = identity(private_key, exchange_cert, context={"amurl": amurl})
    with pytest.raises(TokenRefused):
        identity_token.validate(token, INTEGRATION)
    assert exchange.fetched == []


@pytest.mark.parametrize(
    "change",
    [
        {"exp": seconds_from_now(-600), "nbf": seconds_from_now(-9000)},  # expired (5 min leeway)
        {"nbf": seconds_from_now(900)},
        {"aud": "https://elsewhere.example.se/addin/taskpane/"},
        {"aud": taskpane_url() + "other/"},
        {"iss": f"{identity_token.EXCHANGE_SERVICE}@other.example.se"},
        {"exp": None},
        {"context": {"version": "ExIdTok.V2"}},
        {"context": {"msexchuid": ""}},
        {"appctx": {"msexchuid": "x"}},  # an object, not the JSON string Exchange writes
    ],
    ids=[
        "expired",
        "not-yet",
        "other-aud",
        "other-path",
        "issuer",
        "no-exp",
        "version",
        "no-id",
        "appctx-object",
    ],
)
def test_an_identity_token_that_is_not_ours_is_refused(
    exchange, private_key, exchange_cert, change
):
    change = at_run_time(change)
    token = identity(private_key, exchange_cert, context=change.pop("context", None), **change)
    with pytest.raises(TokenRefused):
        identity_token.validate(token, INTEGRATION)


def test_the_header_must_be_an_rs256_jwt_with_a_thumbprint(exchange, private_key, exchange_cert):
    for header in ({"typ": "JOSE"}, {"x5t": None}):
        token = identity(private_key, exchange_cert, header=header)
        with pytest.raises(TokenRefused):
            identity_token.validate(token, INTEGRATION)


def test_a_certificate_not_in_the_metadata_is_refused_after_one_refetch(
    exchange, private_key, other_key, exchange_cert
):
    rogue = certificate(other_key)
    for _ in range(2):
        with pytest.raises(TokenRefused):
            identity_token.validate(identity(other_key, rogue), INTEGRATION)
    assert len(exchange.fetched) == 1  # the first fetch is fresh: no second look so soon


def test_a_key_listed_under_a_thumbprint_that_is_not_its_own_does_not_count(
    exchange, private_key, other_key, exchange_cert
):
    # The metadata lists our certificate under the rogue one's thumbprint: never trusted.
    rogue = certificate(other_key)
    exchange.document = metadata_document(exchange_cert, listed_x5t=thumbprint(rogue))
    with pytest.raises(TokenRefused):
        identity_token.validate(identity(private_key, rogue), INTEGRATION)


def test_metadata_from_no_exchange_issuer_is_unusable(exchange, private_key, exchange_cert):
    exchange.document = {**exchange.document, "issuer": "someone@else"}
    with pytest.raises(VerificationUnavailable):
        identity_token.validate(identity(private_key, exchange_cert), INTEGRATION)


def test_an_entra_token_is_not_an_identity_token(private_key, exchange_cert):
    assert identity_token.is_identity_token(identity(private_key, exchange_cert))
    assert not identity_token.is_identity_token(entra_token(private_key))
    assert not identity_token.is_identity_token("not a token")


def test_the_sandbox_identity_token_is_accepted_from_the_integrations_own_server(
    ews, on_prem, company
):
    integration = on_prem(company, "anna@kund.se")
    token = ews.identity_token("anna@kund.se", taskpane_url() + "?lang=en")
    ews.clear_requests()
    context = identity_token.validate(token, integration)
    assert context.amurl == f"{ews.url}/autodiscover/metadata/json/1"
    metadata = [r for r in ews.requests() if r["path"] == identity_token.METADATA_PATH]
    assert [(r["method"], r["auth"]) for r in metadata] == [("GET", None)]


def test_the_metadata_fetch_trusts_only_the_configured_ca(ews, on_prem, company, settings):
    integration = on_prem(company, "anna@kund.se")
    token = ews.identity_token("anna@kund.se", taskpane_url())
    settings.EWS_CA_BUNDLE = ""  # the system's CAs do not know the sandbox's test CA
    with pytest.raises(VerificationUnavailable):
        identity_token.validate(token, integration)
