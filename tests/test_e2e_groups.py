"""Katalog Synk end to end for Exchange Online (tests/test_e2e_groups_ews.py for On Prem), with
a real Celery worker on Redis: a person added to the followed group in the Microsoft 365 sandbox
becomes a synced user with a change-notification subscription whose booking reaches One X; taken
out of the group they go through the removal path, with their One X entries and email. An
emptied group removes nobody until the admin confirms on the dashboard, which says why."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from calendarsync import tasks
from calendarsync.models import (
    Activity,
    FollowedGroup,
    Integration,
    MailboxSubscription,
    MembershipReport,
    SyncedUser,
)
from tests.m365_sandbox import wait_for
from tests.test_e2e_graph import (  # noqa: F401 - fixtures
    ANNA,
    company_db,
    entries,
    graph_integration,
    graph_time,
    tenant,
    worker,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _follow(integration, provider_id, name="Kalenderkoppling"):
    Integration.objects.filter(pk=integration.pk).update(user_source=Integration.UserSource.GROUPS)
    FollowedGroup.objects.create(integration=integration, provider_id=provider_id, name=name)


def _anna():
    return SyncedUser.objects.filter(email=ANNA).first()


def _joined_and_synced(onex_sandbox):
    """Anna is a user from the groups with a subscription, and her booking is in One X."""
    wait_for(
        lambda: MailboxSubscription.objects.filter(synced_user__email=ANNA).exists(),
        60,
        message="the new user's change-notification subscription",
    )
    created = wait_for(lambda: entries(onex_sandbox), 60, message="the booking in One X")
    assert len(created) == 1 and _anna().from_groups


def _removed(onex_sandbox):
    wait_for(lambda: _anna() is None, 60, message="the removal")
    wait_for(lambda: not entries(onex_sandbox), 60, message="the One X entries to go")
    logged = Activity.objects.filter(subject_label__icontains=ANNA).exists()
    assert not logged, "the removed user's email is gone from the log too"


def _booking_start():
    return (timezone.now() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)


# ----- Exchange Online: an Entra ID group


@pytest.fixture
def worker_env():
    # One user leaving a group of one is all of them: the test of the plain removal lets the
    # share through (the hold has its own test below, with the default limits).
    return {"MSS_GROUP_REMOVAL_HOLD_SHARE": "1.0"}


def _graph_group(m365, tenant, graph_integration):  # noqa: F811
    start = _booking_start()
    m365.create_event(
        ANNA,
        tenant,
        subject="Kundmöte",
        start=graph_time(start),
        end=graph_time(start + timedelta(hours=1)),
        showAs="busy",
    )
    group = m365.create_group("Kalenderkoppling", members=[], tenant=tenant)
    _follow(graph_integration, group["id"])
    tasks.follow_groups.delay(graph_integration.pk)
    wait_for(
        lambda: MembershipReport.objects.filter(integration=graph_integration).exists(),
        60,
        message="the first membership run",
    )
    assert _anna() is None
    return group


def test_a_member_added_in_entra_is_synced_and_removed_when_taken_out(
    worker,  # noqa: F811
    m365,
    onex_sandbox,
    graph_integration,  # noqa: F811
    tenant,  # noqa: F811
):
    group = _graph_group(m365, tenant, graph_integration)
    m365.add_group_members(group["id"], [ANNA], tenant=tenant)
    tasks.follow_groups.delay(graph_integration.pk)
    _joined_and_synced(onex_sandbox)
    report = MembershipReport.objects.get(integration=graph_integration)
    assert report.added == [ANNA] and report.not_in_groups == []

    m365.remove_group_members(group["id"], [ANNA], tenant=tenant)
    tasks.follow_groups.delay(graph_integration.pk)
    _removed(onex_sandbox)
    assert MembershipReport.objects.get(integration=graph_integration).removed == 1


@pytest.mark.parametrize("worker_env", [{}], ids=["default limits"])
def test_an_emptied_group_removes_nobody_until_the_admin_confirms(
    worker,  # noqa: F811
    m365,
    onex_sandbox,
    graph_integration,  # noqa: F811
    tenant,  # noqa: F811
    admin_client,
    worker_env,
):
    group = _graph_group(m365, tenant, graph_integration)
    m365.add_group_members(group["id"], [ANNA], tenant=tenant)
    tasks.follow_groups.delay(graph_integration.pk)
    _joined_and_synced(onex_sandbox)

    m365.remove_group_members(group["id"], [ANNA], tenant=tenant)  # the group is empty now
    tasks.follow_groups.delay(graph_integration.pk)
    wait_for(
        lambda: MembershipReport.objects.get(integration=graph_integration).held_removals,
        60,
        message="the held removal",
    )
    assert _anna() is not None and len(entries(onex_sandbox)) == 1
    dashboard = reverse("calendarsync:dashboard", args=[graph_integration.code])
    page = admin_client.get(dashboard).content.decode()
    assert "1 användare har lämnat grupperna som användarna synkas från." in page
    assert "så att en tömd grupp eller ett felaktigt val av grupp aldrig tar bort alla" in page
    assert ANNA in page

    admin_client.post(reverse("calendarsync:removals_confirm", args=[graph_integration.code]))
    _removed(onex_sandbox)
    assert 'id="held-removals"' not in admin_client.get(dashboard).content.decode()
