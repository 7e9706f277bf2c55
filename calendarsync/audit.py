"""The daily audit: One X's entries read back and brought in step with the plan, both ways.

Nothing else reads One X back, so an entry changed or deleted there behind the product's back,
or a Booking row that no longer says what One X holds (a record that failed after One X had
accepted), would stay wrong until the booking itself changed. Per integration the audit reads
the mailboxes' calendars (bulk, as the sync does), plans them, lists the company's entries
(`GET /absences`, paged, through the One X client and so within its rate budget) and repairs:

- new: planned, neither in One X nor in a Booking row (the day that moved into the window at
  midnight, when the audit runs) → written; not drift;
- missing: planned, not in One X though a Booking row says it is → written;
- stale: in One X, not as planned → rewritten;
- orphaned: an entry of ours (external id "mss-…") that no plan has → deleted, on the
  integration's subscriptions and on company subscriptions no synced user holds;
- Booking rows that disagree with the plan → corrected, so the next sync's diff is right.

The plan is the truth; One X and Booking both follow it. Entries without our prefix belong to
someone else and are never touched. Writes go through the sync's path (`AbsenceWriter.apply`,
batches of 100 across the chunk's mailboxes; a Booking row changes only after One X accepted).
Each mailbox is claimed (the sync's lock) while it is audited, so no sync run writes in between;
a busy or unreadable mailbox is skipped, never judged without its plan. One Activity per
integration records the counts, and each mailbox brought in step counts as read for the day
(`last_synced_at`): run at midnight, the audit is the day's read (calendarsync/daily.py).

A mailbox synced between the listing and its chunk may be counted as drift it no longer has;
the repair then writes what the sync wrote, so only the count is off, never One X.
"""

import enum
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from onex.client import OneXClient, OneXError, get_client
from onex.operations import DeleteAbsence, Operation, OperationResult, PutAbsence

from . import actors, claims, planning, providers, reconcile, sync
from .models import Activity, Booking, Integration, SyncedUser
from .providers.base import AccessLost, CalendarProvider, ProviderError
from .rules import Plan, PlannedAbsence

logger = logging.getLogger(__name__)

OWN_PREFIX = "mss-"  # rules.external_id: every entry this product writes starts so
PAGE_SIZE = 500  # entries per GET /absences page
# The daily run (00:00 Stockholm, as the window's leading day moves in: the audit is the day's
# read of every mailbox, calendarsync/daily.py) starts the integrations' audits over five
# minutes, before the hourly catch-up (minute 40) would find the mailboxes busy. Countdowns stay
# within MSS_TASK_MAX_COUNTDOWN: a longer one outlives the broker's visibility timeout, and
# Redis would hand the message out again before it ran.
SPREAD_SECONDS = 300
RETRY_SECONDS = 300  # One X could not list its entries: the audit tries again this much later


class Drift(enum.StrEnum):
    NEW = "new"  # planned, neither in One X nor in a row: new work (the day that moved in)
    MISSING = "missing"
    STALE = "stale"
    ORPHANED = "orphaned"


class Outcome(enum.StrEnum):
    DONE = "done"  # every mailbox audited; the Activity is recorded
    CONTINUES = "continues"  # the deadline came first: go on after `resume_after`
    NOT_SYNCING = "not_syncing"  # paused, needs attention, pending or being removed
    ACCESS_LOST = "access_lost"  # the provider said so; the integration needs attention now
    ONEX_FAILED = "onex_failed"  # One X's entries could not be listed


@dataclass
class AuditCounts:
    new: int = 0  # not drift: absences no sync had seen yet, written now
    missing: int = 0
    stale: int = 0
    orphaned: int = 0
    bookings_corrected: int = 0
    failed: int = 0  # repairs One X refused or could not take now (the next sync retries)
    checked: int = 0  # mailboxes audited
    skipped: int = 0  # mailboxes not audited: another run held them, or unreadable

    def __add__(self, other: "AuditCounts") -> "AuditCounts":
        return AuditCounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "AuditCounts":
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in (data or {}).items() if k in names})

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.orphaned + self.bookings_corrected

    def count(self, drift: Drift) -> None:
        setattr(self, drift.value, getattr(self, drift.value) + 1)


@dataclass(frozen=True)
class AuditResult:
    outcome: Outcome
    counts: AuditCounts  # everything so far, including what earlier steps carried
    resume_after: int | None = None  # with CONTINUES: the last synced user id audited


def audit_integration(
    integration: Integration,
    *,
    after_user_id: int = 0,
    carried: AuditCounts | None = None,
    deadline: float | None = None,
    provider: CalendarProvider | None = None,
    client: OneXClient | None = None,
    page_size: int = PAGE_SIZE,
) -> AuditResult:
    """Audit the integration's mailboxes after `after_user_id` (all, by default) and repair
    what differs. When done, the one Activity is recorded with the counts (`carried` from
    earlier steps included). With a `deadline` (time.monotonic()) it stops between chunks once
    the deadline passed and answers CONTINUES, so a task can hand over to the next one."""
    carried = carried or AuditCounts()
    integration.refresh_from_db(fields=["active", "status"])
    if not integration.syncing:
        return AuditResult(Outcome.NOT_SYNCING, carried)
    client = client or get_client()
    now = timezone.now()
    company_id = integration.company.onex_id
    try:
        listed = own_entries(client, company_id, now, page_size)
    except OneXError as exc:
        logger.warning("One X audit of integration %s: listing failed: %s", integration.pk, exc)
        return AuditResult(Outcome.ONEX_FAILED, carried)
    users = list(
        integration.users.may_sync()
        .filter(pk__gt=after_user_id)
        .select_related("subscription")
        .order_by("pk")
    )
    for user in users:
        user.integration = integration  # one object: an access loss is seen by all
    provider = provider or providers.provider_for(integration)
    shared = planning.integration_settings(integration)
    size = providers.bulk_size(integration.kind)
    counts = AuditCounts()
    for offset in range(0, len(users), size):
        if offset and deadline is not None and time.monotonic() >= deadline:
            return AuditResult(Outcome.CONTINUES, carried + counts, users[offset - 1].pk)
        chunk = users[offset : offset + size]
        try:
            _audit_chunk(chunk, integration, provider, client, listed, shared, now, counts)
        except AccessLost as exc:
            integration.needs_attention(exc)  # its own Activity; the audit stops here
            return AuditResult(Outcome.ACCESS_LOST, carried + counts)
    _remove_unheld(integration, client, listed, counts)
    total = carried + counts
    record(integration, total)
    return AuditResult(Outcome.DONE, total)


def step_deadline() -> float:
    """When a task's step stops taking new chunks: half its soft time limit from now."""
    return time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT / 2


def record(integration: Integration, counts: AuditCounts) -> Activity:
    return Activity.record(
        integration,
        "onex_audited",
        actor=actors.SYSTEM,
        params=counts.as_dict(),
        level=Activity.Level.WARNING if counts.failed else Activity.Level.INFO,
    )


def own_entries(client, company_id, now, page_size=PAGE_SIZE) -> dict[str, dict[str, dict]]:
    """The company's current and coming entries of ours: subscription id → external id →
    the listed entry. Entries that ended are history (the plan has none either)."""
    by_subscription: dict[str, dict[str, dict]] = defaultdict(dict)
    for entry in client.list_absences(company_id, start=now, page_size=page_size):
        external_id = entry.get("externalId") or ""
        if external_id.startswith(OWN_PREFIX):
            by_subscription[entry.get("subscriptionId") or ""][external_id] = entry
    return by_subscription


# ----- one chunk of mailboxes


@dataclass
class Findings:
    """What one mailbox's audit found: One X operations (with the drift each repairs) and
    Booking rows to correct without a One X write."""

    operations: list[Operation] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    corrections: list[tuple[PlannedAbsence, str]] = field(default_factory=list)  # (absence, fp)
    stray_rows: list[str] = field(default_factory=list)  # rows of absences nobody has
    wrong_rows: set[str] = field(default_factory=set)  # rows fixed once their operation is

    def add(self, operation: Operation, drift: Drift) -> None:
        self.operations.append(operation)
        self.drifts.append(drift)


def compare(
    plan: Plan, entries: dict[str, dict], rows: dict[str, Booking], protected=frozenset()
) -> Findings:
    """Plan vs One X's entries and the Booking rows of one mailbox (both keyed by external
    id; entries of ours only, rows not ended). Pure. `protected`: external ids other mailboxes
    on the same subscription have rows for (theirs, not orphans)."""
    subscription_id = plan.subscription_id
    findings = Findings()
    planned = set()
    for absence in plan.absences:
        external_id = absence.external_id
        planned.add(external_id)
        fp = reconcile.fingerprint(absence, subscription_id)
        entry, row = entries.get(external_id), rows.get(external_id)
        row_ok = row is not None and _row_matches(row, absence, fp)
        if entry is None or not _entry_matches(entry, absence):
            put = PutAbsence(subscription_id, external_id, reconcile.entry_for(absence))
            if entry is not None:
                drift = Drift.STALE
            else:
                drift = Drift.MISSING if row is not None else Drift.NEW
            findings.add(put, drift)
            if not row_ok and drift != Drift.NEW:
                findings.wrong_rows.add(external_id)
        elif not row_ok:
            findings.corrections.append((absence, fp))
    for external_id in entries:
        if external_id not in planned and external_id not in protected:
            findings.add(DeleteAbsence(subscription_id, external_id), Drift.ORPHANED)
            if external_id in rows:
                findings.wrong_rows.add(external_id)
    findings.stray_rows = [
        external_id
        for external_id in rows
        if external_id not in planned and external_id not in entries
    ]
    return findings


def _audit_chunk(users, integration, provider, client, listed, shared, now, counts) -> None:
    claimed_at = timezone.now()
    claimed = [user for user in users if claims.claim(user, claimed_at)]
    counts.skipped += len(users) - len(claimed)
    if not claimed:
        return
    try:
        with claims.renewing([user.pk for user in claimed], claimed_at):
            _audit_claimed(claimed, integration, provider, client, listed, shared, now, counts)
    finally:
        for user in claimed:
            claims.release(user, claimed_at)


def _audit_claimed(claimed, integration, provider, client, listed, shared, now, counts) -> None:
    try:
        fetched = sync._fetch_many(provider, claimed, integration, now)  # raises AccessLost
    except AccessLost:
        raise
    except ProviderError as exc:  # the bulk read failed as a whole: nothing to judge by
        logger.warning("One X audit of integration %s: read failed: %s", integration.pk, exc)
        fetched = {}
    rows, protected = _rows(claimed, now)
    audits = []
    for user in claimed:
        items = fetched.get(user.email)
        if items is None or isinstance(items, ProviderError):
            counts.skipped += 1
            continue
        plan = planning.plan_for_synced_user(user, items, now=now, shared=shared)
        entries = listed.get(user.subscription.onex_id, {})
        findings = compare(plan, entries, rows[user.pk], protected[user.pk])
        audits.append((user, plan, findings))
    _repair(audits, integration.company.onex_id, client, now, counts)


def _rows(users, now) -> tuple[dict[int, dict[str, Booking]], dict[int, set[str]]]:
    """The users' Booking rows that have not ended, and per user the external ids other
    mailboxes on the same subscription hold rows for (one query)."""
    rows: dict[int, dict[str, Booking]] = {user.pk: {} for user in users}
    held: dict[int, list[tuple[int, str]]] = defaultdict(list)  # subscription → (user, id)
    bookings = Booking.objects.filter(
        synced_user__subscription_id__in={user.subscription_id for user in users}, end__gt=now
    ).annotate(subscription_pk=F("synced_user__subscription_id"))
    for booking in bookings:
        if booking.synced_user_id in rows:
            rows[booking.synced_user_id][booking.external_id] = booking
        held[booking.subscription_pk].append((booking.synced_user_id, booking.external_id))
    protected = {
        user.pk: {
            external_id for owner, external_id in held[user.subscription_id] if owner != user.pk
        }
        for user in users
    }
    return rows, protected


def _repair(audits, company_id, client, now, counts) -> None:
    """Apply every mailbox's operations in one writer call (batches of 100 across them), then
    write the Booking rows of what One X accepted and the corrections."""
    operations = [op for _user, _plan, findings in audits for op in findings.operations]
    results: list[OperationResult] = []
    if operations:
        try:
            results = client.apply(company_id, operations)
        except OneXError as exc:  # nothing was accepted
            results = [
                OperationResult(op, ok=False, code=exc.code, permanent=exc.permanent)
                for op in operations
            ]
    offset, in_step = 0, []
    for user, plan, findings in audits:
        mine = results[offset : offset + len(findings.operations)]
        offset += len(findings.operations)
        if all(result.ok for result in mine):
            in_step.append(user.pk)
        for result, drift in zip(mine, findings.drifts, strict=True):
            if result.ok:
                counts.count(drift)
                if result.operation.external_id in findings.wrong_rows:
                    counts.bookings_corrected += 1
            else:
                counts.failed += 1
        settlement = reconcile.settle(plan, mine)
        settlement.written += findings.corrections
        settlement.deleted += findings.stray_rows
        reconcile.record(user, settlement, now)
        counts.bookings_corrected += len(findings.corrections) + len(findings.stray_rows)
        counts.checked += 1
    # A mailbox the audit brought in step was read in full: the day's reconcile leaves it out.
    SyncedUser.objects.filter(pk__in=in_step).update(
        last_synced_at=now, state=SyncedUser.State.OK, last_error=""
    )


def _remove_unheld(integration, client, listed, counts) -> None:
    """Our entries on company subscriptions no synced user holds (of any integration): nobody
    else would ever remove them. Subscriptions of other integrations are theirs to audit."""
    held = set(
        SyncedUser.objects.filter(integration__company_id=integration.company_id).values_list(
            "subscription__onex_id", flat=True
        )
    )
    operations = [
        DeleteAbsence(subscription_id, external_id)
        for subscription_id, entries in listed.items()
        if subscription_id not in held
        for external_id in entries
    ]
    if not operations:
        return
    try:
        results = client.apply(integration.company.onex_id, operations)
    except OneXError:
        counts.failed += len(operations)
        return
    for result in results:
        if result.ok:
            counts.orphaned += 1
        else:
            counts.failed += 1


# ----- comparing


def _row_matches(row: Booking, absence: PlannedAbsence, fp: str) -> bool:
    return (
        row.fingerprint == fp
        and row.start == absence.start
        and row.end == absence.end
        and row.return_at == absence.return_at
        and row.reason_code == absence.reason_code
        and row.forwarding == absence.forwarding
        and row.open_diversion == absence.open_diversion
        and (row.note or "") == (absence.note or "")
    )


def _entry_matches(entry: dict, absence: PlannedAbsence) -> bool:
    """A listed entry (the contract's fields, onex-api.md) says what the plan says."""
    return (
        entry.get("reasonCode") == absence.reason_code
        and _moment(entry.get("start")) == absence.start
        and _moment(entry.get("end")) == absence.end
        and _moment(entry.get("returnAt") or entry.get("end")) == absence.return_at
        and entry.get("divert") is absence.divert
        and bool(entry.get("openDiversion")) is absence.open_diversion
        and (entry.get("note") or None) == (absence.note or None)
    )


def _moment(value) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None
