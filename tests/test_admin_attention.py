"""Django admin's operations page (Drift): the integrations that need someone, across
companies, read only, in one query however many there are."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from calendarsync.attention import integrations_needing_attention
from calendarsync.models import Integration, MailboxSubscription, SyncedUser
from onex.models import Subscription

URL = reverse("admin:calendarsync_integrationneedingattention_changelist")
FRESH = timezone.now()
STALE = FRESH - timedelta(hours=26)


def make_integration(company, name, *, status="connected", active=True, **fields):
    return Integration.objects.create(
        company=company, kind="graph", name=name, status=status, active=active, **fields
    )


def make_user(integration, number, *, state="ok", last_synced_at=FRESH, sub_status=None, **sub):
    person = Subscription.objects.create(
        company=integration.company,
        onex_id=f"{integration.name}-{number}",
        email=f"p{number}@{integration.pk}.example",
    )
    user = SyncedUser.objects.create(
        integration=integration,
        subscription=person,
        email=person.email,
        state=state,
        last_synced_at=last_synced_at,
    )
    if sub_status:
        MailboxSubscription.objects.create(
            synced_user=user,
            provider_subscription_id=f"sub-{integration.pk}-{number}",
            status=sub_status,
            **sub,
        )
    return user


@pytest.fixture
def landscape(company, other_company):
    healthy = make_integration(company, "Healthy")
    make_user(healthy, 1, sub_status="active", expires_at=FRESH + timedelta(days=2))
    make_user(healthy, 2)
    revoked = make_integration(
        company, "Revoked", status="needs_attention", attention="consent_revoked"
    )
    failing = make_integration(other_company, "Failing mailbox")
    make_user(failing, 1, state="error")
    make_user(failing, 2)
    overdue = make_integration(other_company, "Overdue")
    make_user(overdue, 1, last_synced_at=STALE)
    lapsed = make_integration(company, "Lapsed subscriptions")
    make_user(lapsed, 1, sub_status="failed")
    make_user(lapsed, 2, sub_status="active", expires_at=FRESH - timedelta(minutes=5))
    switched_off = make_integration(company, "Switched off", active=False, status="error")
    make_user(switched_off, 1, state="error")
    return {
        "healthy": healthy,
        "revoked": revoked,
        "failing": failing,
        "overdue": overdue,
        "lapsed": lapsed,
        "off": switched_off,
    }


def test_the_integrations_needing_someone_and_why(landscape):
    found = {i.name: i for i in integrations_needing_attention(timezone.now())}
    assert set(found) == {"Revoked", "Failing mailbox", "Overdue", "Lapsed subscriptions"}
    counts = lambda i: (  # noqa: E731
        i.mailboxes_failing,
        i.mailboxes_overdue,
        i.subscriptions_failed,
        i.subscriptions_expired,
    )
    assert counts(found["Revoked"]) == (0, 0, 0, 0)
    assert counts(found["Failing mailbox"]) == (1, 0, 0, 0)
    assert counts(found["Overdue"]) == (0, 1, 0, 0)
    assert counts(found["Lapsed subscriptions"]) == (0, 0, 1, 1)


def test_the_drift_page_lists_them_across_companies_read_only(staff_client, landscape):
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    for name in ("Revoked", "Failing mailbox", "Overdue", "Lapsed subscriptions"):
        assert name in page
    assert "Healthy" not in page and "Switched off" not in page
    assert "Demo AB" in page and "Annat AB" in page
    change = reverse("admin:calendarsync_integration_change", args=[landscape["overdue"].pk])
    assert f'href="{change}"' in page
    assert f"{URL}add/" not in page  # nothing to add
    few = len(queries)
    make_user(make_integration(landscape["overdue"].company, "Another overdue"), 9, state="error")
    with CaptureQueriesContext(connection) as queries:
        assert "Another overdue" in staff_client.get(URL).content.decode()
    assert len(queries) == few  # one more row, no more queries


def test_the_drift_page_is_on_the_admin_index(staff_client, landscape):
    assert URL in staff_client.get(reverse("admin:index")).content.decode()


def test_a_company_admin_cannot_open_it(admin_client, landscape):
    response = admin_client.get(URL)
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_nothing_on_it_can_be_changed(staff_client, landscape):
    proxy_change = f"{URL}{landscape['revoked'].pk}/change/"
    assert staff_client.post(proxy_change, {"name": "renamed"}).status_code == 403
    landscape["revoked"].refresh_from_db()
    assert landscape["revoked"].name == "Revoked"


def test_a_malformed_id_is_not_an_error(staff_client, landscape):
    assert staff_client.get(f"{URL}not-a-number/change/").status_code == 302
