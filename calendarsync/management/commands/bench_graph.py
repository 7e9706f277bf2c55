"""Benchmark: initial-sync reads from Exchange Online through the Graph provider.

Starts the Microsoft 365 sandbox as a separate process (`python -m sandbox.m365`), gives it a
tenant of N mailboxes, each holding a realistic fortnight, injects a fixed latency on every HTTP
round trip to Graph, and times two ways of reading every mailbox's window:

- bulk: `GraphProvider.fetch_many` (20 mailboxes per $batch, batches in parallel);
- per mailbox: `GraphProvider.fetch` from a pool of threads (what one sync run per mailbox does).

Prints mailboxes per second and Graph HTTP requests per mailbox (a $batch counts once; its
steps are shown separately). The product reaches the sandbox only through settings, as always.
"""

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from calendarsync.providers.base import ProviderError
from calendarsync.providers.graph_api import GraphClient, GraphProvider
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

    def handle(self, *args, **options):
        with tempfile.TemporaryDirectory() as tmp:
            process, base_url, ca_file = self._start_sandbox(Path(tmp), options["port"])
            try:
                self._run(base_url, ca_file, options)
            finally:
                process.terminate()
                process.wait(timeout=10)

    def _start_sandbox(self, tmp: Path, port: int):
        if port == 0:
            import socket

            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        ca_file = tmp / "ca.pem"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.m365",
                "--port",
                str(port),
                "--no-demo",
                "--ca-file",
                str(ca_file),
                "--client-id",
                settings.MS_CLIENT_ID,
                "--client-secret",
                settings.MS_CLIENT_SECRET,
            ],
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(settings.BASE_DIR)},
        )
        line = process.stdout.readline()
        if "M365 sandbox on" not in line:
            raise CommandError(f"the sandbox did not start: {line}")
        return process, f"https://127.0.0.1:{port}", str(ca_file)

    def _run(self, base_url, ca_file, options):
        settings.MS_LOGIN_URL = base_url
        settings.MS_GRAPH_URL = base_url + "/v1.0"
        settings.MS_CA_BUNDLE = ca_file
        control = requests.Session()
        control.trust_env, control.verify = False, ca_file
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
            f"bulk ($batch of 20, {options['parallel_batches']} batches in parallel)",
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

    def _report(self, label, count, seconds, items, failed, top, steps, tokens, throttled):
        self.stdout.write(
            f"{label}: {count} mailboxes in {seconds:.2f} s = {count / seconds:.0f} mailboxes/s; "
            f"{items} bookings; {failed} failed; Graph HTTP requests per mailbox "
            f"{top / count:.3f} (+ {steps / count:.2f} $batch steps, {tokens} token requests, "
            f"{throttled} answered 429)"
        )
