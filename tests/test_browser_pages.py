"""The integration's pages in chromium, in Swedish: an HTMX save keeps the page whole with
"Sparat" (Inställningar and Exchange On Prem's Anslutning), a newly added user turns
"synkroniserad" without a reload, and the timeline follows Antal dagar with a legend entry for
every symbol it draws. Screenshots at 1280 px and 390 px go to test-artifacts/browser/."""

import itertools
from datetime import datetime, time, timedelta

import pytest
from django.db import connections
from django.utils import timezone
from playwright.sync_api import expect

from calendarsync import providers, sync, tasks
from calendarsync.models import Booking, Integration, SyncedUser
from calendarsync.providers.memory import InMemoryCalendar
from tests.browser_support import ANNA, telenor_id_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
_ids = itertools.count(1)


def _connected(company, **fields):
    return Integration.objects.create(
        company=company, kind="graph", name="Exchange Online", status="connected", **fields
    )


def _on_prem(company):
    return Integration.objects.create(
        company=company,
        kind="ews",
        name="Exchange Lokalt",
        status="unverified",
        ews_url="https://mail.demo.se/EWS/Exchange.asmx",
        ews_username="telenor_mss_user",
        ews_password="Hemligt-Lösen-42",
    )


def _sign_in(page, base, shoot=None):
    page.goto(f"{base}/")
    telenor_id_sign_in(page, ANNA, shoot)
    expect(page.locator("#add-provider")).to_be_visible()


def _mark_page(page):
    """A flag in this document: still there afterwards means no reload happened."""
    page.evaluate("window.__noReload = true")


def _not_reloaded(page):
    return page.evaluate("window.__noReload === true")


def _no_sideways_scroll(page):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} scrolls sideways ({width}px)"


def _expect_whole_page(page, tab):
    expect(page.locator(".page-head h1")).to_be_visible()
    expect(page.locator("nav.tabs")).to_be_visible()
    expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-current", "page")
    expect(page.locator(".messages .message.success")).to_contain_text("Sparat")
    expect(page.locator(".messages")).to_be_focused()  # read out, and in view on a phone


def test_an_htmx_settings_save_keeps_the_page_whole_and_the_timeline_follows_it(
    world, browser_page, camera, company, monkeypatch
):
    page, shoot, base = browser_page, camera, world
    # The save resyncs Anna: her calendar is an in-memory one (this integration has no tenant).
    calendar = InMemoryCalendar(mailboxes={ANNA: []})
    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    try:
        integration = _connected(company)
        anna = SyncedUser.objects.create(
            integration=integration,
            subscription=company.subscriptions.get(email=ANNA),
            email=ANNA,
            state="ok",
        )
        _sign_in(page, base)
        page.goto(f"{base}/microsoft-sync/{integration.code}/")
        expect(page.locator("#settings-form")).to_be_visible()
        _mark_page(page)
        page.fill("#id_days_ahead", "7")
        page.click("#save-settings")
        _expect_whole_page(page, "settings")
        expect(page.locator("#settings-form")).to_be_visible()
        assert _not_reloaded(page), "the save reloaded the page instead of using HTMX"
        assert page.locator(".messages").count() == 1
        integration.refresh_from_db()
        assert integration.days_ahead == 7
        assert integration.status == Integration.Status.CONNECTED
        shoot("settings-saved")
        page.set_viewport_size(PHONE)
        _no_sideways_scroll(page)
        shoot("phone-settings-saved")
        page.set_viewport_size(DESKTOP)

        # The message was shown once: the next page has none.
        page.click("#tab-users")
        expect(page.locator("#user-list")).to_be_visible()
        expect(page.locator(".messages")).to_have_count(0)

        # The timeline: 7 days (Antal dagar), an hour axis, "now", and a legend entry for
        # every symbol drawn.
        today = timezone.localdate()
        for days, hour, forwarding, open_diversion in [
            (0, 9, "info", False),
            (1, 12, "divert", False),
            (2, 15, "divert", True),
            (9, 9, "info", False),  # beyond Antal dagar: not drawn
        ]:
            start = timezone.make_aware(datetime.combine(today + timedelta(days=days), time(hour)))
            n = next(_ids)
            Booking.objects.create(
                synced_user=anna,
                external_id=f"mss-{n}",
                provider_item_id=f"item-{n}",
                start=start,
                end=start + timedelta(hours=2),
                forwarding=forwarding,
                open_diversion=open_diversion,
                reason_code="MOTE",
                return_at=start + timedelta(hours=2),
                fingerprint="x",
                pushed_at=timezone.now(),
            )
        page.click("#tab-dashboard")
        expect(page.locator("#timeline-title")).to_have_text("Tidslinje, 7 dagar")
        page.fill("#timeline-user", ANNA)
        page.click("#show-timeline")
        expect(page.locator("ol.timeline > li")).to_have_count(7)
        expect(page.locator("#timeline-body .tick")).to_have_count(8)
        expect(page.locator("#timeline-body .track .now")).to_have_count(1)
        drawn = page.evaluate(
            """() => [...new Set([...document.querySelectorAll('#timeline-body [data-symbol]')]
                 .filter((el) => !el.closest('#timeline-legend'))
                 .map((el) => el.dataset.symbol))]"""
        )
        assert sorted(drawn) == ["divert", "divert-mark", "info", "now", "open"]
        for symbol in drawn:
            expect(page.locator(f'#timeline-legend [data-symbol="{symbol}"]')).to_be_visible()
        expect(page.locator("#timeline-legend")).to_contain_text("↪")
        expect(page.locator("#timeline-legend")).to_contain_text("Hänvisning")
        page.locator("#timeline").scroll_into_view_if_needed()
        shoot("dashboard-timeline")
        page.set_viewport_size(PHONE)
        _no_sideways_scroll(page)
        shoot("phone-dashboard-timeline")
    finally:
        connections.close_all()


def test_the_on_prem_connection_tab_saves_in_place_and_copies_its_commands(
    world, browser_page, camera, company
):
    page, shoot, base = browser_page, camera, world
    try:
        integration = _on_prem(company)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        _sign_in(page, base)
        page.goto(f"{base}/microsoft-sync/{integration.code}/")
        page.click("#tab-connection")
        expect(page.locator("#connection-form")).to_be_visible()
        expect(page.locator("#firewall")).to_be_visible()
        shoot("connection-tab")
        _mark_page(page)
        page.fill("#id_ews_username", "mss_service")
        page.click("#save-connection")
        _expect_whole_page(page, "connection")
        expect(page.locator(".messages")).to_contain_text("synkroniseras på nytt")
        assert _not_reloaded(page)
        integration.refresh_from_db()
        assert integration.ews_username == "mss_service"
        assert integration.ews_password == "Hemligt-Lösen-42"  # an empty password keeps it
        # The guidance is still there after the save.
        expect(page.locator("#ps-impersonation-user")).to_be_visible()
        expect(page.locator("#firewall")).to_be_visible()
        shoot("connection-saved")

        # Copy: the clipboard gets the block's text, the button and a live region say so.
        button = page.locator('button[data-copy="ps-throttling-2013"]')
        expect(button).to_be_visible()
        expect(button).to_have_text("Kopiera")
        button.click()
        expect(button).to_have_text("Kopierat")
        expect(page.locator("#copy-status")).to_have_text("Kopierat")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.locator("#ps-throttling-2013").inner_text()
        assert copied.startswith("New-ThrottlingPolicy")
        expect(button).to_have_text("Kopiera", timeout=5000)

        # Readable at 1280 px: the firewall table fits its card, nothing scrolls sideways.
        fits = page.evaluate(
            "(() => { const box = document.querySelector('#firewall').parentElement;"
            " return box.scrollWidth <= box.clientWidth; })()"
        )
        assert fits, "the firewall table is cut off at 1280 px"
        _no_sideways_scroll(page)
        page.set_viewport_size(PHONE)
        page.reload()
        expect(page.locator("#firewall")).to_be_visible()
        _no_sideways_scroll(page)
        for block in page.locator(".code-block pre").all():
            assert block.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), "code overflows"
        shoot("phone-connection")

        # The next page opened shows no leftover message.
        page.click("#tab-users")
        expect(page.locator("#user-list")).to_be_visible()
        expect(page.locator(".messages")).to_have_count(0)
    finally:
        connections.close_all()


def test_a_newly_added_user_turns_synced_without_a_reload(
    world, browser_page, camera, company, monkeypatch
):
    page, shoot, base = browser_page, camera, world
    # Anna's calendar is an in-memory one; sync runs are held back until the test lets them
    # go, as a busy worker would, so the page has to notice the change itself.
    calendar = InMemoryCalendar(mailboxes={ANNA: []})
    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    held = []
    monkeypatch.setattr(
        tasks.sync_mailboxes, "apply_async", lambda args, **options: held.append(args[0])
    )
    try:
        integration = _connected(company)
        _sign_in(page, base)
        page.goto(f"{base}/microsoft-sync/{integration.code}/users/")
        _mark_page(page)
        page.fill("#id_email", ANNA)
        page.click("#add-user")
        row = page.locator("#user-list tr", has_text=ANNA)
        expect(row).to_contain_text("väntar på första synkronisering")
        expect(page.locator(".messages")).to_contain_text(ANNA)
        expect(page.locator("#user-list")).to_have_attribute("hx-trigger", "every 2s")
        expect(page.locator("#sync-progress")).to_contain_text("Synkar 1 av 1 användare…")
        shoot("user-added-pending")
        assert held, "adding the user asked for no sync"

        for chunk in held:  # the worker gets to it
            sync.sync_mailboxes(chunk)
        expect(row).to_contain_text("synkroniserad")
        expect(page.locator("#sync-progress")).to_contain_text("Synken är klar")
        # Nothing is pending any more: the list and the banner stop asking.
        expect(page.locator("#user-list")).not_to_have_attribute("hx-trigger", "every 2s")
        expect(page.locator("#sync-progress")).not_to_have_attribute("hx-trigger", "every 2s")
        assert _not_reloaded(page), "the page was reloaded"
        assert SyncedUser.objects.get(email=ANNA).state == "ok"
        shoot("user-synced")
        page.set_viewport_size(PHONE)
        _no_sideways_scroll(page)
        shoot("phone-user-synced")

        # A rule change resyncs everyone: Synkregler shows the progress until it is done.
        page.set_viewport_size(DESKTOP)
        held.clear()
        page.click("#tab-rules")
        expect(page.locator("#start-from-template")).to_be_visible()
        page.click("#start-from-template")
        expect(page.locator("#sync-progress")).to_contain_text("Synkar 1 av 1 användare…")
        shoot("rules-resync-progress")
        assert held, "the rule change asked for no sync"
        for chunk in held:
            sync.sync_mailboxes(chunk)
        expect(page.locator("#sync-progress")).to_contain_text("Synken är klar")
    finally:
        connections.close_all()
