"""Reconcile: a plan against what was last written to One X → the operations that close the gap.

`diff` and `settle` are pure; `stored_bookings` and `record` (and their chunk variants, one
statement each for any number of mailboxes) are the only database access. A
Booking row changes only after One X accepted its operation, so a failed operation leaves the
old row and the next run tries again; nothing is lost or written twice.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import blake2b

from django.db.models import Q

from onex.operations import AbsenceEntry, DeleteAbsence, Operation, OperationResult, PutAbsence

from .models import Booking
from .rules import Plan, PlannedAbsence


@dataclass(frozen=True, slots=True)
class StoredBooking:
    """What the reconcile needs of a Booking row."""

    external_id: str
    fingerprint: str
    end: datetime


@dataclass
class Settlement:
    """Which operations One X accepted, and what failed."""

    written: list[tuple[PlannedAbsence, str]] = field(default_factory=list)  # (absence, fp)
    deleted: list[str] = field(default_factory=list)  # external ids
    failures: list[OperationResult] = field(default_factory=list)

    @property
    def permanent_failures(self) -> list[OperationResult]:
        return [result for result in self.failures if result.permanent]


def fingerprint(absence: PlannedAbsence, subscription_id: str) -> str:
    """A digest of every field pushed to One X: equal fingerprints mean nothing to send."""
    text = (
        f"{subscription_id}|{absence.reason_code}|{absence.start.timestamp()}|"
        f"{absence.end.timestamp()}|{absence.return_at.timestamp()}|{absence.forwarding}|"
        f"{'open' if absence.open_diversion else ''}|{absence.note or ''}"
    )
    return blake2b(text.encode(), digest_size=16).hexdigest()


def entry_for(absence: PlannedAbsence) -> AbsenceEntry:
    return AbsenceEntry(
        reason_code=absence.reason_code,
        start=absence.start,
        end=absence.end,
        return_at=absence.return_at,
        divert=absence.divert,
        open_diversion=absence.open_diversion,
        note=absence.note,
    )


def diff(plan: Plan, stored: Iterable[StoredBooking]) -> list[Operation]:
    """Puts for new or changed absences, deletes for stored ones the plan no longer has.

    Stored bookings that ended before the window are history (kept until the retention purge),
    not deletions.
    """
    subscription_id = plan.subscription_id
    stored_by_id = {booking.external_id: booking for booking in stored}
    operations: list[Operation] = []
    planned_ids = set()
    for absence in plan.absences:
        planned_ids.add(absence.external_id)
        before = stored_by_id.get(absence.external_id)
        if before is None or before.fingerprint != fingerprint(absence, subscription_id):
            operations.append(PutAbsence(subscription_id, absence.external_id, entry_for(absence)))
    for external_id, booking in stored_by_id.items():
        if external_id not in planned_ids and booking.end > plan.window_start:
            operations.append(DeleteAbsence(subscription_id, external_id))
    return operations


def settle(plan: Plan, results: Sequence[OperationResult]) -> Settlement:
    """Sort One X's answers into rows to write, rows to delete and failures."""
    by_id = {absence.external_id: absence for absence in plan.absences}
    settlement = Settlement()
    for result in results:
        operation = result.operation
        if not result.ok:
            settlement.failures.append(result)
        elif isinstance(operation, PutAbsence):
            absence = by_id[operation.external_id]
            settlement.written.append((absence, fingerprint(absence, operation.subscription_id)))
        else:
            settlement.deleted.append(operation.external_id)
    return settlement


def stored_bookings(synced_user) -> list[StoredBooking]:
    return [
        StoredBooking(external_id, fp, end)
        for external_id, fp, end in synced_user.bookings.values_list(
            "external_id", "fingerprint", "end"
        )
    ]


def stored_bookings_many(synced_user_ids) -> dict[int, list[StoredBooking]]:
    """stored_bookings of a chunk's mailboxes in one SELECT, by user id (every id present)."""
    ids = list(synced_user_ids)
    stored: dict[int, list[StoredBooking]] = {pk: [] for pk in ids}
    rows = Booking.objects.filter(synced_user_id__in=ids).values_list(
        "synced_user_id", "external_id", "fingerprint", "end"
    )
    for user_id, external_id, fp, end in rows:
        stored[user_id].append(StoredBooking(external_id, fp, end))
    return stored


BOOKING_UPDATE_FIELDS = [
    "provider_item_id",
    "series_master_id",
    "start",
    "end",
    "all_day",
    "forwarding",
    "open_diversion",
    "reason_code",
    "return_at",
    "note",
    "decided_by",
    "fingerprint",
    "pushed_at",
]


def record(synced_user, settlement: Settlement, pushed_at: datetime) -> None:
    """Write what One X accepted into Booking rows (and only that)."""
    record_many([(synced_user, settlement)], pushed_at)


def record_many(settled, pushed_at: datetime) -> None:
    """record for a chunk: `settled` is (synced user, settlement) pairs. One upsert of every
    written row and one DELETE of every deleted one, whatever the number of mailboxes; the
    caller wraps it in a transaction."""
    rows = [
        _booking_row(synced_user, absence, fp, pushed_at)
        for synced_user, settlement in settled
        for absence, fp in settlement.written
    ]
    if rows:
        Booking.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["synced_user", "external_id"],
            update_fields=BOOKING_UPDATE_FIELDS,
        )
    gone = Q()
    for synced_user, settlement in settled:
        if settlement.deleted:
            gone |= Q(synced_user_id=synced_user.pk, external_id__in=settlement.deleted)
    if gone:
        Booking.objects.filter(gone).delete()


def _booking_row(synced_user, absence: PlannedAbsence, fp: str, pushed_at: datetime) -> Booking:
    return Booking(
        synced_user=synced_user,
        external_id=absence.external_id,
        provider_item_id=absence.provider_item_id[:512],
        series_master_id=(absence.series_master_id or "")[:512],
        start=absence.start,
        end=absence.end,
        all_day=absence.all_day,
        forwarding=absence.forwarding,
        open_diversion=absence.open_diversion,
        reason_code=absence.reason_code,
        return_at=absence.return_at,
        note=absence.note or "",
        decided_by=absence.decided_by[:100],
        fingerprint=fp,
        pushed_at=pushed_at,
    )
