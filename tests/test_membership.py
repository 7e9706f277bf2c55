"""Katalog Synk's core (calendarsync/membership.py and tasks.follow_groups) with a stand-in
directory: who is added, who is removed, who stays, what the report says, and the hold that
keeps an emptied group from removing everyone until an admin confirms."""

import pytest
from django.urls import reverse
from django.utils import translation

from calendarsync import membership, providers, tasks
from calendarsync.models import Activity, FollowedGroup, Integration, MembershipReport, SyncedUser
from calendarsync.providers.base import Group, MemberRead, ProviderError
from onex.models import Subscription


class Directory:
    """Groups by id → {member id: (email, upn)}; `fail` makes every read raise."""

    def __init__(self):
        self.groups: dict[str, dict] = {}
        self.fail = None

    def find_groups(self, text):
        return [Group(key, key.title()) for key in self.groups if key.startswith(text)]

    def read_members(self, provider_id, known, cursor):
        if self.fail:
            raise ProviderError("no", code=self.fail)
        return MemberRead(members=dict(self.groups[provider_id]))


@pytest.fixture
def directory(monkeypatch):
    found = Directory()
    monkeypatch.setattr(providers, "groups_for", lambda integration: found)
    return found


@pytest.fixture
def people(company):
    return [
        Subscription.objects.create(company=company, onex_id=f"s{i}", email=f"p{i}@demo.se")
        for i in range(30)
    ]


def _member(i, *, upn_only=False):
    email = f"p{i}@demo.se"
    return f"id-{i}", ("" if upn_only else email.upper(), email)


def _follow(integration, directory, members, key="kalenderkoppling", source="groups"):
    integration.user_source = source
    integration.save()
    directory.groups[key] = dict(members)
    FollowedGroup.objects.get_or_create(integration=integration, provider_id=key, name=key)


def _emails(integration):
    return set(integration.users.values_list("email", flat=True))


def test_members_with_a_subscription_are_added_by_email_then_upn(integration, directory, people):
    members = [_member(0), _member(1, upn_only=True), ("id-x", ("extern@demo.se", "x@demo.se"))]
    _follow(integration, directory, members)
    outcome = membership.run(integration)
    assert _emails(integration) == {"p0@demo.se", "p1@demo.se"}
    assert set(integration.users.values_list("from_groups", flat=True)) == {True}
    assert len(outcome.added_ids) == 2 and outcome.removing_ids == []
    report = integration.membership_report
    assert report.added == ["p0@demo.se", "p1@demo.se"]
    assert report.without_subscription == ["extern@demo.se"]
    assert len(report.not_in_groups) == 28 and "p2@demo.se" in report.not_in_groups
    group = integration.groups.get()
    assert group.matched == 2 and len(group.members) == 3 and group.read_at
    entry = Activity.objects.get(integration=integration, message_id="group_members_synced")
    with translation.override("sv"):
        message = entry.message
    assert message == (
        "Synkade användare från grupperna: 2 användare tillagda; 1 medlem utan One X-abonnemang."
    )


def test_leavers_go_hand_added_users_stay_unless_groups_only(integration, directory, people):
    SyncedUser.objects.create(integration=integration, subscription=people[25], email="p25@demo.se")
    _follow(integration, directory, [_member(i) for i in range(20)])
    membership.run(integration)
    del directory.groups["kalenderkoppling"]["id-7"]  # 1 of 21 users: under the 10 % limit
    outcome = membership.run(integration)
    leaver = SyncedUser.objects.get(email="p7@demo.se")
    assert outcome.removing_ids == [leaver.pk] and outcome.removed == 1
    assert MembershipReport.objects.get(integration=integration).removed == 1
    integration.user_source = Integration.UserSource.GROUPS_ONLY
    integration.save()
    outcome = membership.run(integration)
    hand_added = SyncedUser.objects.get(email="p25@demo.se")
    assert hand_added.pk in outcome.removing_ids


def test_unfollowing_the_last_group_removes_its_members_after_the_hold(
    integration, directory, people
):
    _follow(integration, directory, [_member(i) for i in range(3)])
    membership.run(integration)
    integration.groups.all().delete()
    outcome = membership.run(integration)
    assert outcome.removing_ids == [] and len(outcome.held) == 3  # all of them: held
    outcome = membership.run(integration, confirmed=outcome.held)
    assert sorted(outcome.removing_ids) == sorted(integration.users.values_list("pk", flat=True))
    assert integration.membership_report.held_removals == []


def test_a_member_another_integration_syncs_stays_there(integration, company, directory, people):
    other = Integration.objects.create(company=company, kind="ews", name="On Prem")
    SyncedUser.objects.create(integration=other, subscription=people[0], email="p0@demo.se")
    _follow(integration, directory, [_member(0), _member(1)])
    membership.run(integration)
    assert _emails(integration) == {"p1@demo.se"}
    assert integration.membership_report.synced_elsewhere == ["p0@demo.se"]


def test_an_emptied_group_holds_every_removal_until_confirmed(integration, directory, people):
    _follow(integration, directory, [_member(i) for i in range(30)])
    membership.run(integration)
    directory.groups["kalenderkoppling"] = {}
    outcome = membership.run(integration)
    assert outcome.removing_ids == [] and len(outcome.held) == 30
    assert integration.users.count() == 30
    report = MembershipReport.objects.get(integration=integration)
    assert sorted(report.held_removals) == sorted(integration.users.values_list("pk", flat=True))
    # A later run holds them again; a confirmed run removes exactly those.
    assert len(membership.run(integration).held) == 30
    outcome = membership.run(integration, confirmed=report.held_removals)
    assert sorted(outcome.removing_ids) == sorted(report.held_removals) and not outcome.held


def test_the_limits_are_settings(integration, directory, people, settings):
    _follow(integration, directory, [_member(i) for i in range(30)])
    membership.run(integration)
    directory.groups["kalenderkoppling"] = {k: v for k, v in [_member(i) for i in range(27)]}
    assert len(membership.run(integration).removing_ids) == 3  # 3 of 30: at the 10 % limit
    settings.MSS_GROUP_REMOVAL_HOLD_SHARE = 0.05
    directory.groups["kalenderkoppling"] = {k: v for k, v in [_member(i) for i in range(25)]}
    assert len(membership.run(integration).held) == 5


def test_a_failed_read_changes_nothing_and_keeps_the_last_report(integration, directory, people):
    _follow(integration, directory, [_member(0)])
    membership.run(integration)
    directory.fail = "group_not_found"
    outcome = membership.run(integration)
    assert outcome.error == "group_not_found" and outcome.removing_ids == []
    report = MembershipReport.objects.get(integration=integration)
    assert report.added == ["p0@demo.se"] and report.failed_at
    with translation.override("sv"):
        assert "finns inte längre" in report.error_text
    assert integration.users.count() == 1


def test_the_task_starts_first_syncs_and_quiet_removals(
    integration, directory, people, django_capture_on_commit_callbacks, monkeypatch
):
    started, removed = [], []
    monkeypatch.setattr(tasks, "start_syncing", lambda users: started.extend(users))
    monkeypatch.setattr(
        tasks, "request_user_removal", lambda pk, **kw: removed.append((pk, kw["record"]))
    )
    _follow(integration, directory, [_member(i) for i in range(20)])
    assert tasks.follow_groups(integration.pk) == {"added": 20, "removed": 0, "held": 0}
    assert {user.email for user in started} == {f"p{i}@demo.se" for i in range(20)}
    del directory.groups["kalenderkoppling"]["id-1"]
    tasks.follow_groups(integration.pk)
    assert removed == [(SyncedUser.objects.get(email="p1@demo.se").pk, False)]


def test_manual_integrations_are_not_read(integration, directory, people):
    _follow(integration, directory, [_member(0)], source="manual")
    assert membership.run(integration) == membership.Outcome()
    assert not MembershipReport.objects.exists()


def test_the_dashboard_says_why_and_the_confirmation_removes(
    admin_client, integration, directory, people, django_capture_on_commit_callbacks, monkeypatch
):
    _follow(integration, directory, [_member(i) for i in range(30)])
    membership.run(integration)
    directory.groups["kalenderkoppling"] = {}
    membership.run(integration)
    url = reverse("calendarsync:dashboard", args=[integration.code])
    page = admin_client.get(url).content.decode()
    assert 'id="held-removals"' in page
    assert "30 användare har lämnat grupperna" in page
    assert "Inget tas bort förrän du bekräftar" in page
    runs = []
    monkeypatch.setattr(
        tasks, "request_membership_run", lambda i, **kw: runs.append(sorted(kw["confirmed"]))
    )
    confirm = reverse("calendarsync:removals_confirm", args=[integration.code])
    admin_client.post(confirm)
    assert runs == [sorted(integration.users.values_list("pk", flat=True))]
    assert 'id="held-removals"' not in admin_client.get(url).content.decode()


def test_another_companys_group_pages_are_404(admin_client, other_company):
    theirs = Integration.objects.create(company=other_company, kind="graph", name="X")
    group = FollowedGroup.objects.create(integration=theirs, provider_id="g", name="G")
    for name, args in [
        ("group_unfollow", [theirs.code, group.pk]),
        ("group_follow", [theirs.code]),
        ("groups_sync", [theirs.code]),
        ("removals_confirm", [theirs.code]),
        ("user_source", [theirs.code]),
    ]:
        assert admin_client.post(reverse(f"calendarsync:{name}", args=args)).status_code == 404
    assert FollowedGroup.objects.filter(pk=group.pk).exists()


@pytest.mark.parametrize(
    ("kind", "given", "kept"),
    [
        ("graph", "0F8FAD5B-D9CB-469F-A165-70867728950E", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("ews", " Alla@DemoKommun.se ", "alla@demokommun.se"),
    ],
)
def test_a_followed_group_is_kept_by_its_directory_id(
    admin_client, integration, kind, given, kept, monkeypatch
):
    integration.kind, integration.user_source = kind, Integration.UserSource.GROUPS
    integration.save()
    monkeypatch.setattr(tasks, "request_membership_run", lambda *a, **kw: None)
    url = reverse("calendarsync:group_follow", args=[integration.code])
    admin_client.post(url, {"provider_id": given, "name": "Alla"})
    assert list(integration.groups.values_list("provider_id", flat=True)) == [kept]


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        ("graph", "0f8fad5b-d9cb-469f-a165-70867728950e/../../../users"),
        ("graph", "x' or id ne '"),
        ("ews", "alla"),
    ],
)
def test_an_id_the_directory_would_not_give_is_refused_in_swedish(
    admin_client, integration, kind, given
):
    # The id goes into Graph's paths and filters and EWS's requests: only a real one passes.
    integration.kind, integration.user_source = kind, Integration.UserSource.GROUPS
    integration.save()
    url = reverse("calendarsync:group_follow", args=[integration.code])
    response = admin_client.post(url, {"provider_id": given, "name": "Alla"}, follow=True)
    assert "Välj en grupp bland sökresultaten." in response.content.decode()
    assert not integration.groups.exists()


def test_with_groups_only_no_user_is_added_by_hand(admin_client, integration, people):
    integration.user_source = Integration.UserSource.GROUPS_ONLY
    integration.save()
    add = reverse("calendarsync:user_add", args=[integration.code])
    page = admin_client.post(add, {"email": "p0@demo.se"}, follow=True).content.decode()
    assert "Användarna kommer endast från grupperna" in page
    imported = reverse("calendarsync:users_import", args=[integration.code])
    assert admin_client.get(imported).status_code == 302
    assert not integration.users.exists()
