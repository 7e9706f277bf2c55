"""The one removal path: a user's, a paused integration's or a removed integration's One X
entries and notification subscriptions go, batched, and only what One X confirmed is forgotten.

Each mailbox is claimed (the sync's per-mailbox lock) while its entries go, so a run that is
under way cannot write an entry back after it was deleted. What could not be done now (a
mailbox another run holds, entries One X did not delete) raises RemovalIncomplete, and the
task retries; the rows stay until then, so nothing is lost track of.
"""

from django.db.models import Q
from django.utils import timezone

from onex.operations import AbsenceWriter, DeleteAbsence

from . import actors, claims, subscriptions, sync
from .actors import Actor
from .models import Activity, Booking, Integration, MailboxSubscription, SyncedUser

USERS_PER_ROUND = 500  # mailboxes whose entries go in one round (One X batches 100 per call)


class RemovalIncomplete(Exception):
    """Something is left (a busy mailbox, entries One X did not delete): retry later."""


class MailboxBusy(RemovalIncomplete):
    """A sync run holds the mailbox right now."""


def remove_synced_user(
    synced_user: SyncedUser,
    writer: AbsenceWriter | None = None,
    *,
    actor: Actor = actors.SYSTEM,
    record: bool = True,
) -> None:
    """Stop syncing a mailbox: end its subscription, delete its One X entries, then its
    bookings, row and email. The address goes from the activity log too (removing a user
    deletes their email): the log keeps who removed a user and when, not whom. `record`:
    False when a membership run's one entry already tells of it."""
    integration, email = synced_user.integration, synced_user.email
    now = timezone.now()
    if not claims.claim(synced_user, now):
        raise MailboxBusy("the mailbox is being synced")
    try:  # claimed to the end, so no run writes an entry back in between
        with claims.renewing([synced_user.pk], now):
            deleted, failed = _delete_entries([synced_user], writer or sync.default_writer())
            if failed:
                raise RemovalIncomplete(f"{failed} entries left")
            subscriptions.end(
                MailboxSubscription.objects.filter(synced_user=synced_user), integration
            )
            Activity.objects.filter(integration=integration).filter(
                Q(synced_user=synced_user) | Q(subject=Activity.Subject.USER, subject_label=email)
            ).update(subject_label="")
            synced_user.delete()
    finally:
        claims.release(synced_user, now)
    if not record:
        return
    Activity.record(
        integration,
        "user_removed",
        actor=actor,
        params={"n": deleted},
        subject=Activity.Subject.USER,
    )


def clear_integration(integration: Integration, writer: AbsenceWriter | None = None) -> int:
    """A paused or removed integration: end every subscription and delete every One X entry.
    Returns how many entries were deleted."""
    subscriptions.end(
        MailboxSubscription.objects.filter(synced_user__integration=integration), integration
    )
    return clear_entries(integration.users.all(), writer)


def remove_integration(integration: Integration, writer: AbsenceWriter | None = None) -> None:
    """Everything of a removed integration: entries, subscriptions, then bookings, users (and
    their email addresses), rules and settings. The log keeps one line, about the company."""
    users = integration.users.count()
    deleted = clear_integration(integration, writer)
    company_id, name = integration.company_id, integration.name
    integration.delete()  # cascades to users, bookings, rules, subscriptions and its log
    Activity.record(
        None,
        "integration_removed",
        actor=actors.SYSTEM,
        params={"name": name, "users": users, "entries": deleted},
        subject=Activity.Subject.INTEGRATION,
        subject_label=name,
        company_id=company_id,
    )


def clear_entries(users, writer: AbsenceWriter | None = None) -> int:
    """Delete the One X entries of `users` (a queryset) in batches across mailboxes; returns
    how many went. An entry One X no longer knows (a permanent failure such as a vanished
    subscription) counts as deleted."""
    writer = writer or sync.default_writer()
    deleted = left = 0
    ids = list(users.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), USERS_PER_ROUND):
        now = timezone.now()
        round_users = list(
            SyncedUser.objects.filter(pk__in=ids[start : start + USERS_PER_ROUND]).select_related(
                "integration__company", "subscription"
            )
        )
        claimed = [user for user in round_users if claims.claim(user, now)]
        left += len(round_users) - len(claimed)
        try:
            with claims.renewing([user.pk for user in claimed], now):
                gone, failed = _delete_entries(claimed, writer)
        finally:
            for user in claimed:
                claims.release(user, now)
        deleted += gone
        left += failed
    if left:
        raise RemovalIncomplete(f"{left} mailboxes or entries left")
    return deleted


def _delete_entries(users, writer) -> tuple[int, int]:
    if not users:
        return 0, 0
    by_user = {user.pk: user for user in users}
    bookings = list(
        Booking.objects.filter(synced_user__in=users).values_list(
            "pk", "synced_user_id", "external_id"
        )
    )
    if not bookings:
        return 0, 0
    operations = [
        DeleteAbsence(by_user[user_id].subscription.onex_id, external_id)
        for _pk, user_id, external_id in bookings
    ]
    company = users[0].integration.company.onex_id
    results = writer.apply(company, operations)
    gone = [pk for (pk, *_), r in zip(bookings, results, strict=True) if r.ok or r.permanent]
    Booking.objects.filter(pk__in=gone).delete()
    return len(gone), len(bookings) - len(gone)
