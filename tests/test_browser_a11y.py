"""Accessibility, measured: axe-core on every page and HTMX fragment state, in Swedish and
English, at 1280 px and 390 px, finds no serious or critical violation. On the way: stacked
table rows name their columns on a phone, focus rings are not clipped, the language switch
waits for its button, a cancelled consent says so in one line, and the consent page names
the app as the product does. Every state is photographed (test-artifacts/browser/)."""

import re

import pytest
from django.conf import settings
from django.db import connections
from playwright.sync_api import expect

from calendarsync.models import Integration, SyncedUser
from tests.browser_support import ANNA, BJORN, axe_violations, telenor_id_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LANGUAGES = ("sv", "en")
WIDTHS = {"desktop": 1280, "phone": 390}
COMBOS = [(language, width) for language in LANGUAGES for width in WIDTHS]


class Audit:
    """Runs axe on the page as it is, photographs it, and keeps every finding for one report."""

    def __init__(self, page, camera):
        self.page, self.camera = page, camera
        self.findings, self.checked = [], []
        self.language, self.width = "sv", "desktop"

    def __call__(self, state):
        label = f"{self.language}-{self.width}-{state}"
        self.page.wait_for_load_state("networkidle")
        for violation in axe_violations(self.page):
            targets = "; ".join(node["target"] for node in violation["nodes"][:5])
            self.findings.append(
                f"{label}: {violation['id']} ({violation['impact']}) {violation['help']}: {targets}"
            )
        self.camera(label)
        self.checked.append(label)

    def set_up(self, language, width):
        """The viewport, and the language through the header's form and its button."""
        self.language, self.width = language, width
        self.page.set_viewport_size({"width": WIDTHS[width], "height": 900})
        if self.page.locator("html").get_attribute("lang") != language:
            self.page.select_option("#language-select", language)
            self.page.click("#language-submit")
            expect(self.page.locator("html")).to_have_attribute("lang", language)

    def each(self, go, *states):
        """For every language and width: `go()` to the page, then check each state's steps."""
        for language, width in COMBOS:
            self.set_up(language, width)
            go()
            for name, step in states:
                step()
                self(name)


def test_every_page_and_fragment_has_no_serious_accessibility_violation(
    world, browser_page, camera, m365
):
    try:
        audit_everything(world, browser_page, camera, m365)
    finally:
        connections.close_all()


def audit_everything(base, page, camera, m365):
    audit = Audit(page, camera)

    # Before signing in: the login page. Björn, no admin, gets the no-access page.
    page.goto(f"{base}/")
    audit.each(lambda: page.goto(f"{base}/"), ("login", lambda: None))
    telenor_id_sign_in(page, BJORN)
    expect(page.locator("#no-access-title")).to_be_visible()
    audit.each(lambda: page.goto(f"{base}/microsoft-sync/no-access/"), ("no-access", lambda: None))
    page.click("#main form[action='/logout/'] button")
    expect(page.locator("#telenor-id-login")).to_be_visible()

    # Anna, the admin: Översikt empty, Lägg till leverantör, the Exchange On Prem form.
    telenor_id_sign_in(page, ANNA)
    expect(page.locator("#add-provider")).to_be_visible()
    audit.each(lambda: page.goto(f"{base}/microsoft-sync/"), ("overview-empty", lambda: None))
    audit.each(lambda: page.goto(f"{base}/microsoft-sync/add/"), ("add-provider", lambda: None))

    def ews_errors():
        page.fill("#id_ews_url", "http://mail.demo.se/EWS/Exchange.asmx")
        page.click("#save-ews")
        expect(page.locator("#id_ews_url_error")).to_be_visible()

    audit.each(
        lambda: page.goto(f"{base}/microsoft-sync/add/on-prem/"),
        ("on-prem-form", lambda: None),
        ("on-prem-form-errors", ews_errors),
    )

    # Exchange Online, signed in to Microsoft as Björn (no consenting role): the roles page.
    page.goto(f"{base}/microsoft-sync/add/")
    page.click("#choose-graph")
    page.click("#signin-bjorn-berg")
    expect(page.locator("#roles-title")).to_be_visible()
    graph = Integration.objects.get(kind="graph")
    settings_url = f"{base}/microsoft-sync/{graph.code}/"

    def roles_page():
        page.goto(settings_url)
        page.click("#consent-retry")
        page.click("#signin-bjorn-berg")
        expect(page.locator("#roles-title")).to_be_visible()

    def cancel_consent():
        """On to the consent page anyway, which names the app, and Cancel there."""
        page.locator("#roles-title").locator("xpath=..").locator("a.button").nth(1).click()
        expect(page.locator("#app-name")).to_have_text(settings.MS_APP_DISPLAY_NAME)
        page.click("#cancel")
        expect(page.locator("#consent-pending")).to_be_visible()
        message = page.locator(".messages .message")
        expect(message).to_have_count(1)
        expect(message).to_have_class(re.compile("warning"))
        cancelled = {"sv": "Du avbröt godkännandet i Microsoft 365.", "en": "You cancelled"}
        expect(message).to_contain_text(cancelled[audit.language])
        assert "AADSTS" not in page.locator("#main").inner_text()
        expect(page.locator("#consent-retry")).to_be_visible()

    audit.each(
        roles_page,
        ("consent-roles", lambda: None),
        ("consent-cancelled", cancel_consent),
    )

    # Anna consents: connected. Two users are added (Celery eager syncs them).
    page.click("#consent-retry")
    page.click("#signin-anna-andersson")
    page.click("#accept")
    expect(page.locator("#integration-status")).to_have_class(re.compile("badge-connected"))
    page.goto(f"{base}/microsoft-sync/{graph.code}/users/")
    for email in (ANNA, BJORN):
        page.fill("#id_email", email)
        page.click("#add-user")
        expect(page.locator("#user-list")).to_contain_text(email)
    bjorn = SyncedUser.objects.get(email=BJORN)

    # Inställningar, and its HTMX answer to an out-of-range number of days.
    def days_error():
        page.fill("#id_days_ahead", "0")
        page.click("#save-settings")
        message = {"sv": "Ange 1–60 dagar.", "en": "Enter 1–60 days."}[audit.language]
        expect(page.locator("#id_days_ahead_error")).to_have_text(message)
        expect(page.locator("#tab-settings")).to_be_visible()

    audit.each(
        lambda: page.goto(settings_url),
        ("settings", lambda: None),
        ("settings-days-error", days_error),
    )

    # Synkregler: the default template; then rules, an open rule form, the preview, a delete.
    rules_url = f"{base}/microsoft-sync/{graph.code}/rules/"
    audit.each(lambda: page.goto(rules_url), ("rules-default-template", lambda: None))
    page.click("#start-from-template")
    expect(page.locator("#rule-list li")).to_have_count(2)
    rule = graph.rules.order_by("position").first()

    def open_rule_form():
        page.click("#add-rule")
        expect(page.locator("#rule-form")).to_be_visible()

    def preview():
        page.fill("#preview-user", ANNA)
        page.click("#show-preview")
        expect(page.locator("#preview table")).to_be_visible()

    audit.each(
        lambda: page.goto(rules_url),
        ("rules", lambda: None),
        ("rules-preview", preview),
        ("rules-rule-form-and-preview", open_rule_form),
    )
    audit.each(
        lambda: page.goto(f"{rules_url}{rule.pk}/delete/"), ("rule-delete-confirm", lambda: None)
    )

    def delete_in_place():
        page.locator("#rule-list li").nth(1).locator("button.danger").click()
        expect(page.locator("#delete-rule-confirm")).to_be_visible()

    def deleted_with_undo():
        page.click("#confirm-delete-rule")
        expect(page.locator("#rule-list li")).to_have_count(1)
        expect(page.locator("[id^=undo-]")).to_be_visible()

    def undone():
        page.locator("[id^=undo-] button").click()
        expect(page.locator("#rule-list li")).to_have_count(2)

    audit.each(
        lambda: page.goto(rules_url),
        ("rule-delete-in-place", delete_in_place),
        ("rule-deleted-undo", deleted_with_undo),
        ("rule-restored", undone),
    )

    # Användare: the list, the import page and its report, a removal's confirmation.
    users_url = f"{base}/microsoft-sync/{graph.code}/users/"

    def import_report():
        csv_lines = f"email\n{BJORN}\ninte-en-adress\nokand@demo.se\n".encode()
        page.set_input_files(
            "#id_file", files=[{"name": "users.csv", "mimeType": "text/csv", "buffer": csv_lines}]
        )
        page.click("#run-import")
        expect(page.locator("#import-report tr.failed")).to_have_count(3)

    audit.each(lambda: page.goto(users_url), ("users", lambda: None))
    audit.each(
        lambda: page.goto(f"{users_url}import/"),
        ("users-import", lambda: None),
        ("users-import-report", import_report),
    )
    audit.each(
        lambda: page.goto(f"{users_url}{bjorn.pk}/remove/"), ("user-remove-confirm", lambda: None)
    )

    # Instrumentpanel, with Anna's timeline.
    def timeline():
        page.fill("#timeline-user", ANNA)
        page.click("#show-timeline")
        expect(page.locator("#timeline-legend")).to_be_visible()

    audit.each(
        lambda: page.goto(f"{base}/microsoft-sync/{graph.code}/dashboard/"),
        ("dashboard", lambda: None),
        ("dashboard-timeline", timeline),
    )
    audit.each(
        lambda: page.goto(f"{settings_url}remove/"), ("integration-remove-confirm", lambda: None)
    )

    # Outlook-tillägg: Exchange Online's steps open; On Prem's unfolded from the keyboard.
    def unfold_on_prem():
        page.focus("#deploy-ews summary")
        page.keyboard.press("Enter")
        expect(page.locator("#deploy-ews")).to_have_attribute("open", "")

    audit.each(
        lambda: page.goto(f"{base}/microsoft-sync/{graph.code}/addin/"),
        ("addin", lambda: None),
        ("addin-on-prem-unfolded", unfold_on_prem),
    )

    # An Exchange On Prem integration's pages, and Översikt with both integrations.
    audit.set_up("sv", "desktop")
    page.goto(f"{base}/microsoft-sync/add/on-prem/")
    page.fill("#id_ews_url", "https://mail.demo.se/EWS/Exchange.asmx")
    page.fill("#id_ews_username", "telenor_mss_user")
    page.fill("#id_ews_password", "Hemligt-Lösen-42")
    page.click("#save-ews")
    expect(page.locator("#integration-status")).to_be_visible()
    ews = Integration.objects.get(kind="ews")
    audit.each(
        lambda: page.goto(f"{base}/microsoft-sync/{ews.code}/"), ("on-prem-settings", lambda: None)
    )
    audit.each(
        lambda: page.goto(f"{base}/microsoft-sync/{ews.code}/connection/"),
        ("on-prem-connection", lambda: None),
    )
    audit.each(
        lambda: page.goto(f"{base}/microsoft-sync/{ews.code}/addin/"),
        ("on-prem-addin", lambda: None),
    )
    audit.each(lambda: page.goto(f"{base}/microsoft-sync/"), ("overview", lambda: None))

    assert len(audit.checked) >= 25 * len(COMBOS)
    assert not audit.findings, "\n".join(audit.findings)


BEFORE = "cells => cells.map(c => getComputedStyle(c, '::before').content)"


def test_stacked_rows_name_their_columns_on_a_phone(world, browser_page, camera, company):
    page = browser_page
    try:
        page.goto(f"{world}/")
        telenor_id_sign_in(page, ANNA)
        expect(page.locator("#add-provider")).to_be_visible()
        Integration.objects.create(company=company, kind="ews", name="Kontoret", status="connected")
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{world}/microsoft-sync/")
        row = page.locator("#integrations tbody tr").first
        expect(page.locator("#integrations thead")).to_be_hidden()
        labels = row.locator("td").evaluate_all(BEFORE)
        columns = ["Namn", "Typ", "Aktiv", "Status", "Användare", "Senaste synk"]
        assert labels == [f'"{column}: "' for column in columns]
        camera("phone-overview-labels")
        # On a desktop the header row names the columns; the cells add nothing.
        page.set_viewport_size({"width": 1280, "height": 900})
        expect(page.locator("#integrations thead")).to_be_visible()
        assert set(row.locator("td").evaluate_all(BEFORE)) <= {"none", "normal"}
    finally:
        connections.close_all()


def test_the_focus_ring_of_a_tab_is_not_clipped(world, browser_page, camera, company):
    page = browser_page
    try:
        page.goto(f"{world}/")
        telenor_id_sign_in(page, ANNA)
        expect(page.locator("#add-provider")).to_be_visible()
        integration = Integration.objects.create(
            company=company, kind="graph", name="Kontoret", status="connected"
        )
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(f"{world}/microsoft-sync/{integration.code}/")
            page.focus("#tab-settings")
            page.keyboard.press("Tab")
            expect(page.locator("#tab-rules")).to_be_focused()
            clipped = page.evaluate(CLIPPED_RING)
            assert clipped == [], clipped
            camera(f"tab-focus-{width}")
    finally:
        connections.close_all()


# Which ancestors of the focused element cut off part of its outline (its box grown by
# outline-width + outline-offset), and whether the outline shows at all.
CLIPPED_RING = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  if (!el.matches(':focus-visible') || style.outlineStyle === 'none') return ['no outline'];
  const grow = parseFloat(style.outlineWidth) + parseFloat(style.outlineOffset);
  const r = el.getBoundingClientRect();
  const ring = {left: r.left - grow, right: r.right + grow,
                top: r.top - grow, bottom: r.bottom + grow};
  const cuts = [];
  for (let a = el.parentElement; a; a = a.parentElement) {
    const s = getComputedStyle(a);
    if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;
    const b = a.getBoundingClientRect();
    if (ring.left < b.left || ring.right > b.right || ring.top < b.top || ring.bottom > b.bottom)
      cuts.push(a.tagName + '.' + a.className);
  }
  return cuts;
}"""


def test_arrow_keys_on_the_language_menu_do_not_switch_the_language(world, browser_page, camera):
    page = browser_page
    try:
        page.goto(f"{world}/")
        expect(page.locator("html")).to_have_attribute("lang", "sv")
        expect(page.locator("#language-submit")).to_be_visible()
        page.focus("#language-select")
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(500)
        assert page.input_value("#language-select") == "en"  # the choice moved …
        expect(page.locator("html")).to_have_attribute("lang", "sv")  # … nothing switched
        camera("language-chosen-not-switched")
        page.click("#language-submit")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("#language-submit")).to_have_text("Change language")
        camera("language-switched")
    finally:
        connections.close_all()
