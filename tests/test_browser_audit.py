"""The activity log as an audit trail, in Debian's chromium: Anna changes Antal dagar on
Inställningar, and Instrumentpanel's log names her and shows "antal dagar 14 → 20" in Swedish;
after switching the language the same entry reads in English. The log's filter works with
HTMX (the list swaps in place, the address follows) and without JavaScript.
"""

import pytest
from django.db import connections
from playwright.sync_api import expect

from calendarsync import actors
from calendarsync.models import Activity
from tests.browser_support import ANNA, connected_integration, telenor_id_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def audit_setup(world, m365, company):
    """A connected integration whose only user is Anna (as tests/test_browser.py ends up)."""
    integration, _tenant, anna = connected_integration(m365, company, "Logg AB")
    return world, integration, anna


def test_the_log_names_anna_and_what_she_changed_in_both_languages(
    audit_setup, browser_page, camera
):
    base, integration, _anna = audit_setup
    page, shoot = browser_page, camera
    try:
        page.goto(f"{base}/")
        telenor_id_sign_in(page, ANNA)
        expect(page.locator("#add-provider")).to_be_visible()
        page.goto(f"{base}/microsoft-sync/{integration.code}/")
        page.fill("#id_days_ahead", "20")
        page.click("#save-settings")
        expect(page.locator("#id_days_ahead")).to_have_value("20")
        page.wait_for_load_state("networkidle")
        entry = Activity.objects.get(event="settings_changed")
        assert (entry.actor_kind, entry.actor_label) == ("admin", ANNA)

        page.click("#tab-dashboard")
        # The resync that the change set off logs its own (newer) entries, by the system.
        first = page.locator("#activity-log li", has_text="antal dagar 14 → 20")
        expect(first).to_have_count(1)
        expect(first).to_contain_text(f"{ANNA}: Ändrade inställningarna.")
        shoot("log-swedish")
        page.locator("#activity").scroll_into_view_if_needed()
        page.set_viewport_size(PHONE)
        expect(first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shoot("log-swedish-phone")
        page.set_viewport_size(DESKTOP)

        page.select_option("#language-select", "en")
        page.click("#language-submit")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        first = page.locator("#activity-log li", has_text="number of days 14 → 20")
        expect(first).to_have_count(1)
        expect(first).to_contain_text(f"{ANNA}: Changed the settings.")
        expect(page.locator("#activity-log")).not_to_contain_text("antal dagar")
        shoot("log-english")
    finally:
        connections.close_all()


def test_the_log_filters_by_user_and_kind_with_and_without_javascript(
    audit_setup, browser_page, camera
):
    base, integration, anna = audit_setup
    page, shoot = browser_page, camera
    try:
        Activity.record(
            integration, "synced", actor=actors.SYSTEM, params={"written": 2}, synced_user=anna
        )
        Activity.record(
            integration,
            "settings_changed",
            actor=actors.SYSTEM,
            subject=Activity.Subject.SETTING,
            changes=[{"field": "plugin_enabled", "before": True, "after": False}],
        )
        page.goto(f"{base}/")
        telenor_id_sign_in(page, ANNA)
        expect(page.locator("#add-provider")).to_be_visible()
        page.goto(f"{base}/microsoft-sync/{integration.code}/dashboard/")
        items = page.locator("#activity-log li")
        expect(items).to_have_count(2)

        # HTMX: choosing a kind swaps the list in place and the address follows.
        page.select_option("#log-kind", "settings")
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text("plugin aktiverad på → av")
        expect(page).to_have_url(
            f"{base}/microsoft-sync/{integration.code}/dashboard/?log_kind=settings"
        )
        expect(page.locator("#tab-dashboard")).to_be_visible()  # the page stayed whole
        shoot("filter-kind")

        page.select_option("#log-kind", "")
        page.fill("#log-user", ANNA)
        page.click("#log-filter")
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text("2 frånvaroposter skrivna")
        shoot("filter-user")
    finally:
        connections.close_all()


def test_the_log_filter_works_without_javascript(audit_setup, browser_page, camera):
    """Every script blocked: the filter is a plain GET of the whole dashboard."""
    base, integration, anna = audit_setup
    page, shoot = browser_page, camera
    try:
        Activity.record(
            integration, "synced", actor=actors.SYSTEM, params={"written": 2}, synced_user=anna
        )
        Activity.record(integration, "recovered", actor=actors.SYSTEM)
        page.route("**/*.js", lambda route: route.abort())
        page.goto(f"{base}/")
        telenor_id_sign_in(page, ANNA)
        expect(page.locator("#add-provider")).to_be_visible()
        page.goto(f"{base}/microsoft-sync/{integration.code}/dashboard/")
        assert page.evaluate("typeof window.htmx") == "undefined"
        items = page.locator("#activity-log li")
        expect(items).to_have_count(2)
        page.select_option("#log-kind", "sync")
        page.fill("#log-user", ANNA)
        page.click("#log-filter")
        expect(page).to_have_url(
            f"{base}/microsoft-sync/{integration.code}/dashboard/"
            f"?log_user=anna.andersson%40demo.se&log_kind=sync#activity"
        )
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text("2 frånvaroposter skrivna")
        expect(items.first).to_contain_text("systemet")
        expect(page.locator("#log-kind")).to_have_value("sync")
        shoot("filter-without-javascript")
    finally:
        connections.close_all()
