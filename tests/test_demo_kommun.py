"""Demo Kommun, the second demo company: on Exchange On Prem against the EWS sandbox, its One X
people synced users, connected through Testa anslutningen (idempotently)."""

import pytest
from django.core.management import call_command

from calendarsync.models import Integration
from onex.directory import import_company
from onex.models import Company

pytestmark = pytest.mark.django_db


@pytest.fixture
def kommun(on_prem, onex_sandbox):
    """The product pointed at the EWS sandbox (on_prem's settings), Demo Kommun imported."""
    call_command("demo_setup")
    company = Company.objects.get(onex_id="demo-kommun")
    assert import_company(company).ok
    return company


def test_the_demo_command_connects_demo_kommun_through_the_connection_test(
    kommun, ews, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        call_command("demo_connect_ews", "--url", ews.ews_url, "--wait", "5")
        call_command("demo_connect_ews", "--url", ews.ews_url, "--wait", "5")
    integration = Integration.objects.get(company=kommun, kind=Integration.Kind.EWS)
    assert integration.status == Integration.Status.CONNECTED
    emails = set(integration.users.values_list("email", flat=True))
    assert len(emails) == 5 and "asa.lind@demokommun.se" in emails
    assert callbacks  # the first sync and the subscriptions are queued
    assert kommun.subscriptions.get(email="asa.lind@demokommun.se").is_admin


def test_a_failing_connection_test_leaves_it_unverified(kommun, ews):
    ews.knobs(impersonation=False)
    with pytest.raises(Exception, match="did not pass"):
        call_command("demo_connect_ews", "--url", ews.ews_url, "--wait", "0")
    integration = Integration.objects.get(company=kommun, kind=Integration.Kind.EWS)
    assert integration.status == Integration.Status.UNVERIFIED
