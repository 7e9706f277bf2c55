"""Admin consent for Exchange Online, through the M365 sandbox's consent page."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from calendarsync import tasks
from calendarsync.models import Activity, Integration, SyncedUser
from calendarsync.providers.graph.consent import SESSION_KEY, consent_error_message
from onex.models import Membership
from tests.m365_sandbox import ANNA, DEMO_TENANT, callback_path, follow_consent


@pytest.fixture
def pending(company):
    return Integration.objects.create(
        company=company, kind=Integration.Kind.GRAPH, name="Exchange Online"
    )


@pytest.fixture(autouse=True)
def anna_signs_in(m365):
    """Microsoft's sign-in answers at once as Anna, Demo AB's Global Administrator."""
    m365.signin(mode="auto", user=ANNA)


def start(client, integration):
    response = client.get(reverse("calendarsync:graph_consent_start", args=[integration.code]))
    assert response.status_code == 302
    return response["Location"]


def signed_in(client, m365, integration):
    """Start, let the sandbox sign the admin in, and bring its answer back to us."""
    path, query = callback_path(follow_consent(m365, start(client, integration)))
    assert path == reverse("calendarsync:graph_signin_callback")
    return client.get(path, query)


def consent_location(client, m365, integration) -> str:
    response = signed_in(client, m365, integration)
    assert response.status_code == 302, response.content[:300]
    return response["Location"]


def come_back(client, m365, integration):
    """Sign in, let the sandbox answer per its consent knob, and follow the answer back."""
    path, query = callback_path(follow_consent(m365, consent_location(client, m365, integration)))
    return client.get(path, query)


def consent_state(client, m365, integration) -> str:
    return parse_qs(urlsplit(consent_location(client, m365, integration)).query)["state"][0]


def message_text(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


@pytest.fixture(autouse=True)
def english(client):
    """Most assertions read the English msgids; one test below checks the Swedish page."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


def test_it_explains_a_declined_consent_in_swedish_by_default(admin_client, pending, m365):
    del admin_client.defaults["HTTP_ACCEPT_LANGUAGE"]
    m365.knobs(consent={"mode": "decline"})
    text = message_text(come_back(admin_client, m365, pending))
    assert text == "Du avbröt godkännandet i Microsoft 365."


def test_it_signs_the_admin_in_to_microsoft_first(admin_client, pending, m365, settings):
    location = start(admin_client, pending)
    split = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    assert location.startswith(m365.url + "/organizations/oauth2/v2.0/authorize?")
    assert query["client_id"] == settings.MS_CLIENT_ID
    assert query["response_type"] == "code"
    assert "openid" in query["scope"].split()
    assert query["code_challenge_method"] == "S256" and query["nonce"]
    assert query["redirect_uri"] == settings.PUBLIC_BASE_URL + reverse(
        "calendarsync:graph_signin_callback"
    )
    step = admin_client.session[SESSION_KEY][query["state"]]
    assert step["step"] == "signin" and step["integration"] == str(pending.code)
    assert len(query["state"]) >= 40


def test_then_it_asks_for_admin_consent_of_the_signed_in_tenant(
    admin_client, pending, m365, settings
):
    location = consent_location(admin_client, m365, pending)
    split = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    assert location.startswith(f"{m365.url}/{DEMO_TENANT}/v2.0/adminconsent?")
    assert query["client_id"] == settings.MS_CLIENT_ID
    assert query["scope"] == "https://graph.microsoft.com/.default"
    assert query["redirect_uri"] == settings.PUBLIC_BASE_URL + reverse(
        "calendarsync:graph_consent_callback"
    )
    step = admin_client.session[SESSION_KEY][query["state"]]
    assert step == {"step": "consent", "integration": str(pending.code), "tenant": DEMO_TENANT}


def test_an_admin_without_a_consenting_role_is_told_before_consent(en_client, pending, m365):
    m365.signin(mode="auto", user="bjorn.berg@demo.se")
    response = signed_in(en_client, m365, pending)
    assert response.status_code == 200
    text = response.content.decode()
    assert "bjorn.berg@demo.se" in text
    assert "neither Global Administrator nor Privileged Role Administrator" in text
    assert f"{m365.url}/{DEMO_TENANT}/v2.0/adminconsent?" in text  # they may still go on
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT


def test_a_cancelled_microsoft_sign_in_keeps_the_integration_pending(admin_client, pending, m365):
    m365.signin(
        mode="error",
        error="access_denied",
        error_description="AADSTS65004: User declined to consent to access the app.",
    )
    response = signed_in(admin_client, m365, pending)
    assert response["Location"] == reverse("calendarsync:integration", args=[pending.code])
    assert message_text(response) == "You cancelled the consent in Microsoft 365."
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT


@pytest.mark.parametrize(
    "spoil", [{"wrong_nonce": True}, {"unknown_key": True}], ids=["nonce", "key"]
)
def test_an_id_token_that_does_not_verify_never_reaches_consent(admin_client, pending, m365, spoil):
    m365.spoil_id_tokens(**spoil)
    response = signed_in(admin_client, m365, pending)
    assert response["Location"] == reverse("calendarsync:integration", args=[pending.code])
    assert "could not be verified" in message_text(response)
    assert not [s for s in admin_client.session[SESSION_KEY].values() if s["step"] == "consent"]


def test_the_microsoft_sign_in_answer_works_only_once(admin_client, pending, m365):
    path, query = callback_path(follow_consent(m365, start(admin_client, pending)))
    assert admin_client.get(path, query).status_code == 302
    again = admin_client.get(path, query)
    assert again["Location"] == reverse("calendarsync:overview")
    assert "did not match" in message_text(again)


def test_it_connects_after_consent_on_the_sandbox_page_and_a_confirmed_token(
    admin_client, pending, m365
):
    page = m365.http.get(consent_location(admin_client, m365, pending), timeout=10)
    assert "Accept" in page.text
    form = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    answer = m365.http.post(
        f"{m365.url}/consent",
        data={
            "answer": "accept",
            "tenant": DEMO_TENANT,
            "redirect_uri": form["redirect_uri"],
            "state": form["state"],
        },
        allow_redirects=False,
        timeout=10,
    )
    m365.clear_requests()
    path, query = callback_path(answer.headers["Location"])
    response = admin_client.get(path, query)
    assert response.status_code == 302
    assert response["Location"] == reverse("calendarsync:integration", args=[pending.code])
    pending.refresh_from_db()
    assert pending.status == Integration.Status.CONNECTED
    assert pending.tenant_id == DEMO_TENANT and pending.consented_at is not None
    tokens = [r for r in m365.requests() if r["path"] == f"/{DEMO_TENANT}/oauth2/v2.0/token"]
    assert [t["status"] for t in tokens] == [200]  # the tenant was confirmed by a real token
    assert Activity.objects.filter(integration=pending, event="consent_granted").exists()


def test_a_declined_consent_keeps_the_integration_pending_with_a_clear_message(
    admin_client, pending, m365
):
    m365.knobs(consent={"mode": "decline"})
    response = come_back(admin_client, m365, pending)
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT
    # A cancel on purpose is said in one line, as a warning: no lecture about roles or codes.
    messages = list(get_messages(response.wsgi_request))
    assert [m.message for m in messages] == ["You cancelled the consent in Microsoft 365."]
    assert messages[0].level_tag == "warning"
    assert pending.last_error == ""  # the pending notice (with "Try again") does not repeat it
    page = admin_client.get(response["Location"]).content.decode()
    assert 'id="consent-retry"' in page and "AADSTS65004" not in page
    assert Activity.objects.filter(integration=pending, event="consent_failed").count() == 1


def test_access_denied_for_a_role_still_explains_the_roles():
    message = consent_error_message("access_denied", "AADSTS90094: admin approval needed")
    assert "Global Administrator" in message and "AADSTS90094" in message
    assert "cancelled" not in message


def test_a_missing_role_says_who_may_consent(admin_client, pending, m365):
    m365.knobs(
        consent={
            "mode": "error",
            "error": "consent_required",
            "error_description": "AADSTS90094: An administrator has not granted consent.",
        }
    )
    text = message_text(come_back(admin_client, m365, pending))
    assert "Global Administrator" in text and "Privileged Role Administrator" in text
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT and pending.last_error


def test_a_consent_that_never_comes_back_leaves_the_integration_pending(
    admin_client, pending, m365
):
    m365.knobs(consent={"mode": "no_return"})
    location = consent_location(admin_client, m365, pending)
    page = m365.http.get(location, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and "AADSTS90094" in page.text
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT
    assert start(admin_client, pending)  # the retry link works again


def test_an_answer_with_an_unknown_state_changes_nothing(admin_client, pending, m365):
    start(admin_client, pending)
    response = admin_client.get(
        reverse("calendarsync:graph_consent_callback"),
        {"admin_consent": "True", "tenant": DEMO_TENANT, "state": "made-up"},
    )
    assert response["Location"] == reverse("calendarsync:overview")
    assert "did not match" in message_text(response)
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT and not pending.tenant_id


def test_a_state_only_works_once(admin_client, pending, m365):
    m365.knobs(consent={"mode": "accept"})
    path, query = callback_path(follow_consent(m365, consent_location(admin_client, m365, pending)))
    admin_client.get(path, query)
    Integration.objects.filter(pk=pending.pk).update(status="pending_consent", tenant_id="")
    again = admin_client.get(path, query)
    assert again["Location"] == reverse("calendarsync:overview")
    assert Integration.objects.get(pk=pending.pk).status == Integration.Status.PENDING_CONSENT


def test_a_callback_naming_another_tenant_than_the_signed_in_one_is_refused(
    admin_client, pending, m365
):
    """Tenant squatting: another organisation that has consented the app, swapped into the
    answer, connects nothing; no token is even asked for it."""
    theirs = m365.add_tenant("Någon annans kund", consented=True)
    state = consent_state(admin_client, m365, pending)
    m365.clear_requests()
    response = admin_client.get(
        reverse("calendarsync:graph_consent_callback"),
        {"admin_consent": "True", "tenant": theirs, "state": state},
    )
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT and not pending.tenant_id
    assert "another Microsoft 365 organisation" in message_text(response)
    assert not [r for r in m365.requests() if theirs in r["path"]]


def test_a_forged_consent_for_the_signed_in_tenant_is_not_trusted(admin_client, pending, m365):
    state = consent_state(admin_client, m365, pending)
    m365.revoke(DEMO_TENANT)  # the redirect says "consented"; Entra ID says otherwise
    response = admin_client.get(
        reverse("calendarsync:graph_consent_callback"),
        {"admin_consent": "True", "tenant": DEMO_TENANT, "state": state},
    )
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT and not pending.tenant_id
    assert "did not confirm" in message_text(response)


def test_a_tenant_that_is_not_a_guid_never_reaches_a_token_request(admin_client, pending, m365):
    state = consent_state(admin_client, m365, pending)
    response = admin_client.get(
        reverse("calendarsync:graph_consent_callback"),
        {"admin_consent": "True", "tenant": "../common/evil", "state": state},
    )
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT and not pending.tenant_id
    assert "did not name a Microsoft 365 organisation" in message_text(response)
    assert not [r for r in m365.requests() if "evil" in r["path"]]


def test_a_tenant_connected_to_another_company_is_refused(
    admin_client, pending, m365, other_company
):
    Integration.objects.create(company=other_company, kind="graph", name="x", tenant_id=DEMO_TENANT)
    m365.knobs(consent={"mode": "accept"})
    response = come_back(admin_client, m365, pending)
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT
    assert "another company" in message_text(response)


def test_a_tenant_already_connected_to_another_of_the_companys_integrations_is_refused(
    en_client, pending, m365, company
):
    Integration.objects.create(
        company=company, kind="graph", name="Huvudkontor", tenant_id=DEMO_TENANT, status="connected"
    )
    m365.knobs(consent={"mode": "accept"})
    response = come_back(en_client, m365, pending)
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT and not pending.tenant_id
    assert "already connected as Huvudkontor" in message_text(response)
    page = en_client.get(response["Location"]).content.decode()
    assert 'id="consent-retry"' in page and 'id="consent-remove"' in page


def test_another_companys_integration_is_404(client, pending, other_company, django_user_model):
    outsider = django_user_model.objects.create_user("admin@annat.se", password="pw-x-12345")
    Membership.objects.create(user=outsider, company=other_company)
    client.force_login(outsider)
    url = reverse("calendarsync:graph_consent_start", args=[pending.code])
    assert client.get(url).status_code == 404


def test_it_needs_a_signed_in_admin(client, pending):
    response = client.get(reverse("calendarsync:graph_consent_start", args=[pending.code]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_consenting_again_resumes_a_revoked_integration(
    admin_client, pending, subscription, m365, monkeypatch, django_capture_on_commit_callbacks
):
    pending.status, pending.tenant_id = Integration.Status.NEEDS_ATTENTION, DEMO_TENANT
    pending.attention = Integration.Attention.CONSENT_REVOKED
    pending.save()
    subscription.email = ANNA
    subscription.save()
    user = SyncedUser.objects.create(integration=pending, subscription=subscription, email=ANNA)
    subscribed, synced = [], []
    monkeypatch.setattr(tasks.ensure_subscriptions, "delay", lambda ids, *a: subscribed.extend(ids))
    monkeypatch.setattr(
        tasks.sync_mailboxes, "apply_async", lambda args, **kw: synced.extend(args[0])
    )
    m365.knobs(consent={"mode": "accept"})
    with django_capture_on_commit_callbacks(execute=True):
        come_back(admin_client, m365, pending)
    pending.refresh_from_db()
    assert pending.status == Integration.Status.CONNECTED and pending.syncing
    assert subscribed == [user.pk] and synced == [user.pk]


def test_every_error_message_is_actionable():
    for error, description in [
        ("access_denied", "AADSTS65004: declined"),
        ("consent_required", ""),
        ("invalid_request", "AADSTS50011: redirect"),
        ("server_error", ""),
        ("strange_new_error", "AADSTS99999: new"),
    ]:
        message = consent_error_message(error, description)
        assert len(message) > 30
    assert "AADSTS99999" in consent_error_message("strange_new_error", "AADSTS99999: new")


def test_the_demo_command_connects_demo_ab_to_the_sandbox_tenant_idempotently(
    m365, company, subscription, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    subscription.email = ANNA
    subscription.save()
    with django_capture_on_commit_callbacks() as callbacks:
        call_command("demo_connect_graph", "--wait", "5")
        call_command("demo_connect_graph", "--wait", "5")
    integration = Integration.objects.get(company=company, kind="graph")
    assert integration.status == Integration.Status.CONNECTED
    assert integration.tenant_id == DEMO_TENANT
    # The users follow the tenant's group Kalenderkoppling: its one member with a subscription
    # in this company is Anna; the others are in the report.
    assert list(integration.users.values_list("email", flat=True)) == [ANNA]
    assert integration.user_source == Integration.UserSource.GROUPS
    report = integration.membership_report
    assert "gustav.gran@demo.se" in report.without_subscription
    assert report.added == []  # the second run: Anna came with the first
    assert Activity.objects.filter(integration=integration, event="consent_granted").count() == 1
    assert len(callbacks) == 2  # one first sync and one subscription for the one new user
