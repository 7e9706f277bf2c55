"""Katalog Synk: an integration's users follow the members of its chosen groups.

A run reads each followed group (the provider reads only the changes where it can), matches
the members to the company's active One X subscriptions by email, then by user principal
name, adds the matched ones that are not users yet (the path of a manual add: subscriptions
and a first sync) and removes the users from groups who left every group (the removal path:
One X entries, bookings, email). Users added by hand stay, unless the integration takes its
users from groups only. A run that would remove many users at once holds them until an admin
confirms: an emptied group or a wrong choice never wipes everyone. Each run is one Activity and
leaves its report (MembershipReport) for the Användare tab.
"""

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from onex.models import Subscription

from . import actors, providers
from .actors import Actor
from .models import Activity, FollowedGroup, Integration, MembershipReport, SyncedUser
from .providers.base import ProviderError

logger = logging.getLogger(__name__)

REPORT_LIMIT = 500  # emails kept per list of the report (the counts are whole)
BATCH = 500  # rows per INSERT


@dataclass
class Outcome:
    added: list[str] = field(default_factory=list)
    removed: int = 0
    without_subscription: list[str] = field(default_factory=list)
    synced_elsewhere: list[str] = field(default_factory=list)
    not_in_groups: list[str] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    error: str = ""
    # What the caller (tasks.follow_groups) sets going: first syncs and removals.
    added_ids: list[int] = field(default_factory=list)
    removing_ids: list[int] = field(default_factory=list)


def follows_groups(integration: Integration) -> bool:
    return integration.user_source != Integration.UserSource.MANUAL


def must_hold(removals: int, users: int) -> bool:
    """Too many removals at once for a run to make without an admin's word."""
    return removals > settings.MSS_GROUP_REMOVAL_HOLD_COUNT or (
        removals > settings.MSS_GROUP_REMOVAL_HOLD_SHARE * users
    )


def run(integration: Integration, *, actor: Actor = actors.SYSTEM, confirmed=()) -> Outcome:
    """One membership run. `confirmed`: the held removals (synced user ids) an admin agreed
    to; they go if the run still finds them outside every group. The caller starts the new
    users' syncing and the removals (`added_ids`, `removing_ids`)."""
    if not follows_groups(integration):
        return Outcome()
    # No group left (the admin unfollowed the last one): its members left every group.
    groups = list(integration.groups.all())
    try:
        members = _read(integration, groups)
    except ProviderError as error:
        logger.warning("Membership run of integration %s failed: %s", integration.pk, error)
        outcome = Outcome(error=error.code or "unreadable")
    else:
        outcome = _apply(integration, groups, members, confirmed=set(confirmed))
    _report(integration, outcome)
    _record(integration, outcome, actor)
    return outcome


def _read(integration, groups) -> dict[int, dict[str, tuple[str, str]]]:
    """Each group's members by its pk, the rows brought up to date (saved by _apply): one
    group that cannot be read fails the run, since its members would otherwise look gone."""
    directory = providers.groups_for(integration)
    now = timezone.now()
    read = {}
    for group in groups:
        known = {key: tuple(value) for key, value in group.members.items()}
        answer = directory.read_members(group.provider_id, known, group.cursor)
        group.members = {key: list(value) for key, value in answer.members.items()}
        group.cursor = answer.cursor
        group.read_at = now
        read[group.pk] = answer.members
    return read


def _address(value) -> str:
    return (value or "").strip().lower()


def _apply(integration, groups, members, *, confirmed: set[int]) -> Outcome:
    subscriptions = list(
        Subscription.objects.filter(company=integration.company_id, active=True).only("pk", "email")
    )
    by_address = {_address(s.email): s for s in subscriptions}
    matched: dict[int, Subscription] = {}
    without: set[str] = set()  # a person in two groups is one line
    for group in groups:
        count = 0
        for email, upn in members[group.pk].values():
            found = by_address.get(_address(email)) or by_address.get(_address(upn))
            if found is None:
                without.add(_address(email) or _address(upn))
                continue
            matched[found.pk] = found
            count += 1
        group.matched = count
    # "integration" too: the related manager reads each row's integration_id, and a deferred
    # one costs a query per user.
    users = list(
        integration.users.only("pk", "integration", "subscription", "from_groups", "email")
    )
    has_user = {user.subscription_id for user in users} | {user.email for user in users}
    # A mailbox another integration of the company syncs stays there (one sync per mailbox).
    elsewhere = set(
        SyncedUser.objects.filter(integration__company_id=integration.company_id)
        .exclude(integration=integration)
        .values_list("email", flat=True)
    )
    joining, synced_elsewhere = [], []
    for subscription in matched.values():
        address = _address(subscription.email)
        if subscription.pk in has_user or address in has_user:
            continue
        (synced_elsewhere if address in elsewhere else joining).append(subscription)
    only_groups = integration.user_source == Integration.UserSource.GROUPS_ONLY
    leaving = [
        user
        for user in users
        if user.subscription_id not in matched and (only_groups or user.from_groups)
    ]
    outcome = Outcome(
        without_subscription=sorted(without)[:REPORT_LIMIT],
        synced_elsewhere=sorted(_address(s.email) for s in synced_elsewhere)[:REPORT_LIMIT],
        not_in_groups=sorted(_address(s.email) for s in subscriptions if s.pk not in matched)[
            :REPORT_LIMIT
        ],
    )
    with transaction.atomic():
        FollowedGroup.objects.bulk_update(groups, ["members", "cursor", "matched", "read_at"])
        added = SyncedUser.objects.bulk_create(
            [
                SyncedUser(
                    integration=integration,
                    subscription=s,
                    email=_address(s.email),
                    from_groups=True,
                )
                for s in sorted(joining, key=lambda s: _address(s.email))
            ],
            batch_size=BATCH,
        )
    outcome.added_ids = [user.pk for user in added]
    outcome.added = [user.email for user in added][:REPORT_LIMIT]
    agreed = [user for user in leaving if user.pk in confirmed]
    unasked = [user for user in leaving if user.pk not in confirmed]
    if unasked and must_hold(len(unasked), len(users)):
        outcome.held = [user.pk for user in unasked]
        leaving = agreed
    outcome.removing_ids = [user.pk for user in leaving]
    outcome.removed = len(leaving)
    return outcome


def _report(integration, outcome: Outcome) -> None:
    if outcome.error:  # the last good run's report stays, with what held it, and the error
        report, _ = MembershipReport.objects.get_or_create(
            integration=integration, defaults={"finished_at": timezone.now()}
        )
        report.error, report.failed_at = outcome.error, timezone.now()
        report.save(update_fields=["error", "failed_at"])
        return
    MembershipReport.objects.update_or_create(
        integration=integration,
        defaults={
            "finished_at": timezone.now(),
            "added": outcome.added,
            "removed": outcome.removed,
            "without_subscription": outcome.without_subscription,
            "synced_elsewhere": outcome.synced_elsewhere,
            "not_in_groups": outcome.not_in_groups,
            "held_removals": outcome.held,
            "error": "",
            "failed_at": None,
        },
    )


def _record(integration, outcome: Outcome, actor: Actor) -> None:
    if outcome.error:
        Activity.record(
            integration,
            "group_members_failed",
            actor=actor,
            level=Activity.Level.WARNING,
            params={"code": outcome.error},
        )
        return
    Activity.record(
        integration,
        "group_members_held" if outcome.held else "group_members_synced",
        actor=actor,
        params={
            "added": len(outcome.added_ids),
            "removed": outcome.removed,
            "held": len(outcome.held),
            "without": len(outcome.without_subscription),
            "elsewhere": len(outcome.synced_elsewhere),
        },
    )
