"""The initial-sync benchmark behind `manage.py bench_onex --initial-sync N`: N mailboxes, each
with about 20 absences in a 14-day window, synced for the first time through the sync core's
chunk path (`sync.sync_mailboxes` over `sync.chunks_of`) from several worker processes, with an
in-memory calendar and the real One X client against a One X sandbox at its default rate limit.

It prints the One X requests, operations per request, 429s, the wall time as a ratio of the
rate-limit floor (operations ÷ 100 per request ÷ the limit per minute), and the absences lost
or duplicated in the sandbox's store against the plan. Its rows (companies named
`bench-initial-…`) are removed before and after a run.
"""

import multiprocessing
import os
import queue
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import connections
from django.utils import timezone

from calendarsync import planning, reconcile, sync
from calendarsync.items import CalendarItem, ItemKind, Response, Sensitivity, ShowAs
from calendarsync.models import Activity, Booking, Integration, SyncedUser
from calendarsync.providers.memory import InMemoryCalendar
from onex.client import BATCH_MAX, entry_body
from onex.models import AbsenceReason, Company, Subscription

PREFIX = "bench-initial"
REASONS = (("MOTE", "Möte"), ("FRANVARANDE", "Frånvarande"))
RETRIES = 5  # a chunk's passing failures are run again, as the task's retries would


@dataclass(frozen=True)
class Options:
    mailboxes: int
    absences: int = 20
    days: int = 14
    workers: int = 2
    per_company: int = 1000
    reads: int = 5  # provider bulk reads per chunk (sync.chunks_of)
    seed: int = 1


def run(url: str, options: Options, write) -> None:
    """Set up, sync, verify and clean up; `write` prints a line."""
    control = requests.Session()
    knobs = control.get(f"{url}/_sandbox/knobs", timeout=10).json()
    limit = knobs["rate_limit"]
    write(
        f"Initial sync of {options.mailboxes:,} mailboxes × ~{options.absences} absences "
        f"({options.days} days) from {options.workers} workers in chunks of "
        f"{options.reads} bulk reads, One X sandbox at {url} "
        f"(rate limit {limit or 'off'}/{knobs['rate_window_seconds']:g} s per client id, "
        f"{knobs['latency_ms']:g} ms latency)"
    )
    cleanup()
    now = timezone.now()
    companies = create_population(control, url, options)
    users = SyncedUser.objects.filter(integration__company__in=companies)
    calendar = calendars(users, options, now)
    plan = planned(users, calendar, now)
    write(f"  set up: {len(plan):,} absences planned")
    control.delete(f"{url}/_sandbox/requests", timeout=10)

    chunks = sync.chunks_of(users, reads=options.reads)
    connections.close_all()  # each worker process opens its own connection
    started = time.monotonic()
    stats = run_workers(chunks, calendar, options.workers, url)
    wall = time.monotonic() - started

    log = control.get(f"{url}/_sandbox/requests", timeout=60).json()["items"]
    api = [entry for entry in log if entry["path"].startswith("/v1/")]
    limited = sum(1 for entry in api if entry["status"] == 429)
    writes = [e for e in api if e["status"] != 429 and "/absences" in e["path"]]
    lost, duplicated = tally(control, url, companies, plan)
    operations = len(plan)
    floor = operations / BATCH_MAX / limit * 60 if limit else 0.0
    write(f"  One X requests:         {len(api):,} ({limited:,} answered 429)")
    write(
        f"  operations per request: {operations / max(1, len(writes)):.1f} "
        f"({operations:,} operations in {len(writes):,} accepted requests)"
    )
    write(f"  429s received:          {limited:,}")
    ratio = f" = {wall / floor:.2f} × the rate-limit floor of {floor:.0f} s" if floor else ""
    write(f"  wall time:              {wall:.1f} s{ratio}")
    write(
        f"  mailboxes: {stats['ok']:,} ok, {stats['failed']:,} failed, "
        f"{stats['retried']:,} runs retried after a passing failure"
    )
    write(f"  lost={lost} duplicated={duplicated} (against the plan, in the sandbox's store)")
    rows = Booking.objects.filter(synced_user__integration__company__in=companies).count()
    write(f"  Booking rows: {rows:,} (planned {operations:,})")
    write(f"  load average: {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    cleanup()


# ----- the population


def create_population(control, url, options: Options) -> list[Company]:
    """Companies of `per_company` mailboxes each, in the database (bulk) and in the sandbox."""
    companies = []
    for first in range(0, options.mailboxes, options.per_company):
        number = len(companies)
        onex_id = f"{PREFIX}-{number}"
        company = Company.objects.create(
            name=f"Bench {number}", org_number=f"{PREFIX}-{number}", onex_id=onex_id
        )
        AbsenceReason.objects.bulk_create(
            AbsenceReason(company=company, code=code, label_sv=label) for code, label in REASONS
        )
        integration = Integration.objects.create(
            company=company,
            kind=Integration.Kind.GRAPH,
            name="Bench",
            status=Integration.Status.CONNECTED,
            days_ahead=options.days,
        )
        count = min(options.per_company, options.mailboxes - first)
        subscriptions = Subscription.objects.bulk_create(
            Subscription(
                company=company,
                onex_id=f"sub-{first + n}",
                email=f"user{first + n:06d}@{onex_id}.se",
            )
            for n in range(count)
        )
        SyncedUser.objects.bulk_create(
            SyncedUser(integration=integration, subscription=s, email=s.email)
            for s in subscriptions
        )
        control.put(
            f"{url}/_sandbox/companies/{onex_id}",
            json={
                "name": company.name,
                "subscriptions": [
                    {"subscriptionId": s.onex_id, "email": s.email} for s in subscriptions
                ],
                "reasons": [
                    {"code": code, "label": {"sv": label}, "diversionAllowed": True}
                    for code, label in REASONS
                ],
            },
            timeout=60,
        ).raise_for_status()
        companies.append(company)
    return companies


def calendars(users, options: Options, now: datetime) -> InMemoryCalendar:
    """~`absences` busy (or out-of-office) bookings per mailbox, all inside the window however
    long the run takes."""
    rng = random.Random(options.seed)
    calendar = InMemoryCalendar()
    first = now + timedelta(hours=2)
    slots = (options.days * 24 - 4) * 4  # quarter hours
    for email in users.order_by("pk").values_list("email", flat=True):
        count = max(1, options.absences + rng.randint(-2, 2))
        calendar.mailboxes[email] = [
            _booking(rng, f"{email}-{n}", first + timedelta(minutes=15 * rng.randrange(slots)))
            for n in range(count)
        ]
    return calendar


def _booking(rng, item_id, start) -> CalendarItem:
    return CalendarItem(
        provider_item_id=item_id,
        series_master_id=None,
        kind=ItemKind.SINGLE,
        start=start,
        end=start + timedelta(minutes=15 * rng.randrange(1, 9)),
        all_day=False,
        show_as=ShowAs.OOF if rng.random() < 0.1 else ShowAs.BUSY,
        sensitivity=Sensitivity.NORMAL,
        cancelled=False,
        my_response=Response.ORGANIZER,
    )


def planned(users, calendar, now) -> dict[tuple[str, str, str], tuple]:
    """What One X should hold: (company, subscription, external id) → the entry's body."""
    plan = {}
    for user in users.select_related("integration__company", "subscription").order_by("pk"):
        end = now + timedelta(days=user.integration.days_ahead)
        items = calendar.fetch(user.email, now, end, include_subject=False)
        company, subscription = user.integration.company.onex_id, user.subscription.onex_id
        for absence in planning.plan_for_synced_user(user, items, now=now).absences:
            body = entry_body(reconcile.entry_for(absence))
            plan[(company, subscription, absence.external_id)] = _comparable(body)
    calendar.fetches.clear()
    return plan


def _comparable(body: dict) -> tuple:
    moment = datetime.fromisoformat
    return (
        body["reasonCode"],
        moment(body["start"]),
        moment(body["end"]),
        moment(body.get("returnAt") or body["end"]),
        bool(body.get("divert")),
        bool(body.get("openDiversion")),
        body.get("note") or None,
    )


# ----- the workers


def run_workers(chunks, calendar, workers: int, url: str) -> Counter:
    # fork: the workers share the generated calendars with this process instead of copying
    context = multiprocessing.get_context("fork")
    todo, done = context.Queue(), context.Queue()
    for chunk in chunks:
        todo.put(chunk)
    for _ in range(workers):
        todo.put(None)
    processes = [
        context.Process(target=_worker, args=(todo, done, calendar, url), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    stats = Counter()
    for _ in processes:
        stats.update(done.get())
    for process in processes:
        process.join()
    return stats


def _worker(todo, done, calendar, url) -> None:
    """One worker process: its own database connection and One X client (the product's, from
    settings), running chunks as the chunk task does, retrying passing failures."""
    settings.ONEX_API_URL = url
    stats = Counter()
    try:
        while True:
            try:
                chunk = todo.get(timeout=5)
            except queue.Empty:
                continue
            if chunk is None:
                break
            for attempt in range(RETRIES + 1):
                outcomes = sync.sync_mailboxes(chunk, provider=calendar)
                chunk = [pk for pk, outcome in outcomes.items() if outcome.retry]
                if not chunk or attempt == RETRIES:
                    break
                stats["retried"] += len(chunk)
                time.sleep(1)
            stats["ok"] += sum(1 for o in outcomes.values() if o.status == sync.Status.OK)
            stats["failed"] += sum(1 for o in outcomes.values() if o.status == sync.Status.FAILED)
    finally:
        connections.close_all()
        done.put(dict(stats))


# ----- the verdict


def tally(control, url, companies, plan) -> tuple[int, int]:
    """lost: planned absences the sandbox lacks or holds otherwise; duplicated: its entries the
    plan has not (a second entry for one absence included)."""
    found = {}
    for company in companies:
        answer = control.get(f"{url}/_sandbox/companies/{company.onex_id}/absences", timeout=120)
        for entry in answer.json()["items"]:
            key = (company.onex_id, entry["subscriptionId"], entry["externalId"])
            found[key] = _comparable(entry)
    lost = sum(1 for key, fields in plan.items() if found.get(key) != fields)
    duplicated = sum(1 for key in found if key not in plan)
    return lost, duplicated


def cleanup() -> None:
    """Remove the benchmark's rows, dependents first (bulk deletes, no per-row collection)."""
    companies = Company.objects.filter(onex_id__startswith=f"{PREFIX}-")
    users = SyncedUser.objects.filter(integration__company__in=companies)
    Booking.objects.filter(synced_user__in=users).delete()
    Activity.objects.filter(company__in=companies).delete()
    users.delete()
    Integration.objects.filter(company__in=companies).delete()
    Subscription.objects.filter(company__in=companies).delete()
    companies.delete()
