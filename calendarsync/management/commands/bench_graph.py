"""Benchmark: initial-sync reads from Exchange Online through the Graph provider.

Starts the Microsoft 365 sandbox as a separate process (`python -m sandbox.m365`), gives it a
tenant of N mailboxes, each holding a realistic fortnight, injects a fixed latency on every HTTP
round trip to Graph, and times two ways of reading every mailbox's window:

- bulk: `GraphProvider.fetch_many` (20 mailboxes per JSON batch, batches in parallel);
- per mailbox: `GraphProvider.fetch` from a pool of threads (what one sync run per mailbox does);
- product: the sync core itself on the database (inside a transaction that is rolled back),
  one worker slot: `sync.sync_mailbox` per mailbox (one read each) against `sync.sync_mailboxes`
  per chunk of 20 (one JSON batch each, what `request_syncs` enqueues), One X in memory.

Prints mailboxes per second and Graph HTTP requests per mailbox (a JSON batch counts once; its
steps are shown separately). The product reaches the sandbox only through settings, as always.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from calendarsync import sync
from calendarsync.management.graph_bench import bench_integration, graph_pointed_at_sandbox
from calendarsync.models import Booking, SyncedUser
from calendarsync.providers.base import ProviderError
from calendarsync.providers.graph.client import GraphClient
from calendarsync.providers.graph.provider import GraphProvider
from calendarsync.reconcile import diff, settle
from calendarsync.rules import PlanSettings, plan
from onex.operations import InMemoryAbsences

BENCH_TENANT = "be9c0000-0000-4000-8000-00000000be9c"


class Command(BaseCommand):
    help = "Time initial-sync reads of many mailboxes from the M365 sandbox (mailboxes/s)."

    def add_arguments(self, parser):
        parser.add_argument("--mailboxes", type=int, default=2000)
        parser.add_argument("--days", type=int, default=14)
        parser.add_argument("--latency-ms", type=int, default=30)
        parser.add_argument("--parallel-batches", type=int, default=8)
        parser.add_argument("--threads", type=int, default=16, help="per-mailbox mode's pool")
        parser.add_argument("--port", type=int, default=0, help="0 = a free port")
        parser.add_argument(
            "--product-mailboxes",
            type=int,
            default=400,
            help="mailboxes for the product mode (sync core on the database); 0 = skip it",
        )

    def handle(self, *args, **options):
        with graph_pointed_at_sandbox(options["port"]) as (base_url, control):
            self._run(base_url, control, options)

    def _run(self, base_url, control, options):
        count = options["mailboxes"]
        started = time.perf_counter()
        control.post(
            f"{base_url}/_sandbox/tenants",
            json={
                "id": BENCH_TENANT,
                "name": "Bench AB",
                "generate": {"users": count, "domain": "bench.se"},
            },
            timeout=600,
        ).raise_for_status()
        self.stdout.write(
            f"sandbox: {count} mailboxes with a fortnight each in "
            f"{time.perf_counter() - started:.1f} s; latency {options['latency_ms']} ms per "
            "Graph round trip"
        )
        control.post(
            f"{base_url}/_sandbox/knobs", json={"latency_ms": options["latency_ms"]}, timeout=10
        ).raise_for_status()
        mailboxes = [f"user{n:05d}@bench.se" for n in range(count)]
        now = timezone.now()
        end = now + timedelta(days=options["days"])

        def log_counts():
            entries = control.get(f"{base_url}/_sandbox/requests", timeout=60).json()["value"]
            control.delete(f"{base_url}/_sandbox/requests", timeout=10)
            top = [e for e in entries if e["path"].startswith("/v1.0") and not e.get("batch")]
            steps = [e for e in entries if e.get("batch")]
            tokens = [e for e in entries if e.get("login") and e["path"].endswith("/token")]
            throttled = [e for e in top + steps if e.get("status") == 429]
            return len(top), len(steps), len(tokens), len(throttled)

        # Warm the token cache and the connection pool so both modes start alike.
        GraphProvider(BENCH_TENANT).fetch(mailboxes[0], now, end, include_subject=False)
        log_counts()

        provider = GraphProvider(BENCH_TENANT, parallel_batches=options["parallel_batches"])
        started = time.perf_counter()
        results = provider.fetch_many(mailboxes, now, end, include_subject=False)
        bulk_seconds = time.perf_counter() - started
        failed = sum(isinstance(r, ProviderError) for r in results.values())
        items = sum(len(r) for r in results.values() if isinstance(r, list))
        top, steps, tokens, throttled = log_counts()
        self._report(
            f"bulk (JSON batch of 20, {options['parallel_batches']} batches in parallel)",
            count,
            bulk_seconds,
            items,
            failed,
            top,
            steps,
            tokens,
            throttled,
        )
        plan_seconds, operations = self._plan_and_push(results, now)
        self.stdout.write(
            f"  + plan and reconcile into an in-memory One X: {plan_seconds:.2f} s "
            f"({operations} absences); initial sync without the database: "
            f"{count / (bulk_seconds + plan_seconds):.0f} mailboxes/s"
        )

        client = GraphClient(BENCH_TENANT)

        def one(mailbox):
            try:
                return len(
                    GraphProvider(BENCH_TENANT, client=client).fetch(
                        mailbox, now, end, include_subject=False
                    )
                )
            except ProviderError:
                return -1

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=options["threads"]) as pool:
            counts = list(pool.map(one, mailboxes))
        single_seconds = time.perf_counter() - started
        top, steps, tokens, throttled = log_counts()
        self._report(
            f"per mailbox ({options['threads']} threads)",
            count,
            single_seconds,
            sum(c for c in counts if c > 0),
            counts.count(-1),
            top,
            steps,
            tokens,
            throttled,
        )

        if options["product_mailboxes"]:
            self._product(mailboxes[: options["product_mailboxes"]], log_counts)

    def _product(self, mailboxes, log_counts):
        """The sync core on the database, one worker slot: one run per mailbox against one run
        per chunk of 20. Everything it stores is rolled back."""

        class Rollback(Exception):
            pass

        try:
            with transaction.atomic():
                integration = bench_integration("bench-graph", BENCH_TENANT, mailboxes)
                ids = list(integration.users.order_by("pk").values_list("pk", flat=True))
                for label, run in (
                    ("per mailbox (sync_mailbox, one read each)", self._one_by_one),
                    ("chunks of 20 (sync_mailboxes, one JSON batch each)", self._in_chunks),
                ):
                    SyncedUser.objects.filter(pk__in=ids).update(state="pending")
                    started = time.perf_counter()
                    outcomes = run(ids)
                    seconds = time.perf_counter() - started
                    top, steps, tokens, throttled = log_counts()
                    self._report(
                        f"product, {label}",
                        len(ids),
                        seconds,
                        sum(o.written for o in outcomes),
                        sum(o.status != "ok" for o in outcomes),
                        top,
                        steps,
                        tokens,
                        throttled,
                        what="absences written",
                    )
                    # The next mode starts from scratch: no bookings stored.
                    Booking.objects.filter(synced_user_id__in=ids).delete()
                raise Rollback
        except Rollback:
            pass

    @staticmethod
    def _one_by_one(ids):
        onex = InMemoryAbsences()
        users = SyncedUser.objects.select_related("integration__company", "subscription")
        return [sync.sync_mailbox(user, writer=onex) for user in users.filter(pk__in=ids)]

    @staticmethod
    def _in_chunks(ids):
        onex = InMemoryAbsences()
        outcomes = []
        for i in range(0, len(ids), GraphProvider.bulk_size):
            outcomes += sync.sync_mailboxes(
                ids[i : i + GraphProvider.bulk_size], writer=onex
            ).values()
        return outcomes

    @staticmethod
    def _plan_and_push(results, now) -> tuple[float, int]:
        """The rest of a first sync, as the sync core does it (default template rules)."""
        started = time.perf_counter()
        onex = InMemoryAbsences()
        operations = 0
        for n, items in enumerate(results.values()):
            if not isinstance(items, list):
                continue
            a_plan = plan(items, PlanSettings(subscription_id=f"sub-{n}"), now)
            pending = diff(a_plan, [])
            settle(a_plan, onex.apply("bench", pending))
            operations += len(pending)
        return time.perf_counter() - started, operations

    def _report(
        self, label, count, seconds, items, failed, top, steps, tokens, throttled, what="bookings"
    ):
        self.stdout.write(
            f"{label}: {count} mailboxes in {seconds:.2f} s = {count / seconds:.0f} mailboxes/s; "
            f"{items} {what}; {failed} failed; Graph HTTP requests per mailbox "
            f"{top / count:.3f} (+ {steps / count:.2f} JSON batch steps, {tokens} token requests, "
            f"{throttled} answered 429)"
        )
