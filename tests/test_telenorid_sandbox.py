"""The Telenor ID sandbox is a strict OpenID Connect provider: the code flow with PKCE works end
to end over HTTPS, and each relying-party mistake is refused the way a real provider would."""

import base64
import hashlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from html import unescape
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from sandbox.telenorid.demo import DEMO_PASSWORD
from sandbox.telenorid.server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_POST_LOGOUT_URI,
    DEFAULT_REDIRECT_URI,
    SESSION_COOKIE,
)
from tests.telenorid_sandbox import ANNA, BJORN, TRANSACTION

SCOPE = "openid email profile"


def pkce():
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(url):
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


class Flow:
    """One relying-party login attempt: its state, nonce and PKCE pair."""

    def __init__(self, handle, **overrides):
        self.handle = handle
        self.verifier, challenge = pkce()
        self.state, self.nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.params = {
            "client_id": DEFAULT_CLIENT_ID,
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "response_type": "code",
            "scope": SCOPE,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        self.params.update(overrides)
        self.params = {k: v for k, v in self.params.items() if v is not None}

    @property
    def url(self):
        return f"{self.handle.url}/authorize?{urlencode(self.params)}"

    def open(self, browser):
        return browser.get(self.url, allow_redirects=False, timeout=15)

    def submit(self, browser, page, email=ANNA, password=DEMO_PASSWORD):
        txn = unescape(TRANSACTION.search(page.text)[1])
        form = {"txn": txn, "email": email, "password": password}
        return browser.post(
            f"{self.handle.url}/login", data=form, allow_redirects=False, timeout=15
        )

    def code(self, browser, **login):
        """Through the login form (or SSO) to a code; checks state comes back unchanged."""
        response = self.open(browser)
        if response.status_code == 200:
            response = self.submit(browser, response, **login)
        assert response.status_code == 302, response.text[:300]
        location = response.headers["Location"]
        assert location.startswith(DEFAULT_REDIRECT_URI + "?")
        back = query_of(location)
        assert back["state"] == self.state
        return back["code"]

    def redeem(self, code, *, verifier=None, secret=DEFAULT_CLIENT_SECRET, basic=False, **extra):
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.params["redirect_uri"],
            "code_verifier": verifier or self.verifier,
            "client_id": DEFAULT_CLIENT_ID,
            **extra,
        }
        auth = None
        if basic:
            auth = (DEFAULT_CLIENT_ID, secret)
        else:
            form["client_secret"] = secret
        return self.handle.http.post(f"{self.handle.url}/token", data=form, auth=auth, timeout=15)


@pytest.fixture
def browser(telenorid):
    session = requests.Session()
    session.trust_env = False
    session.verify = telenorid.ca_file
    yield session
    session.close()


def jwks_client(handle):
    context = ssl.create_default_context(cafile=handle.ca_file)
    return jwt.PyJWKClient(f"{handle.url}/jwks", cache_jwk_set=False, ssl_context=context)


def verify(handle, id_token):
    key = jwks_client(handle).get_signing_key_from_jwt(id_token)
    return jwt.decode(
        id_token,
        key,
        algorithms=["RS256"],
        audience=DEFAULT_CLIENT_ID,
        issuer=handle.url,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]},
    )


def tokens(handle, browser, **overrides):
    flow = Flow(handle, **overrides)
    response = flow.redeem(flow.code(browser))
    assert response.status_code == 200, response.text
    return flow, response.json()


# ----- discovery and keys


def test_it_publishes_discovery_with_the_exact_issuer(telenorid):
    config = telenorid.http.get(f"{telenorid.url}/.well-known/openid-configuration").json()
    base = telenorid.url
    assert config["issuer"] == base and not base.endswith("/")
    assert config["authorization_endpoint"] == base + "/authorize"
    assert config["token_endpoint"] == base + "/token"
    assert config["userinfo_endpoint"] == base + "/userinfo"
    assert config["jwks_uri"] == base + "/jwks"
    assert config["end_session_endpoint"] == base + "/logout"
    assert config["response_types_supported"] == ["code"]
    assert config["subject_types_supported"] == ["public"]
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["scopes_supported"] == ["openid", "email", "profile"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert set(config["token_endpoint_auth_methods_supported"]) == {
        "client_secret_post",
        "client_secret_basic",
    }
    assert {"sub", "nonce", "email", "name"} <= set(config["claims_supported"])


def test_it_publishes_only_public_signing_keys(telenorid):
    keys = telenorid.jwks()["keys"]
    assert len(keys) == 1
    assert keys[0]["kid"] and keys[0]["use"] == "sig" and keys[0]["alg"] == "RS256"
    assert keys[0]["kty"] == "RSA" and "d" not in keys[0] and "p" not in keys[0]


# ----- the code flow


def test_it_runs_the_code_flow_with_pkce(telenorid, browser):
    flow = Flow(telenorid)
    form = flow.open(browser)
    assert form.status_code == 200
    assert "Logga in med Telenor ID" in form.text
    assert 'id="email" name="email" type="email"' in form.text
    assert 'id="password" name="password" type="password"' in form.text
    assert 'id="login"' in form.text and "E-postadress" in form.text and "Lösenord" in form.text
    assert flow.nonce not in form.text  # the request waits server-side, not in hidden fields
    back = flow.submit(browser, form)
    assert back.status_code == 302
    cookie = back.headers["Set-Cookie"]
    assert cookie.startswith(SESSION_COOKIE + "=") and "HttpOnly" in cookie and "Path=/" in cookie
    code = query_of(back.headers["Location"])["code"]
    assert query_of(back.headers["Location"])["state"] == flow.state

    response = flow.redeem(code)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    answer = response.json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600
    assert answer["scope"] == SCOPE

    header = jwt.get_unverified_header(answer["id_token"])
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert header["kid"] == telenorid.jwks()["keys"][0]["kid"]
    claims = verify(telenorid, answer["id_token"])
    assert claims["nonce"] == flow.nonce
    assert claims["email"] == ANNA and claims["email_verified"] is True
    assert claims["name"] == "Anna Andersson"
    assert (claims["given_name"], claims["family_name"]) == ("Anna", "Andersson")
    assert claims["sub"] != ANNA and ANNA not in claims["sub"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] >= claims["auth_time"] >= time.time() - 30

    info = telenorid.http.get(
        f"{telenorid.url}/userinfo", headers={"Authorization": f"Bearer {answer['access_token']}"}
    )
    assert info.status_code == 200
    assert info.json() == {
        "sub": claims["sub"],
        "email": ANNA,
        "email_verified": True,
        "name": "Anna Andersson",
        "given_name": "Anna",
        "family_name": "Andersson",
    }


def test_the_subject_is_stable_and_differs_per_person(telenorid, browser):
    _, first = tokens(telenorid, browser)
    telenorid.reset()
    other = requests.Session()
    other.trust_env = False
    other.verify = telenorid.ca_file
    flow = Flow(telenorid)
    again = flow.redeem(flow.code(other)).json()
    other.close()
    flow = Flow(telenorid, prompt="login")
    bjorn = flow.redeem(flow.code(browser, email=BJORN)).json()
    sub = jwt.decode(first["id_token"], options={"verify_signature": False})["sub"]
    assert jwt.decode(again["id_token"], options={"verify_signature": False})["sub"] == sub
    assert jwt.decode(bjorn["id_token"], options={"verify_signature": False})["sub"] != sub


def test_it_accepts_client_secret_basic(telenorid, browser):
    flow = Flow(telenorid)
    response = flow.redeem(flow.code(browser), basic=True)
    assert response.status_code == 200, response.text
    assert telenorid.requests()[-1]["client_auth"] == "client_secret_basic"


def test_claims_follow_the_scopes(telenorid, browser):
    _, answer = tokens(telenorid, browser, scope="openid email")
    claims = verify(telenorid, answer["id_token"])
    assert claims["email"] == ANNA
    assert "name" not in claims and "given_name" not in claims


def test_a_wrong_password_shows_the_form_again(telenorid, browser):
    flow = Flow(telenorid)
    again = flow.submit(browser, flow.open(browser), password="fel-lösenord")
    assert again.status_code == 200
    assert "Fel e-postadress eller lösenord." in again.text
    assert f'value="{ANNA}"' in again.text
    assert "Set-Cookie" not in again.headers
    # The same login can still be completed.
    assert flow.submit(browser, again).status_code == 302


def test_an_unknown_email_gets_the_same_message(telenorid, browser):
    flow = Flow(telenorid)
    again = flow.submit(browser, flow.open(browser), email="okand@demo.se")
    assert again.status_code == 200 and "Fel e-postadress eller lösenord." in again.text


def test_a_login_transaction_is_single_use(telenorid, browser):
    flow = Flow(telenorid)
    form = flow.open(browser)
    assert flow.submit(browser, form).status_code == 302
    replay = flow.submit(browser, form)
    assert replay.status_code == 400 and "Location" not in replay.headers


# ----- SSO session


def test_the_sso_cookie_makes_the_next_authorize_immediate(telenorid, browser):
    Flow(telenorid).code(browser)
    second = Flow(telenorid)
    response = second.open(browser)
    assert response.status_code == 302
    back = query_of(response.headers["Location"])
    assert back["state"] == second.state and back["code"]
    answer = second.redeem(back["code"]).json()
    assert verify(telenorid, answer["id_token"])["nonce"] == second.nonce


def test_prompt_login_shows_the_form_despite_a_session(telenorid, browser):
    Flow(telenorid).code(browser)
    response = Flow(telenorid, prompt="login").open(browser)
    assert response.status_code == 200 and "Logga in med Telenor ID" in response.text


def test_prompt_none_without_a_session_is_login_required(telenorid, browser):
    flow = Flow(telenorid, prompt="none")
    response = flow.open(browser)
    assert response.status_code == 302
    back = query_of(response.headers["Location"])
    assert back["error"] == "login_required" and back["state"] == flow.state
    assert "code" not in back


def test_prompt_none_with_a_session_returns_a_code(telenorid, browser):
    Flow(telenorid).code(browser)
    response = Flow(telenorid, prompt="none").open(browser)
    assert response.status_code == 302 and "code" in query_of(response.headers["Location"])


# ----- authorization requests refused


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # means plain (RFC 7636)
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"nonce": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"scope": "email profile"}, "invalid_scope"),
        ({"scope": "openid offline_access"}, "invalid_scope"),
        ({"response_mode": "fragment"}, "invalid_request"),
    ],
)
def test_it_refuses_a_bad_request_back_to_the_client(telenorid, browser, overrides, error):
    flow = Flow(telenorid, **overrides)
    response = flow.open(browser)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(DEFAULT_REDIRECT_URI + "?")
    back = query_of(location)
    assert back["error"] == error and back["error_description"]
    assert back["state"] == flow.state and "code" not in back


def test_a_request_without_state_is_refused(telenorid, browser):
    response = Flow(telenorid, state=None).open(browser)
    back = query_of(response.headers["Location"])
    assert back["error"] == "invalid_request" and "state" not in back


def test_a_repeated_parameter_is_refused(telenorid, browser):
    flow = Flow(telenorid)
    url = flow.url + "&" + urlencode({"nonce": "another"})
    response = browser.get(url, allow_redirects=False)
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "http://127.0.0.1:8000/evil/"},
        {"redirect_uri": DEFAULT_REDIRECT_URI.rstrip("/")},  # exact match, not a prefix
        {"redirect_uri": DEFAULT_REDIRECT_URI + "?next=/"},
        {"redirect_uri": None},
        {"client_id": "someone-else"},
        {"client_id": None},
    ],
)
def test_an_unknown_client_or_redirect_uri_gets_a_page_not_a_redirect(
    telenorid, browser, overrides
):
    response = Flow(telenorid, **overrides).open(browser)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "text/html" in response.headers["Content-Type"] and "Något gick fel" in response.text


def test_the_authorization_request_may_be_posted(telenorid, browser):
    flow = Flow(telenorid)
    response = browser.post(f"{telenorid.url}/authorize", data=flow.params, allow_redirects=False)
    assert response.status_code == 200 and TRANSACTION.search(response.text)


# ----- token endpoint


def test_a_code_is_single_use_and_reuse_revokes_its_token(telenorid, browser):
    flow = Flow(telenorid)
    code = flow.code(browser)
    first = flow.redeem(code)
    assert first.status_code == 200
    again = flow.redeem(code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    info = telenorid.http.get(
        f"{telenorid.url}/userinfo",
        headers={"Authorization": f"Bearer {first.json()['access_token']}"},
    )
    assert info.status_code == 401


def test_a_wrong_code_verifier_is_invalid_grant(telenorid, browser):
    flow = Flow(telenorid)
    response = flow.redeem(flow.code(browser), verifier=pkce()[0])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_missing_code_verifier_is_refused(telenorid, browser):
    flow = Flow(telenorid)
    code = flow.code(browser)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": DEFAULT_REDIRECT_URI,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    response = telenorid.http.post(f"{telenorid.url}/token", data=form)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_the_redirect_uri_must_match_the_authorization(telenorid, browser):
    telenorid.register(redirect_uris=[DEFAULT_REDIRECT_URI, "http://127.0.0.1:8000/other/"])
    flow = Flow(telenorid)
    response = flow.redeem(flow.code(browser), redirect_uri="http://127.0.0.1:8000/other/")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_a_code_expires_after_60_seconds(telenorid, browser):
    flow = Flow(telenorid)
    code = flow.code(browser)
    real = telenorid.sandbox.clock
    telenorid.sandbox.clock = lambda: real() + 61
    response = flow.redeem(code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert "expired" in response.json()["error_description"]


@pytest.mark.parametrize("basic", [False, True])
def test_a_wrong_client_secret_is_401(telenorid, browser, basic):
    flow = Flow(telenorid)
    response = flow.redeem(flow.code(browser), secret="not-the-secret", basic=basic)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_no_client_authentication_is_401(telenorid, browser):
    flow = Flow(telenorid)
    form = {
        "grant_type": "authorization_code",
        "code": flow.code(browser),
        "redirect_uri": DEFAULT_REDIRECT_URI,
        "code_verifier": flow.verifier,
        "client_id": DEFAULT_CLIENT_ID,
    }
    response = telenorid.http.post(f"{telenorid.url}/token", data=form)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_two_client_authentication_methods_are_refused(telenorid, browser):
    flow = Flow(telenorid)
    code = flow.code(browser)
    response = telenorid.http.post(
        f"{telenorid.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "code_verifier": flow.verifier,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_only_the_authorization_code_grant_is_supported(telenorid, browser):
    flow = Flow(telenorid)
    response = flow.redeem(flow.code(browser), grant_type="refresh_token")
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_the_token_request_must_be_a_form(telenorid, browser):
    flow = Flow(telenorid)
    response = telenorid.http.post(
        f"{telenorid.url}/token",
        json={
            "grant_type": "authorization_code",
            "code": flow.code(browser),
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_userinfo_refuses_an_unknown_or_missing_token(telenorid):
    response = telenorid.http.get(
        f"{telenorid.url}/userinfo", headers={"Authorization": "Bearer not-a-token"}
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    bare = telenorid.http.get(f"{telenorid.url}/userinfo")
    assert bare.status_code == 401 and bare.headers["WWW-Authenticate"].startswith("Bearer")


def test_userinfo_refuses_an_expired_token(telenorid, browser):
    _, answer = tokens(telenorid, browser)
    real = telenorid.sandbox.clock
    telenorid.sandbox.clock = lambda: real() + 3601
    response = telenorid.http.post(
        f"{telenorid.url}/userinfo", headers={"Authorization": f"Bearer {answer['access_token']}"}
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# ----- knobs


def test_wrong_nonce_knob(telenorid, browser):
    telenorid.knobs(wrong_nonce=True)
    flow, answer = tokens(telenorid, browser)
    claims = verify(telenorid, answer["id_token"])  # signature, iss and aud still hold
    assert claims["nonce"] != flow.nonce


def test_expired_token_knob(telenorid, browser):
    telenorid.knobs(expired_token=True)
    _, answer = tokens(telenorid, browser)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(telenorid, answer["id_token"])
    claims = jwt.decode(answer["id_token"], options={"verify_signature": False})
    assert claims["iat"] < time.time() - 3000


def test_unknown_key_knob(telenorid, browser):
    telenorid.knobs(unknown_key=True)
    _, answer = tokens(telenorid, browser)
    kid = jwt.get_unverified_header(answer["id_token"])["kid"]
    assert kid not in {key["kid"] for key in telenorid.jwks()["keys"]}
    with pytest.raises(jwt.PyJWKClientError):
        verify(telenorid, answer["id_token"])
    # Nor does it verify with the published key when the kid is ignored.
    published = jwt.PyJWK(telenorid.jwks()["keys"][0])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(answer["id_token"], published, algorithms=["RS256"], audience=DEFAULT_CLIENT_ID)


def test_rotate_key_publishes_both_keys(telenorid, browser):
    _, before = tokens(telenorid, browser)
    old_kid = jwt.get_unverified_header(before["id_token"])["kid"]
    rotated = telenorid.rotate_key()
    assert rotated["previous"] == old_kid and rotated["kid"] != old_kid
    _, after = tokens(telenorid, browser)
    assert jwt.get_unverified_header(after["id_token"])["kid"] == rotated["kid"]
    assert {key["kid"] for key in telenorid.jwks()["keys"]} == {old_kid, rotated["kid"]}
    assert verify(telenorid, after["id_token"])["email"] == ANNA
    assert verify(telenorid, before["id_token"])["email"] == ANNA


@pytest.mark.parametrize(("error", "status"), [("server_error", 500), ("invalid_grant", 400)])
def test_token_error_knob(telenorid, browser, error, status):
    telenorid.knobs(token_error=error)
    flow = Flow(telenorid)
    response = flow.redeem(flow.code(browser))
    assert response.status_code == status and response.json()["error"] == error
    telenorid.knobs(token_error=None)
    assert flow.redeem(flow.code(browser)).status_code == 200


def test_latency_knob_slows_the_provider_not_the_controls(telenorid):
    telenorid.knobs(latency_ms=300)
    started = time.monotonic()
    telenorid.http.get(f"{telenorid.url}/jwks")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    telenorid.control("GET", "health")
    assert time.monotonic() - started < 0.3


def test_knobs_are_validated_and_reset(telenorid):
    assert telenorid.control("GET", "knobs")["wrong_nonce"] is False
    for bad in ({"wrong_nonce": "yes"}, {"latency_ms": -1}, {"no_such_knob": True}):
        response = telenorid.http.post(f"{telenorid.url}/_sandbox/knobs", json=bad)
        assert response.status_code == 400
    assert telenorid.knobs(unknown_key=True)["unknown_key"] is True
    telenorid.reset()
    assert telenorid.control("GET", "knobs")["unknown_key"] is False


# ----- logout


def test_logout_ends_the_sso_session_and_redirects_to_a_registered_uri(telenorid, browser):
    _, answer = tokens(telenorid, browser)
    assert Flow(telenorid).open(browser).status_code == 302  # signed in
    params = {
        "id_token_hint": answer["id_token"],
        "post_logout_redirect_uri": DEFAULT_POST_LOGOUT_URI,
        "state": "after-logout",
    }
    response = browser.get(f"{telenorid.url}/logout", params=params, allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == DEFAULT_POST_LOGOUT_URI + "?state=after-logout"
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert telenorid.sandbox.sessions == {}
    assert Flow(telenorid).open(browser).status_code == 200  # the form again


def test_logout_forgets_the_session_even_if_the_cookie_is_kept(telenorid, browser):
    Flow(telenorid).code(browser)
    cookie = browser.cookies.get(SESSION_COOKIE)
    browser.get(f"{telenorid.url}/logout", params={"client_id": DEFAULT_CLIENT_ID})
    browser.cookies.set(SESSION_COOKIE, cookie)
    assert Flow(telenorid).open(browser).status_code == 200


def test_logout_without_a_redirect_shows_the_swedish_page(telenorid, browser):
    Flow(telenorid).code(browser)
    response = browser.get(f"{telenorid.url}/logout", allow_redirects=False)
    assert response.status_code == 200 and "Du är utloggad från Telenor ID" in response.text
    assert Flow(telenorid).open(browser).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"post_logout_redirect_uri": "http://127.0.0.1:8000/elsewhere/"},
        {"post_logout_redirect_uri": "https://evil.example.se/"},
        {"id_token_hint": "not.a.token"},
    ],
)
def test_logout_refuses_unregistered_targets_and_bad_hints(telenorid, browser, params):
    _, answer = tokens(telenorid, browser)
    query = {"id_token_hint": answer["id_token"], **params}
    response = browser.get(f"{telenorid.url}/logout", params=query, allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers
    assert Flow(telenorid).open(browser).status_code == 302  # still signed in


def test_logout_refuses_a_hint_signed_by_someone_else(telenorid, browser):
    telenorid.knobs(unknown_key=True)
    _, answer = tokens(telenorid, browser)
    params = {
        "id_token_hint": answer["id_token"],
        "post_logout_redirect_uri": DEFAULT_POST_LOGOUT_URI,
    }
    response = browser.get(f"{telenorid.url}/logout", params=params, allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers


def test_logout_redirect_needs_a_hint_or_client_id(telenorid, browser):
    params = {"post_logout_redirect_uri": DEFAULT_POST_LOGOUT_URI}
    response = browser.get(f"{telenorid.url}/logout", params=params, allow_redirects=False)
    assert response.status_code == 400
    params["client_id"] = DEFAULT_CLIENT_ID
    response = browser.get(f"{telenorid.url}/logout", params=params, allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"] == DEFAULT_POST_LOGOUT_URI


# ----- sandbox controls


def test_registered_uris_replace_the_defaults(telenorid, browser):
    callback = "http://127.0.0.1:51234/oidc/callback/"
    telenorid.register([callback], ["http://127.0.0.1:51234/"])
    assert Flow(telenorid).open(browser).status_code == 400
    flow = Flow(telenorid, redirect_uri=callback)
    response = flow.open(browser)
    assert response.status_code == 200
    location = flow.submit(browser, response).headers["Location"]
    assert location.startswith(callback + "?")
    assert flow.redeem(query_of(location)["code"]).status_code == 200


def test_put_and_delete_identity(telenorid, browser):
    telenorid.put_identity("Cecilia.Carlsson@demo.se", "hemligt-1", "Cecilia Carlsson", False)
    assert "cecilia.carlsson@demo.se" in {i["email"] for i in telenorid.identities()}
    assert all("password" not in i for i in telenorid.identities())
    flow = Flow(telenorid)
    code = flow.code(browser, email="cecilia.carlsson@demo.se", password="hemligt-1")
    claims = verify(telenorid, flow.redeem(code).json()["id_token"])
    assert claims["email"] == "cecilia.carlsson@demo.se" and claims["email_verified"] is False

    telenorid.delete_identity("cecilia.carlsson@demo.se")
    assert Flow(telenorid).open(browser).status_code == 200  # the session went with her
    flow = Flow(telenorid)
    page = flow.submit(
        browser, flow.open(browser), email="cecilia.carlsson@demo.se", password="hemligt-1"
    )
    assert "Fel e-postadress eller lösenord." in page.text


def test_reset_brings_back_the_demo_people_and_ends_sessions(telenorid, browser):
    Flow(telenorid).code(browser)
    telenorid.delete_identity(BJORN)
    telenorid.reset()
    assert {i["email"] for i in telenorid.identities()} == {ANNA, BJORN, "asa.lind@demokommun.se"}
    assert Flow(telenorid).open(browser).status_code == 200


def test_sign_in_helper_returns_the_callback(telenorid):
    flow = Flow(telenorid)
    location = telenorid.sign_in(flow.url, email=BJORN)
    assert query_of(location)["state"] == flow.state
    claims = verify(telenorid, flow.redeem(query_of(location)["code"]).json()["id_token"])
    assert claims["name"] == "Björn Berg"


def test_the_request_log_never_holds_passwords_or_secrets(telenorid, browser):
    flow = Flow(telenorid)
    form = flow.open(browser)
    flow.submit(browser, form, password="fel-lösenord")
    code = query_of(flow.submit(browser, form).headers["Location"])["code"]
    flow.redeem(code, secret="wrong-secret")
    flow.redeem(code, basic=True)
    entries = telenorid.requests()
    dumped = json.dumps(entries, ensure_ascii=False)
    for secret in (DEMO_PASSWORD, "fel-lösenord", DEFAULT_CLIENT_SECRET, flow.verifier):
        assert secret not in dumped
    token_calls = [e for e in entries if e["path"] == "/token"]
    # A client that fails to authenticate does not spend the code.
    assert [e["status"] for e in token_calls] == [401, 200]
    assert [e["client_auth"] for e in token_calls] == ["client_secret_post", "client_secret_basic"]
    assert token_calls[0]["form"]["client_secret"] == "[redacted]"
    assert [e["status"] for e in entries if e["path"] == "/login"] == [200, 302]
    telenorid.clear_requests()
    assert telenorid.requests() == []


# ----- the command


def test_python_m_sandbox_telenorid_serves_discovery(tmp_path):
    ca_file = tmp_path / "ca.pem"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.telenorid", "--port", "0", "--ca-file", str(ca_file)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TELENOR_ID_CLIENT_ID": "from-env"},
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("Telenor ID sandbox on https://127.0.0.1:")
        assert f"(CA: {ca_file})" in line
        url = line.split()[4]
        config = requests.get(f"{url}/.well-known/openid-configuration", verify=str(ca_file))
        assert config.json()["issuer"] == url
        page = requests.get(
            f"{url}/authorize",
            params={"client_id": DEFAULT_CLIENT_ID, "redirect_uri": DEFAULT_REDIRECT_URI},
            verify=str(ca_file),
            allow_redirects=False,
        )
        assert page.status_code == 400  # the client id came from TELENOR_ID_CLIENT_ID
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()
