"""Benchmark: plan and reconcile many mailboxes in memory (no database, no network).

Prints items per second for a first run (everything new), a steady run (nothing changed) and a
run after 10 % of the bookings moved, and the process's peak memory.
"""

import gc
import random
import resource
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from datetime import time as clock

from django.core.management.base import BaseCommand

from calendarsync.items import AddinChoice, CalendarItem, ItemKind, Response, Sensitivity, ShowAs
from calendarsync.reconcile import StoredBooking, diff, settle
from calendarsync.rules import STOCKHOLM, Action, PlanSettings, Rule, plan
from onex.operations import InMemoryAbsences

NOW = datetime(2026, 3, 23, 7, 0, tzinfo=STOCKHOLM)
SHOW_AS = [ShowAs.BUSY] * 6 + [ShowAs.OOF, ShowAs.TENTATIVE, ShowAs.FREE, ShowAs.WORKING_ELSEWHERE]
RULES = (
    Rule(
        id=1,
        action=Action.DIVERT,
        reason_code="MOTE",
        show_as=frozenset({ShowAs.BUSY}),
        weekdays=frozenset(range(5)),
        time_from=clock(7),
        time_to=clock(18),
    ),
    Rule(id=2, action=Action.INFO, reason_code="MOTE", show_as=frozenset({ShowAs.TENTATIVE})),
)


def make_calendar(rng: random.Random, mailbox: int, count: int) -> list[CalendarItem]:
    items = []
    for n in range(count):
        all_day = rng.random() < 0.1
        if all_day:
            day = NOW.date() + timedelta(days=rng.randrange(14))
            start = datetime.combine(day, clock.min, tzinfo=STOCKHOLM)
            end = start + timedelta(days=rng.choice((1, 1, 2, 5)))
        else:
            start = NOW + timedelta(minutes=15 * rng.randrange(14 * 96))
            end = start + timedelta(minutes=15 * rng.randrange(1, 9))
        items.append(
            CalendarItem(
                provider_item_id=f"AAMkAD{mailbox:06d}-{n:04d}",
                series_master_id=None,
                kind=ItemKind.SINGLE,
                start=start,
                end=end,
                all_day=all_day,
                show_as=rng.choice(SHOW_AS),
                sensitivity=Sensitivity.PRIVATE if rng.random() < 0.05 else Sensitivity.NORMAL,
                cancelled=rng.random() < 0.02,
                my_response=Response.ACCEPTED,
                categories=(),
                subject=None,
                addin_choice=AddinChoice("divert", "LUNCH") if rng.random() < 0.05 else None,
            )
        )
    return items


class Command(BaseCommand):
    help = "Plan and reconcile N mailboxes × M items in memory; print items/s and peak memory."

    def add_arguments(self, parser):
        parser.add_argument("--mailboxes", type=int, default=10_000)
        parser.add_argument("--items", type=int, default=30)
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, mailboxes, items, seed, **options):
        rng = random.Random(seed)
        calendars = [make_calendar(rng, n, items) for n in range(mailboxes)]
        settings = [
            PlanSettings(
                subscription_id=f"sub-{n}",
                rules=RULES,
                has_diversion=n % 3 != 0,
                has_open_diversion=False,
            )
            for n in range(mailboxes)
        ]
        stored: list[dict[str, StoredBooking]] = [{} for _ in range(mailboxes)]
        # The generated calendars stand in for what a worker fetches one mailbox at a time;
        # keep the garbage collector from rescanning all of them on every collection.
        gc.collect()
        gc.freeze()
        onex = InMemoryAbsences()
        total = mailboxes * items
        self.stdout.write(
            f"Planning and reconciling {mailboxes:,} mailboxes × {items} items "
            f"= {total:,} items in memory"
        )

        def run(label):
            started, cpu_started = time.perf_counter(), time.process_time()
            operations = 0
            for n in range(mailboxes):
                operations += reconcile_one(calendars[n], settings[n], stored[n], onex)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            # CPU time too: on a shared machine the wall clock also counts other processes.
            self.stdout.write(
                f"  {label:<26} {elapsed:6.2f} s {total / elapsed:>9,.0f} items/s "
                f"(CPU {cpu:5.2f} s, {total / cpu:>7,.0f} items/s)  {operations:>8,} operations"
            )

        run("first run (all new):")
        run("second run (unchanged):")
        for calendar in calendars:
            for index in range(0, len(calendar), 10):  # move every tenth booking by an hour
                moved = calendar[index]
                calendar[index] = _moved(moved, timedelta(hours=1))
        run("third run (10 % moved):")
        self.stdout.write(f"  One X entries held: {len(onex.entries):,}")
        self.stdout.write(f"Peak memory (max RSS): {_max_rss_mib():,.0f} MiB")


def reconcile_one(calendar, settings, stored, onex) -> int:
    a_plan = plan(calendar, settings, NOW)
    operations = diff(a_plan, stored.values())
    if operations:
        settlement = settle(a_plan, onex.apply("bench", operations))
        for absence, fp in settlement.written:
            stored[absence.external_id] = StoredBooking(absence.external_id, fp, absence.end)
        for external_id in settlement.deleted:
            del stored[external_id]
    return len(operations)


def _moved(item: CalendarItem, by: timedelta) -> CalendarItem:
    return replace(item, start=item.start + by, end=item.end + by)


def _max_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB
