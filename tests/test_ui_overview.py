"""Översikt and Lägg till leverantör (Exchange Online → consent, Exchange On Prem → form)."""

from django.db import connection
from django.urls import reverse

from calendarsync.crypto import decrypt
from calendarsync.models import Integration, SyncedUser


def test_it_lists_integrations_with_status_users_and_add_button(
    en_client, integration, subscription
):
    SyncedUser.objects.create(
        integration=integration, subscription=subscription, email="anna@demo.se"
    )
    Integration.objects.create(company=integration.company, kind="ews", name="Lokal Exchange")
    body = en_client.get(reverse("calendarsync:overview")).content.decode()
    assert "Exchange Online" in body and "Lokal Exchange" in body
    assert "badge-connected" in body and "badge-pending_consent" in body
    assert reverse("calendarsync:integration_add") in body
    # One user on the Exchange Online integration (the cell names its column for phones).
    assert '<td data-label="Users">1</td>' in body


def test_it_offers_both_providers(en_client):
    body = en_client.get(reverse("calendarsync:integration_add")).content.decode()
    assert 'value="graph"' in body and 'value="ews"' in body
    # Only these two roles can grant application permissions to Microsoft Graph.
    assert "<li>Global Administrator</li>" in body
    assert "<li>Privileged Role Administrator</li>" in body
    assert "<li>Cloud Application Administrator</li>" not in body


def test_it_creates_a_pending_exchange_online_integration_and_starts_consent(en_client, company):
    response = en_client.post(reverse("calendarsync:integration_add"), {"kind": "graph"})
    integration = Integration.objects.get(company=company)
    assert integration.kind == "graph"
    assert integration.status == Integration.Status.PENDING_CONSENT
    assert integration.name == "Exchange Online"
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "calendarsync:graph_consent_start", args=[integration.code]
    )


def test_it_rejects_an_unknown_kind(en_client, company):
    response = en_client.post(reverse("calendarsync:integration_add"), {"kind": "lotus"})
    assert response.status_code == 200
    assert not Integration.objects.exists()


def test_it_sends_on_prem_to_its_form(en_client):
    response = en_client.post(reverse("calendarsync:integration_add"), {"kind": "ews"})
    assert response["Location"] == reverse("calendarsync:integration_add_ews")


def test_it_shows_the_powershell_setup_and_firewall_table(en_client):
    body = en_client.get(reverse("calendarsync:integration_add_ews")).content.decode()
    assert "New-ManagementRoleAssignment" in body and "ApplicationImpersonation" in body
    assert "Set-ThrottlingPolicyAssociation" in body
    assert "EWSNotificationService" in body and "82.182.1.73" in body and "TCP/443" in body


def test_it_saves_on_prem_with_the_password_encrypted(en_client, company):
    response = en_client.post(
        reverse("calendarsync:integration_add_ews"),
        {
            "name": "Exchange Lokalt",
            "ews_url": "https://mail.demo.se/EWS/Exchange.asmx",
            "ews_username": "telenor_mss_user",
            "ews_password": "Hemligt-Lösen-42",
        },
    )
    integration = Integration.objects.get(company=company)
    # On to its Anslutning tab, where the PowerShell set-up and firewall openings are.
    assert response["Location"] == reverse(
        "calendarsync:integration_connection", args=[integration.code]
    )
    assert integration.kind == "ews"
    # Saved, not syncing, and not said to wait for a Microsoft consent it will never need.
    assert integration.status == Integration.Status.UNVERIFIED and not integration.syncing
    assert integration.ews_password == "Hemligt-Lösen-42"
    with connection.cursor() as cursor:
        cursor.execute("SELECT ews_password FROM calendarsync_integration")
        stored = cursor.fetchone()[0]
    assert "Hemligt" not in stored and decrypt(stored) == "Hemligt-Lösen-42"
    page = en_client.get(response["Location"]).content.decode()
    assert "Hemligt-Lösen-42" not in page
    assert "not verified yet" in page and "awaiting consent" not in page


def test_it_validates_the_on_prem_form(en_client, company):
    response = en_client.post(
        reverse("calendarsync:integration_add_ews"),
        {
            "name": "X",
            "ews_url": "http://mail.demo.se/EWS/Exchange.asmx",
            "ews_username": "two words",
            "ews_password": "",
        },
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "must start with https://" in body
    assert "cannot contain spaces" in body
    assert 'id="id_ews_password_error"' in body
    assert not Integration.objects.exists()


def test_it_never_renders_a_submitted_password_back(en_client):
    response = en_client.post(
        reverse("calendarsync:integration_add_ews"),
        {"name": "X", "ews_url": "ftp://x", "ews_username": "u", "ews_password": "Sekret-99"},
    )
    assert "Sekret-99" not in response.content.decode()
