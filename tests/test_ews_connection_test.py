"""Testa anslutningen against the EWS sandbox: each failure shows its step and its fix; only a
test where every step passed connects the integration."""

from datetime import UTC, datetime

import pytest
import trustme
from django.urls import reverse
from exchangelib.protocol import Protocol

from calendarsync.models import Integration
from calendarsync.providers import provider_for
from calendarsync.providers.ews import client
from onex.models import Membership

PERSON = "kalle@kommun.example.se"


@pytest.fixture
def integration(on_prem, company):
    return on_prem(company, PERSON, status=Integration.Status.UNVERIFIED)


def run_test(en_client, integration, mailbox=PERSON, htmx=True):
    url = reverse("calendarsync:integration_connection_test", args=[integration.code])
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = en_client.post(url, {"mailbox": mailbox}, **headers)
    assert response.status_code == 200
    integration.refresh_from_db()
    return response.content.decode()


def test_a_passing_test_connects_the_integration(en_client, integration):
    body = run_test(en_client, integration)
    assert body.count('class="test-step passed"') == 4
    assert "Exchange2019" in body or "Exchange version" in body
    assert "The integration is connected" in body
    assert integration.status == Integration.Status.CONNECTED


def test_without_javascript_the_whole_tab_shows_the_result(en_client, integration):
    body = run_test(en_client, integration, htmx=False)
    assert 'id="tab-connection"' in body and 'id="test-steps"' in body


@pytest.mark.parametrize(
    ("change", "failed_step", "fix"),
    [
        ("impersonation", "Impersonation", "New-ManagementRoleAssignment"),
        ("password", "The service account", "Check the user name (DOMAIN\\account)"),
        ("certificate", "Encryption (TLS)", "public certificate authority"),
        ("unreachable", "Encryption (TLS)", "Open the firewall for TCP 443 from 82.182.1.73"),
        ("internal", "The server&#x27;s address", "Enter the public https address of EWS."),
    ],
)
def test_each_failure_names_its_step_and_its_fix(
    en_client, integration, ews, settings, tmp_path, change, failed_step, fix
):
    if change == "impersonation":
        ews.knobs(impersonation=False)
    elif change == "password":
        ews.knobs(password="Ett-annat-lösen-2")
    elif change == "certificate":
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        settings.EWS_CA_BUNDLE = str(other)
    elif change == "unreachable":
        integration.ews_url = "https://127.0.0.1:9/EWS/Exchange.asmx"
        integration.save()
        settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1:9"]
    elif change == "internal":
        settings.OUTBOUND_ALLOWED_HOSTS = []
    body = run_test(en_client, integration)
    failed = body.split('class="test-step failed"', 1)
    assert len(failed) == 2, body[:2000]
    assert failed_step in failed[1].split("</li>", 1)[0]
    assert fix in body
    assert "The test did not pass" in body
    assert integration.status == Integration.Status.UNVERIFIED


def test_a_mailbox_exchange_does_not_know_is_said_so(en_client, integration):
    body = run_test(en_client, integration, mailbox="ingen@kommun.example.se")
    assert "Exchange has no mailbox ingen@kommun.example.se" in body
    assert integration.status == Integration.Status.UNVERIFIED


def test_an_address_is_needed(en_client, integration):
    body = run_test(en_client, integration, mailbox="inte-en-adress")
    assert "Enter the address of a mailbox" in body and 'id="test-steps"' not in body


def test_another_companys_integration_is_404(client, integration, other_company, django_user_model):
    outsider = django_user_model.objects.create_user("admin@annat.se", password="pw-x-12345")
    Membership.objects.create(user=outsider, company=other_company)
    client.force_login(outsider)
    url = reverse("calendarsync:integration_connection_test", args=[integration.code])
    assert client.post(url, {"mailbox": PERSON}).status_code == 404


def test_a_passing_test_records_the_build_and_later_reads_skip_the_probe(
    en_client, integration, ews
):

    run_test(en_client, integration)
    assert integration.ews_build.startswith("15.")
    client.forget(integration)
    Protocol.clear_cache()  # a new worker process
    ews.clear_requests()
    provider_for(integration).fetch(
        PERSON, datetime(2030, 3, 4, tzinfo=UTC), datetime(2030, 3, 9, tzinfo=UTC),
        include_subject=False,
    )  # fmt: skip
    operations = [entry.get("operation") for entry in ews.requests()]
    # exchangelib probes an unknown version with ConvertId; a known build is not probed.
    assert "ConvertId" not in operations and "FindItem" in operations
