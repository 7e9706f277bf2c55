"""The Outlook add-in's task pane in a real browser, with the Office.js stand-in where
Microsoft's CDN script would be (Playwright routes its URL), against the sandboxes:
a choice made in the pane reaches One X through the normal sync, for Exchange Online and
Exchange On Prem; personal rules work, and are hidden when the admin restricts the add-in.
"""

import json
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone
from playwright.sync_api import expect

from calendarsync import tasks
from calendarsync.models import SyncedUser
from tests.browser_support import ANNA, axe_violations, connected_integration
from tests.m365_sandbox import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OFFICE_JS = "https://appsforoffice.microsoft.com/lib/1/hosted/office.js"
STUB = Path(__file__).resolve().parent.parent / "sandbox" / "addin" / "office_stub.js"
ONEX_COMPANY = "demo-ab"


@pytest.fixture(autouse=True)
def _close_connections(browser_page):
    # The test's ORM connection belongs to Playwright's context: close it while that lives.
    yield
    connections.close_all()


def graph_time(moment):
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def open_pane(page, base_url, stub_config, lang="sv"):
    """Open the task pane as Outlook would, with the stand-in playing the appointment."""
    assert django_settings.OFFICE_JS_URL == OFFICE_JS
    page.route(
        OFFICE_JS,
        lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=STUB.read_text(encoding="utf-8")
        ),
    )
    page.add_init_script(f"window.__officeStubConfig = {json.dumps(stub_config)};")
    page.goto(f"{base_url}/addin/taskpane/?lang={lang}")


def anna_entries(onex_sandbox):
    return [e for e in onex_sandbox.absences(ONEX_COMPANY) if e["subscriptionId"] == "sub-anna"]


def entry_for(onex_sandbox, start, **expected):
    """Anna's One X entry starting at `start` once it has the expected fields, else None."""
    stamp = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    for entry in anna_entries(onex_sandbox):
        if entry["start"].startswith(stamp) and all(entry.get(k) == v for k, v in expected.items()):
            return entry
    return None


@pytest.fixture
def graph_anna(world, m365, company, settings):
    """Anna synced from an Exchange Online tenant of her own, her webhook subscription live."""
    settings.ADDIN_CONNECT_SRC = [m365.url]
    integration, tenant, anna = connected_integration(m365, company, "Tillägg AB")
    tasks.start_syncing(SyncedUser.objects.filter(pk=anna.pk))
    return integration, tenant, anna


def booking(m365, tenant, hours_from_now=50, **extra):
    start = (timezone.now() + timedelta(hours=hours_from_now)).replace(
        minute=0, second=0, microsecond=0
    )
    event = m365.create_event(
        ANNA,
        tenant,
        subject="Lunch med kund",
        start=graph_time(start),
        end=graph_time(start + timedelta(hours=1)),
        showAs="busy",
        **extra,
    )
    return event, start


def graph_stub(m365, tenant, event, start, settings):
    return {
        "mode": "graph",
        "sandbox": m365.url,
        "mailbox": ANNA,
        "tenant": tenant,
        "itemId": event["id"],
        "start": start.astimezone(UTC).isoformat(),
        "end": (start + timedelta(hours=1)).astimezone(UTC).isoformat(),
        "addinId": settings.MS_ADDIN_ID,
    }


def test_a_choice_in_the_pane_becomes_a_diversion_in_one_x(
    world, graph_anna, m365, onex_sandbox, browser_page, camera, settings
):
    _, tenant, _ = graph_anna
    event, start = booking(m365, tenant)
    wait_for(lambda: entry_for(onex_sandbox, start, divert=False), 60, message="the Frånvaro")

    page = browser_page
    open_pane(page, world, graph_stub(m365, tenant, event, start, settings))
    preview = page.locator("#preview-text")
    expect(preview).to_contain_text("Frånvaro: Möte")
    expect(preview).to_contain_text("Standardmall")
    assert not axe_violations(page)
    camera("pane-opened")
    # Keyboard only: the choice's radios follow the arrow keys, the form submits from its button.
    page.get_by_label("Frånvaro", exact=True).focus()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Hänvisning", exact=True)).to_be_checked()

    page.get_by_label("Hänvisning", exact=True).check()
    page.select_option("#reason", "LUNCH")
    expect(preview).to_contain_text("Hänvisning: Lunch")
    page.click("#save-choice")
    expect(page.locator("#status")).to_contain_text("Sparat")
    camera("choice-saved")

    saved = m365.custom_properties(ANNA, event["id"], tenant=tenant)
    assert saved["forwarding"] == "divert" and saved["reason"] == "LUNCH"
    entry = wait_for(
        lambda: entry_for(onex_sandbox, start, divert=True, reasonCode="LUNCH"),
        60,
        message="the Hänvisning Lunch in One X",
    )
    assert len([e for e in anna_entries(onex_sandbox) if e["start"] == entry["start"]]) == 1


def test_personal_rules_make_the_next_busy_booking_a_diversion(
    world, graph_anna, m365, onex_sandbox, browser_page, camera, settings
):
    _, tenant, anna = graph_anna
    event, start = booking(m365, tenant, hours_from_now=30)
    page = browser_page
    open_pane(page, world, graph_stub(m365, tenant, event, start, settings))
    expect(page.locator("#my-rules")).to_be_visible()
    page.select_option("#rule-busy", "divert")
    page.select_option("#rule-busy-reason", "MOTE")
    page.click("#save-rules")
    expect(page.locator("#status")).to_contain_text("Dina regler är sparade")
    expect(page.locator("#preview-text")).to_contain_text("Hänvisning: Möte")
    camera("my-rules-saved")
    anna.refresh_from_db()
    assert anna.personal_profile["busy"]["forwarding"] == "divert"

    # The next Busy booking, made in Outlook after the rules were saved, becomes a Hänvisning.
    _, later = booking(m365, tenant, hours_from_now=75)
    wait_for(
        lambda: entry_for(onex_sandbox, later, divert=True, reasonCode="MOTE"),
        60,
        message="the next Busy booking as Hänvisning Möte",
    )
    # And the one the pane was open on is resynced the same way.
    wait_for(lambda: entry_for(onex_sandbox, start, divert=True), 60, message="the resync")


def test_restricted_to_the_default_configuration_the_pane_hides_personal_rules(
    world, graph_anna, m365, onex_sandbox, browser_page, camera, settings
):
    integration, tenant, _ = graph_anna
    integration.plugin_defaults_only = True
    integration.save(update_fields=["plugin_defaults_only"])
    event, start = booking(m365, tenant, hours_from_now=28)
    page = browser_page
    open_pane(page, world, graph_stub(m365, tenant, event, start, settings))
    expect(page.locator("#admin-rules")).to_contain_text("administratörs regler gäller")
    expect(page.locator("#my-rules")).to_be_hidden()
    camera("restricted")
    # The per-booking choice still works.
    page.get_by_label("Hänvisning", exact=True).check()
    page.select_option("#reason", "LUNCH")
    page.click("#save-choice")
    expect(page.locator("#status")).to_contain_text("Sparat")
    wait_for(
        lambda: entry_for(onex_sandbox, start, divert=True, reasonCode="LUNCH"),
        60,
        message="the choice in One X",
    )


def test_with_the_plugin_off_the_pane_says_so_and_writes_nothing(
    world, graph_anna, m365, browser_page, settings
):
    integration, tenant, _ = graph_anna
    integration.plugin_enabled = False
    integration.save(update_fields=["plugin_enabled"])
    event, start = booking(m365, tenant, hours_from_now=29)
    page = browser_page
    open_pane(page, world, graph_stub(m365, tenant, event, start, settings))
    expect(page.locator("#status")).to_contain_text("stängt av Outlook-tillägget")
    expect(page.locator("#booking")).to_be_hidden()
    expect(page.locator("#save-choice")).to_be_hidden()
    assert m365.custom_properties(ANNA, event["id"], tenant=tenant) == {}


# ----- Exchange On Prem: the Exchange identity token, linked once through an item


@pytest.fixture
def ews_anna(world, on_prem, ews, company, settings, live_server):
    from django.urls import reverse

    settings.ADDIN_CONNECT_SRC = [ews.url]
    settings.EWS_NOTIFICATION_URL = live_server.url + reverse("ews_notifications")
    integration = on_prem(company, ANNA, name="Anna Andersson")
    anna = SyncedUser.objects.create(
        integration=integration, subscription=company.subscriptions.get(email=ANNA), email=ANNA
    )
    tasks.start_syncing(SyncedUser.objects.filter(pk=anna.pk))
    return integration, anna


def test_on_prem_a_choice_in_the_pane_becomes_a_diversion_in_one_x(
    world, ews_anna, ews, onex_sandbox, browser_page, camera, settings
):
    _, anna = ews_anna
    start = (timezone.now() + timedelta(hours=52)).replace(minute=0, second=0, microsecond=0)
    created = ews.create_event(
        ANNA,
        subject="Lunch med kund",
        start=start.astimezone(UTC).isoformat(),
        end=(start + timedelta(hours=1)).astimezone(UTC).isoformat(),
    )
    wait_for(lambda: entry_for(onex_sandbox, start, divert=False), 60, message="the Frånvaro")

    page = browser_page
    open_pane(
        page,
        world,
        {
            "mode": "ews",
            "sandbox": ews.url,
            "mailbox": ANNA,
            "itemId": created["item_id"],
            "start": start.astimezone(UTC).isoformat(),
            "end": (start + timedelta(hours=1)).astimezone(UTC).isoformat(),
            "addinId": settings.MS_ADDIN_ID,
        },
    )
    preview = page.locator("#preview-text")
    expect(preview).to_contain_text("Frånvaro: Möte")
    anna.refresh_from_db()
    assert anna.addin_identity, "the first open links Outlook to Anna's mailbox"
    assert "mssLink" not in ews.custom_properties(ANNA, created["item_id"])

    page.get_by_label("Hänvisning", exact=True).check()
    page.select_option("#reason", "LUNCH")
    expect(preview).to_contain_text("Hänvisning: Lunch")
    page.click("#save-choice")
    expect(page.locator("#status")).to_contain_text("Sparat")
    camera("on-prem-choice-saved")
    wait_for(
        lambda: entry_for(onex_sandbox, start, divert=True, reasonCode="LUNCH"),
        60,
        message="the Hänvisning Lunch in One X, through a push",
    )
