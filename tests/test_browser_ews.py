"""Exchange On Prem in chromium: Testa anslutningen on the Anslutning tab against the EWS
sandbox, first failing with its fix, then passing and connecting the integration. Swedish,
desktop and phone, and axe-core finds nothing serious."""

import re

import pytest
from django.db import connections
from playwright.sync_api import expect

from calendarsync.models import Integration
from tests.browser_support import ANNA, axe_violations, telenor_id_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PERSON = "kalle@kommun.example.se"


def test_testa_anslutningen_shows_each_step_and_connects(
    world, ews, on_prem, company, browser_page, camera
):
    integration = on_prem(company, PERSON, status=Integration.Status.UNVERIFIED)
    page, shoot = browser_page, camera
    try:
        page.goto(f"{world}/")
        telenor_id_sign_in(page, ANNA)
        page.goto(f"{world}/microsoft-sync/{integration.code}/connection/")
        ews.knobs(impersonation=False)
        page.fill("#test-mailbox", PERSON)
        page.click("#run-connection-test")
        failed = page.locator(".test-step.failed")
        expect(failed).to_contain_text("Impersonation")
        expect(failed).to_contain_text("New-ManagementRoleAssignment")
        expect(page.locator("#test-summary")).to_contain_text("Testet gick inte igenom")
        assert not axe_violations(page)
        shoot("connection-test-failed")
        page.set_viewport_size({"width": 390, "height": 844})
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the test's result scrolls sideways on a phone ({width}px)"
        shoot("connection-test-failed-phone")
        page.set_viewport_size({"width": 1280, "height": 900})

        ews.knobs(impersonation=True)
        page.click("#run-connection-test")
        expect(page.locator("#test-summary")).to_contain_text("Integrationen är ansluten")
        expect(page.locator(".test-step.passed")).to_have_count(4)
        assert Integration.objects.get(pk=integration.pk).status == Integration.Status.CONNECTED
        expect(page.locator("#integration-status")).to_have_class(re.compile("badge-connected"))
        assert not axe_violations(page)
        shoot("connection-test-passed")
        page.reload()
        expect(page.locator("#integration-status")).to_have_class(re.compile("badge-connected"))
    finally:
        connections.close_all()
