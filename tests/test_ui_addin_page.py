"""Outlook-tillägg: the manifest's address and download, how to deploy it for the integration's
kind first (the other folded), the plug-in settings with their values and meaning, another
company's integration a 404; and the dashboard's add-in counts."""

import itertools
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from calendarsync.models import Booking, Integration, SyncedUser
from calendarsync.rules import DecidedBy
from onex.models import Subscription

_ids = itertools.count(1)


def _page(client, integration):
    response = client.get(reverse("calendarsync:integration_addin", args=[integration.code]))
    assert response.status_code == 200
    return response.content.decode()


def _section(body, element_id):
    """The markup of the <details> with this id."""
    match = re.search(
        rf'<details class="deploy" id="{element_id}"( open)?>(.*?)</details>', body, re.S
    )
    assert match, element_id
    return match


@pytest.fixture
def ews_integration(company):
    return Integration.objects.create(
        company=company,
        kind=Integration.Kind.EWS,
        name="Kontoret",
        status="connected",
        ews_url="https://mail.demo.se/EWS/Exchange.asmx",
    )


def test_it_shows_the_manifest_address_and_a_download(en_client, integration, settings):
    settings.PUBLIC_BASE_URL = "https://kalender.example.se"
    body = _page(en_client, integration)
    assert 'aria-current="page" id="tab-addin">Outlook add-in</a>' in body
    assert "<code>https://kalender.example.se/addin/manifest.xml</code>" in body
    download = re.search(r'<a class="button primary" id="download-manifest" href="([^"]+)"', body)
    assert download.group(1) == "/addin/manifest.xml?download=1"
    response = en_client.get(download.group(1))
    assert response["Content-Disposition"].endswith('"mss-kalenderkoppling-manifest.xml"')
    assert "the button “Telefonstatus” on the bookings they organise" in body


def test_exchange_online_comes_first_and_on_prem_is_folded(en_client, integration):
    body = _page(en_client, integration)
    graph, ews = _section(body, "deploy-graph"), _section(body, "deploy-ews")
    assert graph.start() < ews.start()
    assert graph.group(1) == " open" and ews.group(1) is None
    assert "Microsoft 365 admin center → Settings → Integrated apps → Upload custom apps" in (
        graph.group(2)
    )
    assert "New-App -OrganizationApp -FileData" in ews.group(2)


def test_on_prem_comes_first_with_the_exchange_admin_center_and_powershell(
    en_client, ews_integration
):
    body = _page(en_client, ews_integration)
    graph, ews = _section(body, "deploy-graph"), _section(body, "deploy-ews")
    assert ews.start() < graph.start()
    assert ews.group(1) == " open" and graph.group(1) is None
    steps = ews.group(2)
    assert "Exchange admin center → Organization → Add-ins" in steps
    assert (
        "New-App -OrganizationApp -FileData ([System.IO.File]::ReadAllBytes("
        '"C:\\Temp\\mss-kalenderkoppling-manifest.xml"))'
    ) in steps
    assert "/autodiscover/metadata/json/1" in steps
    assert 'data-copy="ps-new-app"' in steps


@pytest.mark.parametrize(
    ("enabled", "defaults_only", "values", "meaning"),
    [
        (True, False, ("on", "off"), "Users may also set their own rules"),
        (True, True, ("on", "on"), "Users cannot set rules of their own"),
        (False, False, ("off", "off"), "No effect while the plugin is off."),
    ],
)
def test_it_explains_the_plugin_settings_with_their_values(
    en_client, integration, enabled, defaults_only, values, meaning
):
    integration.plugin_enabled = enabled
    integration.plugin_defaults_only = defaults_only
    integration.save()
    body = _page(en_client, integration)
    enabled_value = re.search(r'id="plugin-enabled-value">(\w+)<', body).group(1)
    defaults_value = re.search(r'id="plugin-defaults-only-value">(\w+)<', body).group(1)
    assert (enabled_value, defaults_value) == values
    assert meaning in body
    if not enabled:
        assert "saves nothing: the sync rules decide every booking" in body
    settings_link = reverse("calendarsync:integration", args=[integration.code])
    assert f'href="{settings_link}#id_plugin_enabled"' in body


def test_another_companys_integration_is_a_404(en_client, foreign_integration):
    url = reverse("calendarsync:integration_addin", args=[foreign_integration.code])
    assert en_client.get(url).status_code == 404


def test_it_sends_anonymous_users_to_login(client, integration):
    url = reverse("calendarsync:integration_addin", args=[integration.code])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_every_tab_links_to_it(en_client, integration):
    body = en_client.get(reverse("calendarsync:rules", args=[integration.code])).content.decode()
    url = reverse("calendarsync:integration_addin", args=[integration.code])
    assert f'<a href="{url}" id="tab-addin">Outlook add-in</a>' in body


def test_it_needs_few_queries(en_client, integration, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        _page(en_client, integration)


# The dashboard's add-in counts.


def _user(integration, company, email, profile=None):
    subscription = Subscription.objects.create(company=company, onex_id=email, email=email)
    return SyncedUser.objects.create(
        integration=integration,
        subscription=subscription,
        email=email,
        personal_profile=profile or {},
    )


def _booking(synced_user, start, decided_by):
    n = next(_ids)
    return Booking.objects.create(
        synced_user=synced_user,
        external_id=f"mss-{n}",
        provider_item_id=f"item-{n}",
        start=start,
        end=start + timedelta(hours=1),
        forwarding="info",
        reason_code="MOTE",
        return_at=start + timedelta(hours=1),
        decided_by=decided_by,
        fingerprint="x",
        pushed_at=timezone.now(),
    )


def test_the_dashboard_counts_users_with_choices_in_outlook_and_own_rules(
    en_client, integration, company, foreign_integration
):
    now = timezone.now()
    busy_divert = {"busy": {"forwarding": "divert", "reason": "MOTE", "open_diversion": False}}
    anna = _user(integration, company, "anna@demo.se", busy_divert)
    bjorn = _user(integration, company, "bjorn@demo.se")
    cecilia = _user(integration, company, "cecilia@demo.se", {"oof": {"forwarding": "info"}})
    david = _user(integration, company, "david@demo.se")
    # Anna chose twice in Outlook (counted once), Björn once; Cecilia's bookings follow a
    # rule; David's choice was for a booking that has ended.
    _booking(anna, now + timedelta(hours=2), DecidedBy.ADDIN)
    _booking(anna, now + timedelta(days=2), DecidedBy.ADDIN)
    _booking(bjorn, now + timedelta(days=1), DecidedBy.ADDIN)
    _booking(cecilia, now + timedelta(days=1), DecidedBy.rule(7))
    _booking(david, now - timedelta(days=2), DecidedBy.ADDIN)
    # Another company's user with a choice and rules counts for them only.
    _booking(foreign_integration.users.get(), now + timedelta(hours=1), DecidedBy.ADDIN)
    foreign_integration.users.update(personal_profile=busy_divert)

    body = en_client.get(reverse("calendarsync:dashboard", args=[integration.code])).content
    body = body.decode()
    assert "Users with own choices in Outlook" in body
    assert re.search(r'id="count-addin-choices">(\d+)<', body).group(1) == "2"
    assert "Users with own rules" in body
    assert re.search(r'id="count-personal-rules">(\d+)<', body).group(1) == "2"


def test_the_dashboard_counts_are_zero_without_add_in_use(en_client, integration, synced_user):
    body = en_client.get(reverse("calendarsync:dashboard", args=[integration.code])).content
    body = body.decode()
    assert re.search(r'id="count-addin-choices">(\d+)<', body).group(1) == "0"
    assert re.search(r'id="count-personal-rules">(\d+)<', body).group(1) == "0"
