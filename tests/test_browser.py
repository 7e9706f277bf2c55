"""A newcomer's first hour, in Debian's chromium: sign in with Telenor ID (its sandbox), connect
Exchange Online by signing in to the Microsoft 365 sandbox and consenting there, add users,
change a rule and watch the preview change, open the dashboard, see the One X sandbox's
directory change, and sign out of both. A non-admin who signs in gets the no-access page. Every
page is photographed into test-artifacts/browser/."""

import re

import pytest
from django.db import connections
from playwright.sync_api import expect

from calendarsync.models import Integration, SyncedUser
from tests.browser_support import ANNA, BJORN, telenor_id_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def directory_row(page, onex_url, name):
    page.goto(f"{onex_url}/?company=demo-ab")
    return page.locator("tr", has_text=name).first.inner_text()


def test_it_takes_a_newcomer_from_login_to_one_x(world, browser_page, camera, m365, onex_sandbox):
    try:
        newcomer_journey(world, browser_page, camera, m365, onex_sandbox)
    finally:
        # Under Playwright's loop the test's own ORM calls get a connection of their own
        # context, which pytest-django does not see: close it, or PostgreSQL cannot drop the
        # test database at the end of the run.
        connections.close_all()


def newcomer_journey(world, browser_page, camera, m365, onex_sandbox):
    page, shoot, base = browser_page, camera, world

    # Log in with Telenor ID, as Demo AB's One X administrator.
    page.goto(f"{base}/")
    expect(page.locator("#telenor-id-login")).to_be_visible()
    shoot("login")
    telenor_id_sign_in(page, ANNA, shoot)

    # Översikt, empty, with "Lägg till leverantör".
    expect(page.locator("#add-provider")).to_be_visible()
    shoot("overview-empty")
    page.click("#add-provider")

    # Lägg till leverantör → Exchange Online → Microsoft's (sandbox) sign-in, which proves
    # the tenant → that tenant's consent page.
    expect(page.locator("#choose-graph")).to_be_visible()
    shoot("add-provider")
    page.click("#choose-graph")
    expect(page.locator("#signin-anna-andersson")).to_be_visible()
    assert page.url.startswith(f"{m365.url}/organizations/oauth2/v2.0/authorize")
    shoot("microsoft-signin")
    page.click("#signin-anna-andersson")
    expect(page.locator("#accept")).to_be_visible()
    assert page.url.startswith(m365.url)
    shoot("microsoft-consent")
    page.click("#accept")

    # Back on the new integration's Inställningar: connected.
    expect(page.locator("#integration-status")).to_have_class(re.compile("badge-connected"))
    integration = Integration.objects.get(company__onex_id="demo-ab")
    assert integration.status == Integration.Status.CONNECTED
    expect(page.locator("#settings-form")).to_be_visible()
    shoot("settings")

    # One X before anyone is synced: Anna is available.
    before = directory_row(page, onex_sandbox.url, "Anna Andersson")
    assert "Tillgänglig" in before
    shoot("onex-directory-before")

    # Användare: an unknown address is refused with a clear error, then two people are added.
    page.goto(f"{base}/microsoft-sync/{integration.code}/users/")
    page.fill("#id_email", "okand@demo.se")
    page.click("#add-user")
    expect(page.locator("#id_email_error")).to_contain_text("okand@demo.se")
    shoot("users-unknown-address")
    for email in (ANNA, BJORN):
        page.fill("#id_email", email)
        page.click("#add-user")
        expect(page.locator("#user-list")).to_contain_text(email)
    assert set(integration.users.values_list("email", flat=True)) == {ANNA, BJORN}
    expect(page.locator("#user-count")).to_contain_text("2")
    shoot("users")

    # The add synced Anna's calendar (Celery eager): her directory row changed.
    after = directory_row(page, onex_sandbox.url, "Anna Andersson")
    assert after != before and "Möte" in after
    shoot("onex-directory-synced")
    assert not any(entry["divert"] for entry in onex_sandbox.absences("demo-ab"))

    # Synkregler: the default template is the starting point.
    page.goto(f"{base}/microsoft-sync/{integration.code}/rules/")
    expect(page.locator("#default-template")).to_be_visible()
    shoot("rules-default-template")
    page.click("#start-from-template")
    expect(page.locator("#rule-list li")).to_have_count(2)

    # The preview for Anna: her coming bookings and the One X entries they become.
    page.fill("#preview-user", ANNA)
    page.click("#show-preview")
    expect(page.locator("#preview table")).to_be_visible()
    saved_only = page.locator("#preview").inner_text()
    shoot("rules-preview")

    # Edit rule 1 (Busy) into a diversion: the preview shows the change beside the saved rules.
    page.locator("#rule-list li").first.locator("a.button").click()
    expect(page.locator("#rule-form")).to_be_visible()
    page.select_option("#id_action", "divert")
    changed = page.locator('#preview-changed:not([data-changed="0"])')
    expect(changed).to_be_visible()
    assert int(changed.get_attribute("data-changed")) > 0
    assert page.locator("#preview").inner_text() != saved_only
    expect(page.locator("#preview td.preview-edited .entry.divert").first).to_be_visible()
    shoot("rules-preview-side-by-side")
    page.click("#save-rule")
    expect(page.locator("#rule-form")).to_have_count(0)
    expect(page.locator("#preview-changed")).to_have_count(0)  # the preview reloaded, saved
    expect(page.locator("#preview td.preview-saved .entry.divert").first).to_be_visible()
    shoot("rules-saved")

    # Saving resynced: Anna (who has Hänvisning) is now diverted in One X.
    diverted = directory_row(page, onex_sandbox.url, "Anna Andersson")
    assert "Hänvisad" in page.content()
    assert any(entry["divert"] for entry in onex_sandbox.absences("demo-ab"))
    assert diverted != after
    shoot("onex-directory-diverted")

    # Instrumentpanel: counts, and Anna's 14-day timeline.
    page.goto(f"{base}/microsoft-sync/{integration.code}/dashboard/")
    expect(page.locator("#count-users")).to_have_text("2")
    assert int(page.locator("#count-upcoming").inner_text()) > 0
    page.fill("#timeline-user", ANNA)
    page.click("#show-timeline")
    expect(page.locator("ol.timeline .bar").first).to_be_visible()
    shoot("dashboard")

    # Remove Björn, after a confirmation: his One X entries go with him.
    bjorn = SyncedUser.objects.get(email=BJORN)
    page.goto(f"{base}/microsoft-sync/{integration.code}/users/{bjorn.pk}/remove/")
    expect(page.locator("#cancel-remove")).to_be_focused()  # Enter must not remove
    shoot("user-remove-confirm")
    page.click("#confirm-remove")
    expect(page.locator("#user-count")).to_contain_text("1")
    assert not SyncedUser.objects.filter(email=BJORN).exists()
    assert all(e["subscriptionId"] != "sub-bjorn" for e in onex_sandbox.absences("demo-ab"))

    # Reorder and delete rules in place (the delete asks first, in place).
    page.goto(f"{base}/microsoft-sync/{integration.code}/rules/")
    rules = page.locator("#rule-list li .rule-text")
    first_rule = rules.nth(0).inner_text()
    page.locator("#rule-list li").nth(1).locator(
        "form", has=page.locator("input[value=up]")
    ).locator("button").click()
    expect(rules.nth(1)).to_have_text(first_rule)
    page.locator("#rule-list li").nth(1).locator("button.danger").click()
    page.click("#confirm-delete-rule")
    expect(page.locator("#rule-list li")).to_have_count(1)
    assert integration.rules.count() == 1

    # The other pages, photographed too: CSV import, Exchange On Prem, overview with the
    # integration, and a phone-sized screen.
    page.goto(f"{base}/microsoft-sync/{integration.code}/users/import/")
    shoot("users-import")
    csv_lines = f"email\n{BJORN}\n{ANNA}\nokand@demo.se\n".encode()
    page.set_input_files(
        "#id_file", files=[{"name": "users.csv", "mimeType": "text/csv", "buffer": csv_lines}]
    )
    page.click("#run-import")
    expect(page.locator("#import-report tr.failed")).to_have_count(2)
    expect(page.locator("#import-report tr.ok")).to_have_count(1)
    shoot("users-import-report")

    page.goto(f"{base}/microsoft-sync/add/on-prem/")
    expect(page.locator("#firewall")).to_be_visible()
    shoot("exchange-on-prem")
    page.fill("#id_ews_url", "http://mail.demo.se/EWS/Exchange.asmx")
    page.fill("#id_ews_username", "telenor_mss_user")
    page.fill("#id_ews_password", "Hemligt-Lösen-42")
    page.click("#save-ews")
    expect(page.locator("#id_ews_url_error")).to_be_visible()
    assert page.input_value("#id_ews_password") == ""  # a password is never sent back
    page.fill("#id_ews_url", "https://mail.demo.se/EWS/Exchange.asmx")
    page.fill("#id_ews_password", "Hemligt-Lösen-42")
    page.click("#save-ews")
    expect(page.locator("#connection-form")).to_be_visible()
    assert Integration.objects.get(kind="ews").ews_password == "Hemligt-Lösen-42"
    assert "Hemligt-Lösen-42" not in page.content()
    shoot("exchange-on-prem-settings")
    page.goto(f"{base}/microsoft-sync/")
    expect(page.locator("#integrations tbody tr")).to_have_count(2)
    shoot("overview")

    page.set_viewport_size({"width": 390, "height": 844})
    for tab in ("rules", "users", "dashboard"):
        page.goto(f"{base}/microsoft-sync/{integration.code}/{tab}/")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{tab} scrolls sideways on a phone ({width}px)"
        shoot(f"phone-{tab}")

    # Keyboard: the first Tab reaches the skip link.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"

    # Log out: back on the login page, and the Telenor ID session has ended too.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.click("header form[action='/logout/'] button")
    expect(page.locator("#telenor-id-login")).to_be_visible()
    shoot("logged-out")
    page.click("#telenor-id-login")
    expect(page.locator("#password")).to_be_visible()  # asks again: no single sign-on left
    assert len(shoot.taken) >= 27


def test_someone_who_is_no_admin_in_one_x_gets_the_no_access_page(world, browser_page, camera):
    page, shoot = browser_page, camera
    try:
        page.goto(f"{world}/")
        telenor_id_sign_in(page, BJORN, shoot)
        expect(page.locator("#no-access-title")).to_be_visible()
        assert page.url.endswith("/microsoft-sync/no-access/")
        assert BJORN in page.content() and "Mitt Företag" in page.content()
        expect(page.locator(".mainnav")).to_be_visible()
        shoot("no-access")
        page.click("#main form[action='/logout/'] button")
        expect(page.locator("#telenor-id-login")).to_be_visible()
    finally:
        connections.close_all()
