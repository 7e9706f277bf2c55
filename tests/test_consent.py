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


def start(client, integration):
    response = client.get(reverse("calendarsync:graph_consent_start", args=[integration.code]))
    assert response.status_code == 302
    return response["Location"]


def come_back(client, m365, integration):
    """Start, let the sandbox answer per its consent knob, and follow the answer back."""
    path, query = callback_path(follow_consent(m365, start(client, integration)))
    return client.get(path, query)


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
    assert "Godkännandet avböjdes i Microsoft 365" in text


def test_it_sends_the_admin_to_microsofts_admin_consent_url(admin_client, pending, m365, settings):
    location = start(admin_client, pending)
    split = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    assert location.startswith(m365.url + "/organizations/v2.0/adminconsent?")
    assert query["client_id"] == settings.MS_CLIENT_ID
    assert query["scope"] == "https://graph.microsoft.com/.default"
    assert query["redirect_uri"] == settings.PUBLIC_BASE_URL + reverse(
        "calendarsync:graph_consent_callback"
    )
    assert admin_client.session[SESSION_KEY][query["state"]] == str(pending.code)
    assert len(query["state"]) >= 40


def test_it_connects_after_consent_on_the_sandbox_page_and_a_confirmed_token(
    admin_client, pending, m365
):
    page = m365.http.get(start(admin_client, pending), timeout=10)
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
    text = message_text(response)
    assert "declined" in text and "AADSTS65004" in text
    assert Activity.objects.filter(integration=pending, event="consent_failed").count() == 1


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
    page = m365.http.get(start(admin_client, pending), allow_redirects=False, timeout=10)
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
    path, query = callback_path(follow_consent(m365, start(admin_client, pending)))
    admin_client.get(path, query)
    Integration.objects.filter(pk=pending.pk).update(status="pending_consent", tenant_id="")
    again = admin_client.get(path, query)
    assert again["Location"] == reverse("calendarsync:overview")
    assert Integration.objects.get(pk=pending.pk).status == Integration.Status.PENDING_CONSENT


def test_a_forged_tenant_is_not_trusted(admin_client, pending, m365):
    unconsented = m365.add_tenant("Annan kund", consented=False)
    m365.knobs(consent={"mode": "accept", "tenant": unconsented})
    m365.revoke(unconsented)  # the redirect says "consented"; Entra ID says otherwise
    state = parse_qs(urlsplit(start(admin_client, pending)).query)["state"][0]
    response = admin_client.get(
        reverse("calendarsync:graph_consent_callback"),
        {"admin_consent": "True", "tenant": unconsented, "state": state},
    )
    pending.refresh_from_db()
    assert pending.status == Integration.Status.PENDING_CONSENT and not pending.tenant_id
    assert "did not confirm" in message_text(response)


def test_a_tenant_that_is_not_a_guid_never_reaches_a_token_request(admin_client, pending, m365):
    state = parse_qs(urlsplit(start(admin_client, pending)).query)["state"][0]
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
    assert list(integration.users.values_list("email", flat=True)) == [ANNA]
    assert Activity.objects.filter(integration=integration, event="consent_granted").count() == 1
    assert len(callbacks) == 2  # one first sync and one subscription for the one new user
