"""Shared pieces of the browser tests (Playwright driving Debian's chromium).

`browser_page` is a fresh chromium profile per test; `camera` saves numbered screenshots into
test-artifacts/browser/<test name>/; `world` is the product on a live server with the One X,
Microsoft 365 and Telenor ID sandboxes and Celery eager; `telenor_id_sign_in` signs in as a demo
identity. Browser test modules mark themselves `browser` and `django_db(transaction=True)`, and
close their ORM connections at the end (`connections.close_all()`).
"""

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from calendarsync.models import Integration, SyncedUser
from onex.directory import import_company
from sandbox.telenorid.demo import DEMO_PASSWORD

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANNA = "anna.andersson@demo.se"
BJORN = "bjorn.berg@demo.se"
PASSWORD = DEMO_PASSWORD  # the Telenor ID sandbox's demo identities


@pytest.fixture
def browser_page(tmp_path, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data dir every run
            executable_path="/usr/bin/chromium",
            headless=True,
            args=CHROMIUM_ARGS,
            locale="sv-SE",
            viewport={"width": 1280, "height": 900},
            # The sandboxes' pages are served with their own test CAs; the product trusts them
            # through MS_CA_BUNDLE and TELENOR_ID_CA_BUNDLE, the browser is told to accept them.
            ignore_https_errors=True,
        )
        context.set_default_timeout(20_000)
        # A loaded CI machine can take more than expect()'s default 5 s to render a preview
        # that reads the calendar: wait as long as for any other action.
        expect.set_options(timeout=20_000)
        page = context.pages[0] if context.pages else context.new_page()
        yield page
        context.close()


class Camera:
    def __init__(self, page, folder: Path):
        self.page = page
        self.folder = folder
        self.count = 0
        self.taken = []

    def __call__(self, name):
        self.count += 1
        path = self.folder / f"{self.count:02}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def camera(browser_page, request):
    """Screenshots of this test only, in a folder of its own (emptied first)."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Camera(browser_page, folder)


@pytest.fixture
def world(https_live_server, m365, onex_sandbox, telenorid, eager_celery, settings, company):
    """The product on a live server behind an https front (as production sits behind TLS, and
    because Graph delivers change notifications to https only); Microsoft 365, One X and
    Telenor ID as their sandboxes; Celery eager. Demo AB's One X directory (people and reasons)
    is imported as `make run` does: it names Anna the company's administrator.
    """
    base = https_live_server.url
    settings.PUBLIC_BASE_URL = base
    settings.TELENOR_ID_POST_LOGOUT_URL = base + "/"
    telenorid.register([base + "/oidc/callback/"], [base + "/"])
    m365.register_redirect_uris([base + "/microsoft-sync/graph/signin/callback/"])
    result = import_company(company)
    assert not result.error, result.error
    assert company.subscriptions.filter(email=ANNA).exists()
    return base


def telenor_id_sign_in(page, email=ANNA, shoot=None):
    """From our login page, through the Telenor ID sandbox's form, back signed in."""
    page.click("#telenor-id-login")
    expect(page.locator("#email")).to_be_visible()
    assert "Telenor ID" in page.content()
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    if shoot:
        shoot("telenor-id")
    page.click("#login")


# Installed by `make test-deps`, which pins its version.
AXE_SCRIPT = ARTIFACTS.parents[1] / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page, impacts=("serious", "critical")):
    """axe-core's violations of these impacts on the page as it is now (each a dict with id,
    impact, help and the failing nodes' selectors).

    The script is evaluated through Playwright rather than added as a <script> tag:
    `add_script_tag(path=...)` inserts it inline, which the product's Content-Security-Policy
    (script-src 'self', no inline scripts) refuses. Evaluation over the DevTools protocol is
    not subject to the page's CSP, so the page is measured under its real policy.
    """
    if not AXE_SCRIPT.exists():
        pytest.fail(f"{AXE_SCRIPT} is missing: run `make test-deps` (it installs axe-core)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8"))
    results = page.evaluate(
        """async () => {
            const result = await window.axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
            }));
        }"""
    )
    return [violation for violation in results if violation["impact"] in impacts]


def connected_integration(m365, company, tenant_name):
    """An Exchange Online integration on a tenant of its own whose only synced user is Anna
    (where tests/test_browser.py's journey ends up, without walking it). Returns
    (integration, tenant id, Anna's SyncedUser)."""
    tenant = m365.add_tenant(tenant_name, users=[ANNA])
    integration = Integration.objects.create(
        company=company,
        kind=Integration.Kind.GRAPH,
        name="Exchange Online",
        status=Integration.Status.CONNECTED,
        tenant_id=tenant,
    )
    anna = SyncedUser.objects.create(
        integration=integration, subscription=company.subscriptions.get(email=ANNA), email=ANNA
    )
    return integration, tenant, anna
