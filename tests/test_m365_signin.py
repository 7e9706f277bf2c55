"""Signing the admin in to Microsoft (OpenID Connect) through the M365 sandbox, with real msal.

The product signs the admin in before admin consent and reads `tid` and `wids` from the ID token
it validates itself (signature against the JWKS, iss, aud, exp, nonce). These tests drive the
sandbox the way the product will: msal's initiate_auth_code_flow / acquire_token_by_auth_code_flow
over HTTPS trusting the sandbox's CA, and PyJWT for the signature.
"""

import json
import re
from html import unescape
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import jwt
import msal
import pytest
import requests

from sandbox.m365 import demo
from sandbox.m365.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sandbox
from tests.m365_sandbox import ANNA, DEMO_TENANT

pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

BJORN = "bjorn.berg@demo.se"
CECILIA = "cecilia.carlsson@demo.se"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMIN = "e8611ab8-c189-46e8-94e1-60213ab1f814"
CALLBACK = "http://127.0.0.1:8000/microsoft-sync/graph/signin/callback/"


@pytest.fixture
def http(m365):
    session = requests.Session()
    session.trust_env = False
    session.verify = m365.ca_file
    yield session
    session.close()


def make_app(m365, http, *, tenant="organizations", secret=DEFAULT_CLIENT_SECRET):
    return msal.ConfidentialClientApplication(
        DEFAULT_CLIENT_ID,
        client_credential=secret,
        authority=f"{m365.url}/{tenant}",
        instance_discovery=False,
        http_client=http,
    )


@pytest.fixture
def app(m365, http):
    return make_app(m365, http)


def query_of(url) -> dict:
    split = urlsplit(url)
    return {k: v[-1] for k, v in parse_qs(split.query or split.fragment).items()}


def without(url, *names, **changes) -> str:
    """The authorize URL with some parameters left out or changed."""
    split = urlsplit(url)
    params = {k: v for k, v in query_of(url).items() if k not in names}
    params.update(changes)
    return urlunsplit(split._replace(query=urlencode(params)))


def sign_in(m365, app, user=ANNA, redirect_uri=CALLBACK, **flow_options):
    m365.signin(user=user)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=redirect_uri, **flow_options)
    answer = query_of(m365.follow_signin(flow["auth_uri"]))
    return flow, answer


def redeem(m365, app, user=ANNA, **flow_options):
    flow, answer = sign_in(m365, app, user, **flow_options)
    return flow, answer, app.acquire_token_by_auth_code_flow(flow, answer)


def verify(m365, id_token, tenant=DEMO_TENANT):
    """What the product does with the ID token: signature by the JWKS's key, iss, aud, exp."""
    keys = {key["kid"]: key for key in m365.jwks()["keys"]}
    kid = jwt.get_unverified_header(id_token)["kid"]
    if kid not in keys:
        raise jwt.InvalidKeyError(f"no key {kid} in the JWKS")
    return jwt.decode(
        id_token,
        jwt.PyJWK(keys[kid]),
        algorithms=["RS256"],
        audience=DEFAULT_CLIENT_ID,
        issuer=f"{m365.url}/{tenant}/v2.0",
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
    )


def error_page(response):
    assert response.status_code == 200 and "Location" not in response.headers
    return unescape(response.text)


# ----- the happy path


def test_anna_signs_in_as_a_global_administrator_of_demo_ab(m365, app):
    flow, answer, result = redeem(m365, app, ANNA)
    assert set(answer) >= {"code", "state", "session_state", "client_info"}
    assert answer["state"] == flow["state"]
    assert "error" not in result, result
    claims = result["id_token_claims"]
    assert claims["tid"] == DEMO_TENANT
    assert GLOBAL_ADMIN in claims["wids"]
    assert claims["preferred_username"] == ANNA
    assert claims["name"] == "Anna Andersson"
    assert claims["oid"] == demo.user_id(ANNA)
    assert claims["aud"] == DEFAULT_CLIENT_ID
    assert claims["iss"] == f"{m365.url}/{DEMO_TENANT}/v2.0"
    assert claims["ver"] == "2.0" and claims["exp"] - claims["iat"] == 3600
    assert result["token_type"] == "Bearer" and result["refresh_token"]  # offline_access asked
    client_info = json.loads(msal.oauth2cli.oidc.decode_part(result["client_info"]))
    assert client_info == {"uid": demo.user_id(ANNA), "utid": DEMO_TENANT}


def test_bjorn_signs_in_without_an_admin_role(m365, app):
    _, _, result = redeem(m365, app, BJORN)
    claims = result["id_token_claims"]
    assert claims["tid"] == DEMO_TENANT and claims["preferred_username"] == BJORN
    assert GLOBAL_ADMIN not in claims.get("wids", [])
    assert "wids" not in claims


def test_cecilia_is_a_privileged_role_administrator(m365, app):
    _, _, result = redeem(m365, app, CECILIA)
    assert result["id_token_claims"]["wids"] == [PRIVILEGED_ROLE_ADMIN]


def test_the_id_token_verifies_against_the_published_keys(m365, app):
    _, _, result = redeem(m365, app, ANNA)
    claims = verify(m365, result["id_token"])
    assert claims["tid"] == DEMO_TENANT and GLOBAL_ADMIN in claims["wids"]
    header = jwt.get_unverified_header(result["id_token"])
    assert header["alg"] == "RS256" and header["kid"] == header["x5t"]
    # The tenant's own keys endpoint (the openid configuration's jwks_uri) publishes the same.
    config = m365.http.get(f"{m365.url}/{DEMO_TENANT}/v2.0/.well-known/openid-configuration")
    jwks_uri = config.json()["jwks_uri"]
    assert jwks_uri == f"{m365.url}/{DEMO_TENANT}/discovery/v2.0/keys"
    assert [k["kid"] for k in m365.http.get(jwks_uri).json()["keys"]] == [header["kid"]]
    key = m365.jwks()["keys"][0]
    assert key["kty"] == "RSA" and key["use"] == "sig" and {"n", "e"} <= set(key)


def test_the_nonce_is_msals_hash_echoed(m365, app):
    flow, _, result = redeem(m365, app, ANNA)
    sent = query_of(flow["auth_uri"])["nonce"]
    assert result["id_token_claims"]["nonce"] == sent
    assert sent != flow["nonce"]  # msal sends the SHA-256 of its nonce


def test_the_organizations_configuration_names_the_endpoints_msal_uses(m365):
    config = m365.http.get(f"{m365.url}/organizations/v2.0/.well-known/openid-configuration").json()
    assert config["authorization_endpoint"] == f"{m365.url}/organizations/oauth2/v2.0/authorize"
    assert config["token_endpoint"] == f"{m365.url}/organizations/oauth2/v2.0/token"
    assert config["jwks_uri"] == f"{m365.url}/organizations/discovery/v2.0/keys"


def test_a_tenant_authority_signs_its_own_people_in(m365, http):
    app = make_app(m365, http, tenant=DEMO_TENANT)
    _, _, result = redeem(m365, app, ANNA)
    assert verify(m365, result["id_token"])["tid"] == DEMO_TENANT


def test_organizations_signs_a_person_in_to_their_home_tenant(m365, app):
    other = m365.control(
        "POST",
        "tenants",
        {
            "name": "Kund AB",
            "consented": False,
            "users": [
                {"mail": "karin@kund.se", "displayName": "Karin Kund", "wids": [GLOBAL_ADMIN]},
                {"mail": "kalle@kund.se", "displayName": "Kalle Kund"},
            ],
        },
    )["id"]
    _, _, karin = redeem(m365, app, "karin@kund.se")
    assert karin["id_token_claims"]["tid"] == other
    assert karin["id_token_claims"]["wids"] == [GLOBAL_ADMIN]
    assert verify(m365, karin["id_token"], tenant=other)["preferred_username"] == "karin@kund.se"
    _, _, kalle = redeem(m365, app, "kalle@kund.se")
    assert kalle["id_token_claims"]["tid"] == other and "wids" not in kalle["id_token_claims"]


def test_a_tenant_authority_refuses_another_tenants_person(m365, http):
    m365.add_tenant("Kund AB", users=["karin@kund.se"])
    m365.signin(user="karin@kund.se")
    flow = make_app(m365, http, tenant=DEMO_TENANT).initiate_auth_code_flow(
        scopes=[], redirect_uri=CALLBACK
    )
    text = error_page(m365.http.get(flow["auth_uri"], allow_redirects=False))
    assert "AADSTS50020" in text and "karin@kund.se" in text


# ----- the sign-in page


def test_the_sign_in_page_lists_the_people_and_a_post_signs_one_in(m365, app):
    m365.signin(mode="form")
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK)
    page = m365.http.get(flow["auth_uri"], allow_redirects=False)
    assert page.status_code == 200
    assert "<h1>Sign in to your account</h1>" in page.text
    for element_id in ("signin-anna-andersson", "signin-bjorn-berg", "signin-cecilia-carlsson"):
        assert f'id="{element_id}"' in page.text
    assert "Global Administrator" in page.text and "Demo AB" in page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    ctx = re.search(r'name="ctx" value="([^"]+)"', page.text).group(1)
    answer = m365.http.post(
        m365.url + unescape(action),
        data={"ctx": unescape(ctx), "user": BJORN},
        allow_redirects=False,
    )
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    result = app.acquire_token_by_auth_code_flow(flow, query_of(location))
    assert result["id_token_claims"]["preferred_username"] == BJORN
    # The page's request is used up: posting it again is an error page.
    again = m365.http.post(m365.url + unescape(action), data={"ctx": unescape(ctx), "user": ANNA})
    assert "AADSTS90015" in error_page(again)


def test_the_sign_in_page_says_when_an_account_does_not_exist(m365, app):
    m365.signin(mode="form")
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK, login_hint=ANNA)
    page = m365.http.get(flow["auth_uri"])
    assert f'value="{ANNA}"' in page.text  # the login hint fills the account field
    ctx = re.search(r'name="ctx" value="([^"]+)"', page.text).group(1)
    answer = m365.http.post(
        f"{m365.url}/organizations/login",
        data={"ctx": unescape(ctx), "login": "nobody@demo.se"},
        allow_redirects=False,
    )
    assert answer.status_code == 200 and "AADSTS50034" in answer.text
    assert "Sign in to your account" in answer.text  # the page again, to try another


def test_form_post_answers_with_an_auto_submitting_form(m365, app):
    m365.signin(user=ANNA)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK, response_mode="form_post")
    response = m365.http.get(flow["auth_uri"], allow_redirects=False)
    assert response.status_code == 200 and "Location" not in response.headers
    assert f'action="{CALLBACK}"' in response.text and "submit()" in response.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', response.text))
    assert set(fields) == {"code", "client_info", "state", "session_state"}
    result = app.acquire_token_by_auth_code_flow(flow, {k: unescape(v) for k, v in fields.items()})
    assert result["id_token_claims"]["tid"] == DEMO_TENANT


def test_the_signin_knob_can_send_an_error_back(m365, app):
    m365.signin(mode="error", error="access_denied", error_description="AADSTS50105: no.")
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK)
    answer = query_of(m365.follow_signin(flow["auth_uri"]))
    assert answer == {
        "error": "access_denied",
        "error_description": "AADSTS50105: no.",
        "state": flow["state"],
    }


# ----- redirect URIs


def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(m365, app):
    m365.signin(user=ANNA)
    for uri in (
        "https://evil.example/microsoft-sync/graph/signin/callback/",
        "http://127.0.0.1:8000/microsoft-sync/other/callback/",
        "https://127.0.0.1:8000/microsoft-sync/graph/signin/callback/",  # https ≠ http
    ):
        flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=uri)
        text = error_page(m365.http.get(flow["auth_uri"], allow_redirects=False))
        assert "AADSTS50011" in text and uri in text


def test_a_loopback_redirect_uri_may_use_any_port(m365, app):
    uri = "http://localhost:54321/microsoft-sync/graph/signin/callback/"
    flow, answer = sign_in(m365, app, ANNA, redirect_uri=uri)
    assert "code" in answer
    assert app.acquire_token_by_auth_code_flow(flow, answer)["id_token_claims"]["tid"]


def test_other_redirect_uris_can_be_registered(m365, app):
    uri = "https://kalender.example.se/microsoft-sync/graph/signin/callback/"
    m365.signin(user=ANNA)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=uri)
    assert "AADSTS50011" in error_page(m365.http.get(flow["auth_uri"], allow_redirects=False))
    assert uri in m365.register_redirect_uris([uri])
    assert m365.follow_signin(flow["auth_uri"]).startswith(uri + "?code=")
    defaults = m365.control("DELETE", "redirect-uris")["redirect_uris"]
    assert uri not in defaults and CALLBACK in defaults


def test_an_unknown_client_gets_an_error_page(m365, app):
    m365.signin(user=ANNA)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK)
    text = error_page(m365.http.get(without(flow["auth_uri"], client_id="not-our-app")))
    assert "AADSTS700016" in text and "not-our-app" in text


def test_an_unknown_tenant_gets_an_error_page(m365, app):
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK)
    url = flow["auth_uri"].replace("/organizations/", "/00000000-1111-2222-3333-444444444444/")
    assert "AADSTS90002" in error_page(m365.http.get(url, allow_redirects=False))


# ----- request errors sent back to the redirect URI


@pytest.mark.parametrize(
    ("drop", "change", "error", "code"),
    [
        (("code_challenge", "code_challenge_method"), {}, "invalid_request", "AADSTS9002325"),
        ((), {"code_challenge_method": "plain"}, "invalid_request", "AADSTS501491"),
        (("nonce",), {}, "invalid_request", "AADSTS900144"),
        ((), {"scope": "profile offline_access"}, "invalid_scope", "AADSTS70011"),
        ((), {"response_type": "id_token"}, "unsupported_response_type", "AADSTS700054"),
    ],
)
def test_a_faulty_request_is_sent_back_with_an_error(m365, app, drop, change, error, code):
    m365.signin(user=ANNA)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK)
    location = m365.follow_signin(without(flow["auth_uri"], *drop, **change))
    assert location.startswith(CALLBACK + "?")
    answer = query_of(location)
    assert "code" not in answer
    assert answer["error"] == error and answer["error_description"].startswith(code + ":")
    assert answer["state"] == flow["state"]


def test_a_request_without_state_is_sent_back_with_an_error(m365, app):
    m365.signin(user=ANNA)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK)
    answer = query_of(m365.follow_signin(without(flow["auth_uri"], "state")))
    assert answer["error"] == "invalid_request" and "'state'" in answer["error_description"]
    assert "code" not in answer


# ----- redeeming the code


def test_a_code_is_redeemed_once(m365, app):
    flow, answer, first = redeem(m365, app, ANNA)
    assert "id_token" in first
    second = app.acquire_token_by_auth_code_flow(flow, answer)
    assert second["error"] == "invalid_grant" and second["error_codes"] == [54005]
    assert "id_token" not in second


def test_a_wrong_code_verifier_is_refused(m365, app):
    flow, answer = sign_in(m365, app, ANNA)
    flow["code_verifier"] = "x" * 43
    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [501481]


def test_a_missing_code_verifier_is_refused(m365, app, http):
    flow, answer = sign_in(m365, app, ANNA)
    response = http.post(
        f"{m365.url}/organizations/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "code": answer["code"],
            "redirect_uri": CALLBACK,
        },
    )
    assert response.status_code == 400 and response.json()["error_codes"] == [50148]


def test_the_code_is_bound_to_its_redirect_uri(m365, app):
    flow, answer = sign_in(m365, app, ANNA)
    flow["redirect_uri"] = "http://127.0.0.1:8000/microsoft-sync/graph/signin/callback"
    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [500112]


def test_an_expired_code_is_refused(m365, app):
    flow, answer = sign_in(m365, app, ANNA)
    with m365.sandbox.signin.lock:  # ten minutes pass
        for grant in m365.sandbox.signin.codes.values():
            grant["exp"] -= 601
    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [70008]


def test_a_wrong_client_secret_is_refused(m365, app, http):
    flow, answer = sign_in(m365, app, ANNA)
    result = make_app(m365, http, secret="wrong").acquire_token_by_auth_code_flow(flow, answer)
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]
    # Refusing the client did not use the code up.
    assert "id_token" in app.acquire_token_by_auth_code_flow(flow, answer)


def test_the_client_may_authenticate_with_basic(m365, app, http):
    flow, answer = sign_in(m365, app, ANNA)
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": CALLBACK,
        "code_verifier": flow["code_verifier"],
    }
    url = f"{m365.url}/organizations/oauth2/v2.0/token"
    response = http.post(url, data=form, auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "token_type",
        "scope",
        "expires_in",
        "ext_expires_in",
        "access_token",
        "refresh_token",
        "id_token",
    }  # no client_info: this request did not ask for it
    assert verify(m365, body["id_token"])["tid"] == DEMO_TENANT


def test_a_code_from_one_tenant_is_refused_at_anothers_token_endpoint(m365, app, http):
    other = m365.add_tenant("Kund AB", users=["karin@kund.se"])
    flow, answer = sign_in(m365, app, ANNA)
    response = http.post(
        f"{m365.url}/{other}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "code": answer["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": flow["code_verifier"],
        },
    )
    assert response.status_code == 400 and response.json()["error_codes"] == [700005]


def test_client_credentials_still_work(m365, http):
    app = make_app(m365, http, tenant=DEMO_TENANT)
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert result["token_type"] == "Bearer" and "id_token" not in result
    users = http.get(
        f"{m365.url}/v1.0/users", headers={"Authorization": f"Bearer {result['access_token']}"}
    )
    assert users.status_code == 200
    fields = {"id", "displayName", "mail", "userPrincipalName"}
    assert all(set(user) == fields for user in users.json()["value"])  # no roles in Graph


def test_the_signed_in_users_access_token_is_no_key_to_graph(m365, app, http):
    _, _, result = redeem(m365, app, ANNA)
    users = http.get(
        f"{m365.url}/v1.0/users", headers={"Authorization": f"Bearer {result['access_token']}"}
    )
    assert users.status_code == 401


# ----- spoiled ID tokens (the id_token knob)


def test_a_wrong_nonce_makes_msal_refuse(m365, app):
    m365.spoil_id_tokens(wrong_nonce=True)
    flow, answer = sign_in(m365, app, ANNA)
    with pytest.raises(RuntimeError, match="nonce"):
        app.acquire_token_by_auth_code_flow(flow, answer)


def test_a_wrong_tenant_claims_another_tenant(m365, app):
    elsewhere = "0badc0de-0000-4000-8000-000000000000"
    m365.spoil_id_tokens(wrong_tenant=elsewhere)
    _, _, result = redeem(m365, app, ANNA)
    claims = result["id_token_claims"]
    assert claims["tid"] == elsewhere and claims["iss"] == f"{m365.url}/{elsewhere}/v2.0"
    with pytest.raises(jwt.InvalidIssuerError):
        verify(m365, result["id_token"])  # the product expects Demo AB's issuer
    assert verify(m365, result["id_token"], tenant=elsewhere)["tid"] == elsewhere
    m365.spoil_id_tokens()
    assert redeem(m365, app, ANNA)[2]["id_token_claims"]["tid"] == DEMO_TENANT


def test_an_unknown_key_fails_the_signature_check(m365, app):
    m365.spoil_id_tokens(unknown_key=True)
    _, _, result = redeem(m365, app, ANNA)
    assert result["id_token_claims"]["tid"] == DEMO_TENANT  # msal itself does not check
    with pytest.raises(jwt.InvalidKeyError):
        verify(m365, result["id_token"])
    published = jwt.PyJWK(m365.jwks()["keys"][0])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(result["id_token"], published, algorithms=["RS256"], audience=DEFAULT_CLIENT_ID)


def test_knobs_reset_brings_back_the_sign_in_page_and_honest_tokens(m365):
    m365.signin(user=ANNA)
    m365.spoil_id_tokens(unknown_key=True)
    knobs = m365.control("DELETE", "knobs")
    assert knobs["signin"] == {"mode": "form"}
    assert knobs["id_token"] == {"wrong_nonce": False, "wrong_tenant": None, "unknown_key": False}


# ----- the request log, roles in Graph and the state file


def test_the_request_log_keeps_no_secret_code_or_verifier(m365, app, http):
    m365.clear_requests()
    flow, answer, result = redeem(m365, app, ANNA)
    assert "id_token" in result
    http.post(
        f"{m365.url}/organizations/oauth2/v2.0/token",
        data={"grant_type": "authorization_code", "code": answer["code"]},
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    )
    entries = m365.requests()
    logged = json.dumps(entries)
    for secret in (DEFAULT_CLIENT_SECRET, answer["code"], flow["code_verifier"]):
        assert secret not in logged
    paths = [(e["method"], e["path"]) for e in entries]
    assert ("GET", "/organizations/oauth2/v2.0/authorize") in paths
    tokens = [e for e in entries if e["path"] == "/organizations/oauth2/v2.0/token"]
    assert [(t["status"], t["grant_type"]) for t in tokens] == [
        (200, "authorization_code"),
        (400, "authorization_code"),
    ]
    assert tokens[0]["code"] == tokens[1]["code"]  # the same code, by its fingerprint
    assert tokens[1]["client_id"] == DEFAULT_CLIENT_ID and tokens[1]["error_codes"] == [54005]


def test_roles_stay_out_of_graphs_users(m365):
    sandbox = m365.sandbox
    _, _, listing = sandbox.list_users(sandbox.tenants[DEMO_TENANT], {})
    assert listing["value"] and all("wids" not in u and "roles" not in u for u in listing["value"])
    tenant = next(t for t in m365.control("GET", "tenants")["value"] if t["id"] == DEMO_TENANT)
    assert tenant["roles"][demo.user_id(ANNA)] == [GLOBAL_ADMIN]


def test_roles_survive_the_state_file(tmp_path):
    state = tmp_path / "m365.json"
    Sandbox(state_file=state).save()
    again = Sandbox(state_file=state)
    assert again.tenants[DEMO_TENANT]["roles"][demo.user_id(ANNA)] == [GLOBAL_ADMIN]
    # A state file from before the sign-in (no roles) gets Demo AB's roles back.
    saved = json.loads(state.read_text())
    del saved["tenants"][DEMO_TENANT]["roles"]
    state.write_text(json.dumps(saved))
    older = Sandbox(state_file=state)
    assert older.tenants[DEMO_TENANT]["roles"][demo.user_id(CECILIA)] == [PRIVILEGED_ROLE_ADMIN]
