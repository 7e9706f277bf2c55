"""Synkregler and deleting in Debian's chromium, in Swedish: an unreachable rule is flagged, an
overnight Hänvisning diverts a 22:00 booking in the preview with the changed row marked, the
new-rule form waits for a first change, unsaved edits ask before they are lost, Enter on a
delete confirmation does not delete, and Ångra brings a deleted rule back.

Each test signs in as Anna through the Telenor ID sandbox and starts from a connected Exchange
Online integration made in the database, as tests/test_browser.py's journey ends up: a
Microsoft 365 sandbox tenant of its own with Anna's mailbox, Anna added as a user.
"""

import re
from datetime import UTC, timedelta

import pytest
from django.db import connections
from django.utils import timezone
from playwright.sync_api import expect

from calendarsync.models import Integration, SyncRule
from onex.models import AbsenceReason
from tests.browser_support import ANNA, connected_integration, telenor_id_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
RULE_FIELDS = [
    "show_as",
    "all_day",
    "weekdays",
    "time_from",
    "time_to",
    "min_duration_minutes",
    "categories",
    "subject_keywords",
    "action",
    "reason_id",
    "open_diversion",
]


def graph_time(moment):
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def tomorrow_at(hour):
    local = timezone.localtime() + timedelta(days=1)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0)


@pytest.fixture
def rules_setup(world, m365, company):
    """A connected integration whose only user is Anna, with an empty calendar of her own."""
    integration, tenant, _anna = connected_integration(m365, company, "Regler AB")
    reasons = {r.code: r for r in AbsenceReason.objects.filter(company=company)}
    return world, tenant, integration, reasons


def booking(m365, tenant, start, subject="Möte", show_as="busy"):
    return m365.create_event(
        ANNA,
        tenant,
        subject=subject,
        start=graph_time(start),
        end=graph_time(start + timedelta(hours=1)),
        showAs=show_as,
    )


def busy_rule(integration, reasons, position=1, **fields):
    values = {"show_as": ["busy"], "action": "info", "reason": reasons["MOTE"]}
    values.update(fields)
    return SyncRule.objects.create(integration=integration, position=position, **values)


def open_rules(page, base, integration, preview_user=None):
    page.goto(f"{base}/")
    telenor_id_sign_in(page, ANNA)
    expect(page.locator("#add-provider")).to_be_visible()
    page.goto(f"{base}/microsoft-sync/{integration.code}/rules/")
    if preview_user:
        page.fill("#preview-user", preview_user)
        page.click("#show-preview")
        expect(page.locator("#preview table")).to_be_visible()


def fields(rule):
    return {name: getattr(rule, name) for name in RULE_FIELDS}


def test_an_unreachable_rule_is_flagged(rules_setup, browser_page, camera, m365):
    base, tenant, integration, reasons = rules_setup
    page, shoot = browser_page, camera
    try:
        booking(m365, tenant, tomorrow_at(10))
        busy_rule(integration, reasons)
        open_rules(page, base, integration, preview_user=ANNA)

        # A new rule: nothing typed yet, so nothing is wrong yet.
        page.click("#add-rule")
        expect(page.locator("#rule-form")).to_be_visible()
        page.wait_for_timeout(800)  # longer than the form's change delay
        expect(page.locator("#preview")).not_to_contain_text("Den osparade regeln har fel")
        expect(page.locator("#rule-form .errorlist")).to_have_count(0)
        shoot("new-rule-untouched")

        # Upptagen → Hänvisning below "Upptagen → Frånvaro: Möte": never reached.
        page.check("input[name=show_as][value=busy]")
        page.select_option("#id_action", "divert")
        page.select_option("#id_reason", label="Möte")
        warning = "Regel 2 nås aldrig – regel 1 fångar redan Upptagen"
        expect(page.locator("#preview .never-reached")).to_have_text(re.compile(warning))
        expect(page.locator("#preview-changed")).to_have_attribute("data-changed", "0")
        shoot("preview-never-reached")

        page.click("#save-rule")
        expect(page.locator("#rule-list li")).to_have_count(2)
        expect(page.locator("#never-reached-2")).to_contain_text(warning)
        expect(page.locator("#never-reached-1")).to_have_count(0)
        shoot("rule-never-reached")
        page.set_viewport_size(PHONE)
        expect(page.locator("#never-reached-2")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shoot("rule-never-reached-phone")
    finally:
        connections.close_all()


def test_an_overnight_rule_diverts_a_22_booking_in_the_preview(
    rules_setup, browser_page, camera, m365
):
    base, tenant, integration, reasons = rules_setup
    page, shoot = browser_page, camera
    try:
        booking(m365, tenant, tomorrow_at(12), subject="Lunchmöte")
        booking(m365, tenant, tomorrow_at(22), subject="Kvällsjour")
        open_rules(page, base, integration, preview_user=ANNA)
        expect(page.locator("#preview tbody tr")).to_have_count(2)

        page.click("#add-rule")
        page.check("input[name=show_as][value=busy]")
        page.fill("#id_time_from", "18:00")
        page.fill("#id_time_to", "07:00")
        page.select_option("#id_action", "divert")
        page.select_option("#id_reason", label="Möte")
        changed = page.locator("#preview tbody tr.row-changed")
        expect(changed).to_have_count(1)
        expect(changed).to_contain_text("22:00")
        expect(changed.locator(".changed-mark")).to_have_text("ändrad")
        expect(changed.locator("td.preview-edited .entry.divert")).to_be_visible()
        expect(changed.locator("td.preview-edited")).to_contain_text("Hänvisning: Möte")
        noon = page.locator("#preview tbody tr", has_text="12:00")
        expect(noon).not_to_have_class(re.compile("row-changed"))
        expect(noon.locator("td.preview-edited .entry.divert")).to_have_count(0)
        expect(page.locator("#preview-changed")).to_have_attribute("data-changed", "1")
        shoot("preview-overnight")
        page.set_viewport_size(PHONE)
        shoot("preview-overnight-phone")
        page.set_viewport_size(DESKTOP)

        page.click("#save-rule")
        expect(page.locator("#rule-list .rule-text")).to_have_text(
            ["Upptagen, 18–07 (över natten) → Hänvisning: Möte"]
        )
        rule = integration.rules.get()
        assert (rule.time_from.hour, rule.time_to.hour, rule.action) == (18, 7, "divert")
        shoot("rule-overnight-saved")
    finally:
        connections.close_all()


def test_leaving_with_unsaved_edits_asks_first(rules_setup, browser_page, camera):
    base, _, integration, reasons = rules_setup
    page, shoot = browser_page, camera
    try:
        rule = busy_rule(integration, reasons)
        open_rules(page, base, integration)
        rules_url = page.url
        page.locator("#rule-list li").first.locator("a.button").click()
        expect(page.locator("#rule-form")).to_be_visible()
        page.check("input[name=show_as][value=oof]")  # a real click: the page has a gesture

        dialogs = []

        def answer(accept):
            def handle(dialog):
                dialogs.append((dialog.type, dialog.message))
                dialog.accept() if accept else dialog.dismiss()

            return handle

        # Another tab: the browser's own leave-the-page dialog; staying keeps the edit.
        page.once("dialog", answer(False))
        page.click("#tab-users")
        page.wait_for_timeout(500)
        assert [kind for kind, _ in dialogs] == ["beforeunload"]
        assert page.url == rules_url
        expect(page.locator("input[name=show_as][value=oof]")).to_be_checked()

        # In place (HTMX would swap the editor): confirm(), then Cancel keeps the edit.
        page.once("dialog", answer(False))
        page.click("#add-rule")
        page.wait_for_timeout(500)
        assert dialogs[-1] == (
            "confirm",
            "Regeln har ändringar som inte är sparade. Vill du lämna utan att spara dem?",
        )
        expect(page.locator("#rule-form input[name=editing]")).to_have_value(str(rule.pk))
        expect(page.locator("input[name=show_as][value=oof]")).to_be_checked()
        shoot("unsaved-kept")

        # OK lets it go: the new rule form replaces the edit, and an untouched form asks nothing.
        page.once("dialog", answer(True))
        page.click("#add-rule")
        expect(page.locator("#rule-form input[name=editing]")).to_have_value("new")
        assert len(dialogs) == 3
        page.click("#tab-users")
        expect(page.locator("#tab-users")).to_have_attribute("aria-current", "page")
        assert len(dialogs) == 3
        rule.refresh_from_db()
        assert rule.show_as == ["busy"]  # nothing was saved along the way
    finally:
        connections.close_all()


def test_enter_on_a_delete_confirmation_does_not_delete(rules_setup, browser_page, camera):
    base, _, integration, reasons = rules_setup
    page, shoot = browser_page, camera
    try:
        busy_rule(integration, reasons)
        busy_rule(integration, reasons, position=2, show_as=["oof"], reason=reasons["LUNCH"])
        open_rules(page, base, integration)

        # In place (HTMX): Cancel has the focus; Enter brings the list back, nothing deleted.
        page.locator("#rule-list li").nth(1).locator("button.danger").click()
        expect(page.locator("#delete-rule-confirm")).to_contain_text("Ta bort regel 2?")
        expect(page.locator("#cancel-delete-rule")).to_be_focused()
        shoot("rule-delete-in-place")
        page.keyboard.press("Enter")
        expect(page.locator("#delete-rule-confirm")).to_have_count(0)
        expect(page.locator("#rule-list li")).to_have_count(2)
        assert integration.rules.count() == 2

        # The confirmation page (what a browser without JavaScript gets), the same way.
        second = integration.rules.get(position=2)
        page.goto(f"{base}/microsoft-sync/{integration.code}/rules/{second.pk}/delete/")
        expect(page.locator("#cancel-delete-rule")).to_be_focused()
        expect(page.locator("#confirm-delete-rule")).not_to_be_focused()
        shoot("rule-delete-page")
        page.set_viewport_size(PHONE)
        shoot("rule-delete-page-phone")
        page.set_viewport_size(DESKTOP)
        page.keyboard.press("Enter")
        expect(page.locator("#rule-list li")).to_have_count(2)
        assert integration.rules.count() == 2

        # Removing a user and an integration: Cancel has the focus there too.
        anna = integration.users.get()
        page.goto(f"{base}/microsoft-sync/{integration.code}/users/{anna.pk}/remove/")
        expect(page.locator("#cancel-remove")).to_be_focused()
        shoot("user-remove-confirm")
        page.keyboard.press("Enter")
        expect(page.locator("#tab-users")).to_have_attribute("aria-current", "page")
        assert integration.users.filter(pk=anna.pk).exists()
        page.goto(f"{base}/microsoft-sync/{integration.code}/remove/")
        expect(page.locator("#cancel-remove-integration")).to_be_focused()
        shoot("integration-remove-confirm")
        page.keyboard.press("Enter")
        expect(page.locator("#tab-settings")).to_have_attribute("aria-current", "page")
        integration.refresh_from_db()
        assert integration.status == Integration.Status.CONNECTED
    finally:
        connections.close_all()


def test_undo_restores_a_deleted_rule(rules_setup, browser_page, camera):
    base, _, integration, reasons = rules_setup
    page, shoot = browser_page, camera
    try:
        busy_rule(integration, reasons, weekdays=[0, 1, 2, 3, 4])
        middle = busy_rule(
            integration,
            reasons,
            position=2,
            show_as=["tentative"],
            time_from=tomorrow_at(18).time(),
            time_to=tomorrow_at(7).time(),
            categories=["Jour"],
            action="divert",
            reason=reasons["LUNCH"],
        )
        busy_rule(integration, reasons, position=3, show_as=["oof"])
        before = fields(middle)
        open_rules(page, base, integration)
        texts = page.locator("#rule-list .rule-text").all_inner_texts()

        page.locator("#rule-list li").nth(1).locator("button.danger").click()
        page.click("#confirm-delete-rule")
        expect(page.locator("#rule-list li")).to_have_count(2)
        notice = page.locator("#undo-1")
        expect(notice).to_contain_text(f"Regel 2 är borttagen: {texts[1]}")
        expect(notice).to_be_focused()
        assert not integration.rules.filter(pk=middle.pk).exists()
        shoot("rule-deleted-undo")
        page.set_viewport_size(PHONE)
        shoot("rule-deleted-undo-phone")
        page.set_viewport_size(DESKTOP)

        notice.get_by_role("button", name="Ångra: återställ regel 2").click()
        expect(page.locator("#undo-1")).to_have_count(0)
        expect(page.locator("#rule-list .rule-text")).to_have_text(texts)
        restored = integration.rules.get(position=2)
        assert fields(restored) == before
        shoot("rule-restored")
    finally:
        connections.close_all()
