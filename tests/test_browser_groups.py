"""Katalog Synk in chromium, as a new admin meets it: the Användare tab's "Synka användare från
grupper", a search for a group as you type, Följ, and the run's report (Celery eager)."""

import pytest
from playwright.sync_api import expect

from calendarsync.models import Integration, SyncedUser
from tests.browser_support import ANNA, axe_violations, telenor_id_sign_in

CONSULTANT = "gustav.gran@demo.se"  # a mailbox without a One X subscription


@pytest.mark.browser
def test_an_admin_chooses_a_group_and_reads_the_report(world, m365, company, browser_page, camera):
    page = browser_page
    tenant = m365.add_tenant("Grupp AB", users=[ANNA, CONSULTANT])
    integration = Integration.objects.create(
        company=company, kind="graph", name="Exchange Online", status="connected", tenant_id=tenant
    )
    m365.create_group("Kalenderkoppling", members=[ANNA, CONSULTANT], tenant=tenant)
    m365.create_group("Kalas", members=[], tenant=tenant)

    page.goto(f"{world}/")
    telenor_id_sign_in(page, ANNA)
    expect(page.locator("#add-provider")).to_be_visible()
    page.goto(f"{world}/microsoft-sync/{integration.code}/users/")
    page.get_by_label("Synka användare från grupper (de som lagts till för hand är kvar)").check()
    page.click("#save-user-source")
    expect(page.locator("#no-groups")).to_be_visible()
    camera("users-from-groups")

    page.fill("#group-q", "Kal")
    results = page.locator("#group-results")
    expect(results.get_by_role("button", name="Följ Kalenderkoppling")).to_be_visible()
    expect(results.get_by_role("button", name="Följ Kalas")).to_be_visible()
    camera("group-search")
    results.get_by_role("button", name="Följ Kalenderkoppling").click()

    expect(page.locator("#followed-groups")).to_contain_text("Kalenderkoppling")
    page.reload()  # the run (eager) finished with the follow; the tab shows its report
    expect(page.locator("#report-added")).to_contain_text("1 användare tillagd")
    expect(page.locator("#report-without")).to_contain_text(
        f"{CONSULTANT} har inget One X-abonnemang och kan därför inte synkas."
    )
    cells = page.locator("#followed-groups tbody td")
    expect(cells.nth(1)).to_have_text("2")  # members
    expect(cells.nth(2)).to_have_text("1")  # with a One X subscription
    assert SyncedUser.objects.get(integration=integration, email=ANNA).from_groups
    assert axe_violations(page) == []
    camera("group-report")


@pytest.mark.browser
def test_without_javascript_the_search_and_the_follow_are_plain_forms(
    world, m365, company, browser_page, camera
):
    page = browser_page
    tenant = m365.add_tenant("Grupp AB", users=[ANNA, CONSULTANT])
    integration = Integration.objects.create(
        company=company, kind="graph", name="Exchange Online", status="connected", tenant_id=tenant
    )
    m365.create_group("Kalenderkoppling", members=[ANNA, CONSULTANT], tenant=tenant)
    page.route("**/*.js", lambda route: route.abort())  # every script blocked

    page.goto(f"{world}/")
    telenor_id_sign_in(page, ANNA)
    expect(page.locator("#add-provider")).to_be_visible()
    users = f"{world}/microsoft-sync/{integration.code}/users/"
    page.goto(users)
    assert page.evaluate("typeof window.htmx") == "undefined"
    page.get_by_label("Synka användare från grupper (de som lagts till för hand är kvar)").check()
    page.click("#save-user-source")
    page.fill("#group-q", "Kal")
    page.click("#group-search")
    expect(page).to_have_url(f"{users}?group_q=Kal")  # the whole tab, with the results
    page.locator("#group-results").get_by_role("button", name="Följ Kalenderkoppling").click()
    expect(page.locator("#followed-groups")).to_contain_text("Kalenderkoppling")
    expect(page.locator("#report-added")).to_contain_text("1 användare tillagd")
    assert SyncedUser.objects.get(integration=integration, email=ANNA).from_groups
    camera("groups-without-javascript")
