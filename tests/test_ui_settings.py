"""Inställningar: each setting explained in the seed's words; saving resyncs the users."""

import re

import pytest
from django.urls import reverse

from calendarsync import sync
from calendarsync.models import SyncedUser
from onex.models import Subscription


@pytest.fixture
def sync_requests(monkeypatch):
    """The ids of the mailboxes the sync core newly stamped as requested (its real path)."""
    calls = []
    stamp = sync.stamp_requests

    def recording(users):
        chunks = stamp(users)
        calls.extend(pk for chunk in chunks for pk in chunk)
        return chunks

    monkeypatch.setattr(sync, "stamp_requests", recording)
    return calls


def _form(**changes):
    data = {
        "name": "Exchange Online",
        "days_ahead": "14",
        "active": "on",
        "plugin_enabled": "on",
        "all_meetings_private": "on",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_it_explains_every_setting(en_client, integration):
    body = en_client.get(
        reverse("calendarsync:integration", args=[integration.code])
    ).content.decode()
    for label in (
        "Number of days",
        "Plugin enabled",
        "Restrict to default configuration",
        "All meetings private",
    ):
        assert label in body
    assert "Outlook plugin" in body
    assert "default configuration set by the admin" in body
    assert "private bookings are never synced" in body
    assert 'aria-describedby="id_plugin_enabled_helptext"' in body


def test_it_saves_and_resyncs_every_user(en_client, integration, company, sync_requests):
    users = [
        SyncedUser.objects.create(
            integration=integration,
            subscription=Subscription.objects.create(
                company=company, onex_id=f"s{i}", email=f"u{i}@demo.se"
            ),
            email=f"u{i}@demo.se",
        )
        for i in range(3)
    ]
    url = reverse("calendarsync:integration", args=[integration.code])
    response = en_client.post(
        url, _form(name="Kontoret", days_ahead="21", all_meetings_private=None)
    )
    assert response.status_code == 302
    integration.refresh_from_db()
    assert (integration.name, integration.days_ahead, integration.all_meetings_private) == (
        "Kontoret",
        21,
        False,
    )
    assert sorted(sync_requests) == sorted(user.pk for user in users)
    page = en_client.get(url).content.decode()
    assert "Saved. The users are being synced again." in page
    assert "Saved." not in en_client.get(url).content.decode()  # shown once


def test_it_answers_htmx_with_hx_location(en_client, integration, sync_requests):
    url = reverse("calendarsync:integration", args=[integration.code])
    response = en_client.post(url, _form(days_ahead="7"), HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Location"] == url


def test_it_does_not_resync_when_nothing_changed(
    en_client, integration, synced_user_row, sync_requests
):
    url = reverse("calendarsync:integration", args=[integration.code])
    en_client.post(url, _form())
    assert sync_requests == []


@pytest.fixture
def synced_user_row(integration, subscription):
    return SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )


def test_it_rejects_days_out_of_range_with_the_form_fragment(en_client, integration, sync_requests):
    url = reverse("calendarsync:integration", args=[integration.code])
    response = en_client.post(url, _form(days_ahead="99"), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<form id="settings-form"')
    assert "id_days_ahead_error" in body
    integration.refresh_from_db()
    assert integration.days_ahead == 14 and sync_requests == []


def test_it_shows_how_to_fix_a_pending_consent(en_client, integration):
    integration.status = "pending_consent"
    integration.save()
    body = en_client.get(
        reverse("calendarsync:integration", args=[integration.code])
    ).content.decode()
    assert "Waiting for consent from Microsoft" in body
    assert "Global Administrator or Privileged Role Administrator" in body


@pytest.fixture
def on_prem(company):
    from calendarsync.models import Integration

    return Integration.objects.create(
        company=company,
        kind="ews",
        name="Lokalt",
        ews_url="https://mail.demo.se/EWS/Exchange.asmx",
        ews_username="telenor_mss_user",
        ews_password="Gammalt-Lösen-1",
    )


def test_it_changes_an_on_prem_connection_keeping_the_password_unless_given(
    en_client, on_prem, sync_requests
):
    url = reverse("calendarsync:integration_connection", args=[on_prem.code])
    page = en_client.get(url).content.decode()
    assert 'id="connection-form"' in page and "Gammalt-Lösen-1" not in page
    data = {"ews_url": "https://ny.demo.se/EWS/Exchange.asmx", "ews_username": "mss2"}
    response = en_client.post(url, {**data, "ews_password": ""})
    assert response.status_code == 302 and response["Location"] == url
    on_prem.refresh_from_db()
    assert (on_prem.ews_url, on_prem.ews_username) == (data["ews_url"], "mss2")
    assert on_prem.ews_password == "Gammalt-Lösen-1"
    en_client.post(url, {**data, "ews_password": "Nytt-Lösen-2"})
    on_prem.refresh_from_db()
    assert on_prem.ews_password == "Nytt-Lösen-2"


def test_it_validates_an_on_prem_connection_change(en_client, on_prem, sync_requests):
    url = reverse("calendarsync:integration_connection", args=[on_prem.code])
    response = en_client.post(
        url,
        {"ews_url": "http://x.demo.se/EWS", "ews_username": "u", "ews_password": "Hemligt-3"},
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<form id="connection-form"')
    assert "must start with https://" in body and "Hemligt-3" not in body
    on_prem.refresh_from_db()
    assert on_prem.ews_url == "https://mail.demo.se/EWS/Exchange.asmx"


def test_exchange_online_has_no_connection_form(en_client, integration):
    page = en_client.get(reverse("calendarsync:integration", args=[integration.code]))
    assert 'id="connection-form"' not in page.content.decode()
    url = reverse("calendarsync:integration_connection", args=[integration.code])
    en_client.post(url, {"ews_url": "https://x.demo.se/EWS", "ews_username": "u"})
    integration.refresh_from_db()
    assert integration.ews_url == ""


def _whole_page(body):
    """The integration's page around a form: its header, its tabs and the form's card."""
    return '<div class="page-head">' in body and '<nav class="tabs"' in body and "<h2>" in body


def test_an_htmx_save_is_followed_by_the_whole_page_with_its_message_once(
    en_client, integration, sync_requests
):
    url = reverse("calendarsync:integration", args=[integration.code])
    response = en_client.post(url, _form(days_ahead="9"), HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Location"] == url
    # htmx follows HX-Location with an HTMX GET aimed at the body (no HX-Target).
    body = en_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert _whole_page(body) and 'id="settings-form"' in body
    assert '<li class="message success">Saved.' in body
    dashboard = reverse("calendarsync:dashboard", args=[integration.code])
    assert "Saved." not in en_client.get(dashboard).content.decode()  # no leak


def test_a_refused_htmx_save_answers_with_the_form_alone_and_no_message(
    en_client, integration, sync_requests
):
    url = reverse("calendarsync:integration", args=[integration.code])
    body = en_client.post(url, _form(days_ahead="0"), HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<form id="settings-form"') and "page-head" not in body
    assert "Saved." not in en_client.get(url).content.decode()


def test_on_prem_has_a_connection_tab_with_the_setup_guidance(en_client, on_prem, integration):
    url = reverse("calendarsync:integration_connection", args=[on_prem.code])
    body = en_client.get(url).content.decode()
    assert _whole_page(body)
    assert f'<a href="{url}" aria-current="page" id="tab-connection">Connection</a>' in body
    assert "New-ManagementRoleAssignment" in body and "Set-ThrottlingPolicyAssociation" in body
    assert 'id="firewall"' in body and "82.182.1.73" in body and "EWSNotificationService" in body
    # Every code block has its copy button (shown by static/js/mss.js), aimed at its own id.
    blocks = re.findall(r'<pre tabindex="0" id="([a-z0-9-]+)">', body)
    buttons = re.findall(
        r'<button type="button" class="copy-button" data-copy="([a-z0-9-]+)"', body
    )
    assert len(blocks) >= 9 and sorted(blocks) == sorted(buttons)
    assert 'data-copied-label="Copied"' in body and 'id="copy-status"' in body
    # The settings tab points there; Exchange Online has no such tab.
    settings_page = en_client.get(reverse("calendarsync:integration", args=[on_prem.code]))
    assert url in settings_page.content.decode()
    graph_page = en_client.get(reverse("calendarsync:integration", args=[integration.code]))
    assert 'id="tab-connection"' not in graph_page.content.decode()
    graph_url = reverse("calendarsync:integration_connection", args=[integration.code])
    assert en_client.get(graph_url)["Location"] == reverse(
        "calendarsync:integration", args=[integration.code]
    )


def test_an_htmx_connection_save_keeps_the_tab_whole_with_its_message_once(
    en_client, on_prem, sync_requests
):
    url = reverse("calendarsync:integration_connection", args=[on_prem.code])
    data = {"ews_url": "https://ny.demo.se/EWS/Exchange.asmx", "ews_username": "mss2"}
    response = en_client.post(url, data, HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Location"] == url
    body = en_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert _whole_page(body) and 'id="connection-form"' in body and 'id="firewall"' in body
    assert "Saved. The users are synced again over the new connection." in body
    users = reverse("calendarsync:users", args=[on_prem.code])
    assert "Saved." not in en_client.get(users).content.decode()


def test_the_firewall_table_shows_this_deployments_addresses(en_client, on_prem, settings):
    settings.MSS_OUTGOING_ADDRESSES = ["198.51.100.7", "198.51.100.8"]
    settings.EWS_NOTIFICATION_URL = "https://mss.example.se/MSS/services/EWSNotificationService"
    for url in (
        reverse("calendarsync:integration_connection", args=[on_prem.code]),
        reverse("calendarsync:integration_add_ews"),
    ):
        body = en_client.get(url).content.decode()
        assert "198.51.100.7" in body and "198.51.100.8" in body, url
        assert "https://mss.example.se/MSS/services/EWSNotificationService" in body, url
        assert "82.182.1.73" not in body, url
