"""Sign-in with Telenor ID through the sandbox: memberships from One X, refusals, sign-out.

The Django test client plays the browser on our side; the sandbox's login form is posted with
requests, as a browser would post it.
"""

import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.messages import get_messages
from django.core.exceptions import SuspiciousOperation
from django.urls import reverse

from onex import directory
from onex.models import Membership, Subscription
from onex.telenorid import USERNAME_PREFIX, TelenorIdBackend
from sandbox.telenorid.demo import DEMO_PASSWORD

pytestmark = pytest.mark.django_db

ANNA = "anna.andersson@demo.se"
BJORN = "bjorn.berg@demo.se"
CALLBACK = "http://testserver/oidc/callback/"


class FormReader(HTMLParser):
    """The first form's action and its inputs' values."""

    def __init__(self):
        super().__init__()
        self.action, self.fields, self.done = None, {}, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action") or ""
        elif tag == "input" and self.action is not None and not self.done and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.done = True


@pytest.fixture
def directory_admins(company, onex_sandbox):
    """Demo AB's One X directory imported: Anna is its administrator, Björn is not."""
    assert directory.import_company(company).ok
    assert company.subscriptions.get(email=ANNA).is_admin
    return company


@pytest.fixture
def tid(telenorid):
    telenorid.register([CALLBACK], ["http://127.0.0.1:8000/"])
    return telenorid


def authorize_location(client) -> str:
    response = client.get(reverse("oidc_authentication_init"))
    assert response.status_code == 302
    return response["Location"]


def telenor_id_answer(tid, location, email, password=DEMO_PASSWORD):
    """Fill in the sandbox's login form; returns the redirect back to us (or the page)."""
    page = tid.http.get(location, allow_redirects=False, timeout=10)
    if page.status_code == 302:
        return page.headers["Location"]
    form = FormReader()
    form.feed(page.text)
    fields = {**form.fields, "email": email, "password": password}
    answer = tid.http.post(
        urljoin(page.url, form.action), data=fields, allow_redirects=False, timeout=10
    )
    assert answer.status_code == 302, answer.text[:300]
    return answer.headers["Location"]


def sign_in(client, tid, email, password=DEMO_PASSWORD):
    back = telenor_id_answer(tid, authorize_location(client), email, password)
    split = urlsplit(back)
    assert f"{split.scheme}://{split.netloc}{split.path}" == CALLBACK
    return client.get(split.path, {k: v[-1] for k, v in parse_qs(split.query).items()})


def messages_of(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def test_the_request_uses_the_code_flow_with_pkce_state_and_nonce(client, tid, settings):
    query = parse_qs(urlsplit(authorize_location(client)).query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [settings.OIDC_RP_CLIENT_ID]
    assert query["redirect_uri"] == [CALLBACK]
    assert query["code_challenge_method"] == ["S256"]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32


def test_a_one_x_admin_signs_in_and_administers_the_company(client, tid, directory_admins):
    response = sign_in(client, tid, ANNA)
    assert response.status_code == 302
    assert response["Location"] == reverse("calendarsync:overview")
    user = response.wsgi_request.user
    assert user.is_authenticated and user.username.startswith(USERNAME_PREFIX)
    assert user.email == ANNA and not user.is_staff and not user.has_usable_password()
    assert list(user.memberships.values_list("company", flat=True)) == [directory_admins.pk]
    overview = client.get(reverse("calendarsync:overview"))
    assert overview.status_code == 200
    assert "Demo AB" in overview.content.decode()


def test_the_same_telenor_id_is_the_same_user_the_next_time(client, tid, directory_admins):
    first = sign_in(client, tid, ANNA).wsgi_request.user
    client.post(reverse("logout"))
    second = sign_in(client, tid, ANNA).wsgi_request.user
    assert first.pk == second.pk
    assert Membership.objects.filter(user=first).count() == 1


def test_anyone_else_gets_the_no_access_page(client, tid, directory_admins):
    response = sign_in(client, tid, BJORN)
    assert response.wsgi_request.user.is_authenticated
    assert not Membership.objects.filter(user__email=BJORN).exists()
    overview = client.get(reverse("calendarsync:overview"))
    assert overview["Location"] == reverse("calendarsync:no_access")
    page = client.get(reverse("calendarsync:no_access"))
    assert page.status_code == 403
    text = page.content.decode()
    assert BJORN in text and "Mitt Företag" in text
    assert "som administratör för något företag" in text


def test_an_admin_flag_turned_off_removes_the_membership_at_the_next_sign_in(
    client, tid, directory_admins
):
    user = sign_in(client, tid, ANNA).wsgi_request.user
    assert user.memberships.exists()
    client.post(reverse("logout"))
    Subscription.objects.filter(email=ANNA).update(is_admin=False)
    sign_in(client, tid, ANNA)
    assert not user.memberships.exists()
    assert client.get(reverse("calendarsync:overview"))["Location"] == reverse(
        "calendarsync:no_access"
    )


def test_an_admin_flag_turned_off_in_one_x_removes_the_membership_at_the_directory_import(
    client, tid, directory_admins, onex_sandbox
):
    user = sign_in(client, tid, ANNA).wsgi_request.user
    assert user.memberships.filter(company=directory_admins).exists()
    onex_sandbox.put_subscription(
        "demo-ab",
        "sub-anna",
        email=ANNA,
        displayName="Anna Andersson",
        features={"absence": True, "diversion": True, "openDiversion": True},
        admin=False,
    )
    result = directory.import_company(directory_admins)
    assert result.ok and result.memberships_removed == 1
    assert not user.memberships.exists()
    # Her session stays, but the company's pages are closed to her at once.
    assert client.get(reverse("calendarsync:overview"))["Location"] == reverse(
        "calendarsync:no_access"
    )


def test_a_deactivated_admin_subscription_removes_the_membership_too(
    client, tid, directory_admins, onex_sandbox
):
    user = sign_in(client, tid, ANNA).wsgi_request.user
    onex_sandbox.delete_subscription("demo-ab", "sub-anna")
    assert directory.import_company(directory_admins).memberships_removed == 1
    assert not user.memberships.exists()


def test_an_unverified_email_is_refused(client, tid, directory_admins):
    tid.put_identity(ANNA, "another-pw-1", "Anna Andersson", email_verified=False)
    response = sign_in(client, tid, ANNA, "another-pw-1")
    assert response["Location"] == reverse("login")
    assert not response.wsgi_request.user.is_authenticated
    assert "did not succeed" in messages_of(response) or "lyckades inte" in messages_of(response)
    assert not Membership.objects.exists()


@pytest.mark.parametrize("knob", ["wrong_nonce", "expired_token", "unknown_key"])
def test_a_token_that_does_not_verify_signs_no_one_in(client, tid, directory_admins, knob):
    tid.knobs(**{knob: True})
    response = sign_in(client, tid, ANNA)
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert not response.wsgi_request.user.is_authenticated
    assert "Telenor ID" in messages_of(response)
    assert not Membership.objects.exists()


def test_a_rotated_key_still_verifies(client, tid, directory_admins):
    tid.rotate_key()
    assert sign_in(client, tid, ANNA).wsgi_request.user.is_authenticated


@pytest.mark.parametrize(
    ("claim", "value"), [("aud", "someone-else"), ("iss", "https://elsewhere.example")]
)
def test_a_token_for_another_client_or_from_another_issuer_is_refused(settings, claim, value):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "iss": settings.TELENOR_ID_URL,
        "aud": settings.OIDC_RP_CLIENT_ID,
        "sub": "s-1",
        "iat": now,
        "exp": now + 300,
    }
    backend = TelenorIdBackend()
    good = jwt.encode(claims, key, algorithm="RS256")
    assert backend.get_payload_data(good, key.public_key())["sub"] == "s-1"
    bad = jwt.encode({**claims, claim: value}, key, algorithm="RS256")
    with pytest.raises(SuspiciousOperation):
        backend.get_payload_data(bad, key.public_key())


def test_a_callback_with_an_unknown_state_signs_no_one_in(client, tid, directory_admins):
    authorize_location(client)
    response = client.get(reverse("oidc_authentication_callback"), {"code": "x", "state": "y"})
    assert response["Location"] == reverse("login")
    assert not response.wsgi_request.user.is_authenticated


def test_a_cancelled_sign_in_says_so(client, tid):
    state = parse_qs(urlsplit(authorize_location(client)).query)["state"][0]
    response = client.get(
        reverse("oidc_authentication_callback"), {"error": "access_denied", "state": state}
    )
    assert response["Location"] == reverse("login")
    assert "avbröts" in messages_of(response) or "cancelled" in messages_of(response)


def test_telenor_id_unreachable_is_a_message_not_a_500(client, tid, directory_admins, settings):
    location = authorize_location(client)
    back = telenor_id_answer(tid, location, ANNA)
    settings.OIDC_OP_TOKEN_ENDPOINT = "https://127.0.0.1:9/token"  # nothing listens there
    split = urlsplit(back)
    response = client.get(split.path, {k: v[-1] for k, v in parse_qs(split.query).items()})
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert not response.wsgi_request.user.is_authenticated


def test_logging_out_ends_the_telenor_id_session_too(client, tid, directory_admins, settings):
    sign_in(client, tid, ANNA)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    split = urlsplit(response["Location"])
    assert f"{split.scheme}://{split.netloc}{split.path}" == settings.OIDC_OP_LOGOUT_ENDPOINT
    query = {k: v[-1] for k, v in parse_qs(split.query).items()}
    assert query == {
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": settings.TELENOR_ID_POST_LOGOUT_URL,
    }
    assert "_auth_user_id" not in client.session
    # The sandbox accepts it and sends the browser back to us.
    back = tid.http.get(response["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302
    assert back.headers["Location"].startswith(settings.TELENOR_ID_POST_LOGOUT_URL)


def test_logout_is_post_only(client, tid, directory_admins):
    sign_in(client, tid, ANNA)
    assert client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in client.session


def test_a_local_password_logs_in_staff_and_the_demo_admin_only(client, django_user_model):
    django_user_model.objects.create_user("kund@demo.se", password="kundens-lösen-1")
    django_user_model.objects.create_user(
        "support@telenor.se", password="stab-lösen-1", is_staff=True
    )
    django_user_model.objects.create_user(ANNA, password=DEMO_PASSWORD)

    refused = client.post(
        reverse("login"), {"username": "kund@demo.se", "password": "kundens-lösen-1"}
    )
    assert refused.status_code == 200
    assert "Telenor ID" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    for username, password in (("support@telenor.se", "stab-lösen-1"), (ANNA, DEMO_PASSWORD)):
        response = client.post(reverse("login"), {"username": username, "password": password})
        assert response.status_code == 302, username
        client.post(reverse("logout"))


def test_in_production_the_local_form_is_for_staff_only(client, django_user_model, settings):
    settings.LOCAL_LOGIN_USERNAMES = []
    django_user_model.objects.create_user(ANNA, password=DEMO_PASSWORD)
    response = client.post(reverse("login"), {"username": ANNA, "password": DEMO_PASSWORD})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_the_login_page_offers_telenor_id_first(client):
    body = client.get(reverse("login")).content.decode()
    assert 'id="telenor-id-login"' in body
    assert "Logga in med Telenor ID" in body
    assert body.index("telenor-id-login") < body.index('id="id_username"')
