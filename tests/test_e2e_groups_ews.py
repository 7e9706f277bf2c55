"""Katalog Synk end to end for Exchange On Prem, with a real Celery worker: a person added to a
distribution group in the EWS sandbox becomes a synced user whose booking reaches One X, and
taken out of it goes through the removal path (tests/test_e2e_groups.py has the rest)."""

import pytest
from django.urls import reverse

from calendarsync import tasks
from calendarsync.models import MembershipReport
from onex.models import Subscription
from tests.test_e2e_ews import soon, span
from tests.test_e2e_graph import ANNA, worker  # noqa: F401 - the real Celery worker fixture
from tests.test_e2e_groups import _follow, _joined_and_synced, _removed

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GROUP = "kalenderkoppling@demo.se"


@pytest.fixture
def worker_env(on_prem, settings, live_server):
    """The worker reaches the EWS sandbox as the product does here; one user leaving a group
    of one is all of them, so the share limit lets it through (tests/test_e2e_groups.py holds
    with the defaults)."""
    settings.EWS_NOTIFICATION_URL = live_server.url + reverse("ews_notifications")
    return {
        "EWS_CA_BUNDLE": settings.EWS_CA_BUNDLE,
        "OUTBOUND_ALLOWED_HOSTS": settings.OUTBOUND_ALLOWED_HOSTS[0],
        "EWS_NOTIFICATION_URL": settings.EWS_NOTIFICATION_URL,
        "MSS_GROUP_REMOVAL_HOLD_SHARE": "1.0",
    }


@pytest.fixture
def integration(on_prem, company, ews, worker_env):
    made = on_prem(company, ANNA, name="Anna Andersson")
    Subscription.objects.create(
        company=company, onex_id="sub-anna", email=ANNA, display_name="Anna", has_diversion=True
    )
    ews.add_mailbox("kollega@demo.se")
    ews.add_group(GROUP, "Kalenderkoppling", ["kollega@demo.se"])
    return made


@pytest.mark.usefixtures("worker")
def test_a_member_added_to_a_distribution_group_is_synced_and_removed_when_taken_out(
    ews, onex_sandbox, integration
):
    ews.create_event(ANNA, subject="Kundmöte", **span(soon(2)))
    _follow(integration, GROUP)
    ews.add_group_members(GROUP, [ANNA])
    tasks.follow_groups.delay(integration.pk)
    _joined_and_synced(onex_sandbox)
    report = MembershipReport.objects.get(integration=integration)
    assert report.added == [ANNA] and report.without_subscription == ["kollega@demo.se"]

    ews.remove_group_members(GROUP, [ANNA])
    tasks.follow_groups.delay(integration.pk)
    _removed(onex_sandbox)
