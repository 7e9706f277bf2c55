"""Pytest fixtures: the Telenor ID sandbox on a free port with its own test CA.

`telenorid` starts the real HTTPS OpenID provider in this process (background thread), points
the product's TELENOR_ID_* and OIDC_* settings at it (trusting its CA through a file, never by
turning verification off) and hands back a handle that speaks to the sandbox-only /_sandbox
controls over HTTP.
"""

import re
from html import unescape
from urllib.parse import quote, urljoin

import pytest
import requests
import trustme

from sandbox.telenorid.demo import DEMO_PASSWORD
from sandbox.telenorid.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, TelenorIdServer

ANNA = "anna.andersson@demo.se"  # Demo AB's One X administrator
BJORN = "bjorn.berg@demo.se"  # a One X user who is not an administrator
TRANSACTION = re.compile(r'name="txn" value="([^"]+)"')


class TelenorIdHandle:
    def __init__(self, server: TelenorIdServer):
        self.server = server
        self.sandbox = server.sandbox  # in-process state, for assertions only
        self.url = server.base_url
        self.ca_file = str(server.ca_file)
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = self.ca_file

    def control(self, method, path, payload=None):
        response = self.http.request(
            method, f"{self.url}/_sandbox/{path}", json=payload, timeout=15
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def knobs(self, **changes):
        return self.control("POST", "knobs", changes)

    def reset(self):
        self.control("POST", "reset")

    def requests(self, since=0):
        return self.control("GET", f"requests?since={since}")["value"]

    def clear_requests(self):
        self.control("DELETE", "requests")

    def register(self, redirect_uris=None, post_logout_redirect_uris=None):
        """Register the product's URIs (it runs on a random port in tests); None keeps one."""
        payload = {}
        if redirect_uris is not None:
            payload["redirect_uris"] = list(redirect_uris)
        if post_logout_redirect_uris is not None:
            payload["post_logout_redirect_uris"] = list(post_logout_redirect_uris)
        return self.control("POST", "clients", payload)

    def rotate_key(self):
        """A new signing key; returns {"kid": new, "previous": old}."""
        return self.control("POST", "rotate-key")

    def identities(self):
        return self.control("GET", "identities")["value"]

    def put_identity(self, email, password, name, email_verified=True):
        payload = {"password": password, "name": name, "email_verified": email_verified}
        return self.control("PUT", f"identities/{quote(email, safe='')}", payload)

    def delete_identity(self, email):
        self.control("DELETE", f"identities/{quote(email, safe='')}")

    def jwks(self):
        return self.http.get(f"{self.url}/jwks", timeout=15).json()

    def sign_in(self, authorize_url, email=ANNA, password=DEMO_PASSWORD, session=None):
        """Act as the browser at Telenor ID: open the authorize URL the product redirected to,
        fill in the form if one is shown, and return where Telenor ID sends the browser back
        (the product's callback, with code and state or an error)."""
        browser = session or self.http
        response = browser.get(authorize_url, allow_redirects=False, timeout=15)
        if response.status_code == 302:
            return response.headers["Location"]
        assert response.status_code == 200, response.text[:300]
        found = TRANSACTION.search(response.text)
        assert found, "no login form"
        form = {"txn": unescape(found[1]), "email": email, "password": password}
        response = browser.post(
            urljoin(self.url, "/login"), data=form, allow_redirects=False, timeout=15
        )
        assert response.status_code == 302, response.text[:300]
        return response.headers["Location"]


@pytest.fixture(scope="session")
def telenorid_ca():
    return trustme.CA(organization_name="MSS Telenor ID sandbox test CA")


@pytest.fixture
def telenorid(settings, tmp_path, telenorid_ca):
    server = TelenorIdServer(port=0, ca_file=tmp_path / "telenorid-ca.pem", ca=telenorid_ca)
    server.start()
    base = server.base_url
    settings.TELENOR_ID_URL = base
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = base + "/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = base + "/token"
    settings.OIDC_OP_USER_ENDPOINT = base + "/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = base + "/jwks"
    settings.OIDC_OP_LOGOUT_ENDPOINT = base + "/logout"
    settings.OIDC_RP_CLIENT_ID = DEFAULT_CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = DEFAULT_CLIENT_SECRET
    settings.OIDC_VERIFY_SSL = str(server.ca_file)
    settings.TELENOR_ID_CA_BUNDLE = str(server.ca_file)
    handle = TelenorIdHandle(server)
    yield handle
    handle.http.close()
    server.stop()
