"""Absence operations per second through the One X client, one by one and batched; with
`--initial-sync N`, a first sync of N mailboxes through the sync core against the sandbox's
default rate limit (calendarsync/management/initial_sync_bench.py).

By default it starts a private One X sandbox (a subprocess on a free port with a throwaway
state file) so the demo's sandbox is left alone; `--url` points it at a running sandbox
instead. Either way the sandbox is reached over HTTP only, with the injected latency set
through its /_sandbox/knobs control. It measures throughput, so the sandbox's rate limit
(600 a minute by default) is turned off while it runs, and the client sends without a rate
budget: at that limit the one-by-one run alone would take a minute.
"""

import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calendarsync.management.initial_sync_bench import Options
from calendarsync.management.initial_sync_bench import run as run_initial_sync
from onex.client import OneXClient
from onex.operations import AbsenceEntry, DeleteAbsence, PutAbsence

COMPANY, SUBSCRIPTION = "demo-ab", "sub-bjorn"  # the sandbox's demo data


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def private_sandbox(*, keep_state=True):
    """`keep_state=False`: no state file at all (a store of 200,000 absences written to JSON
    after every change would be what the benchmark measures)."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as state_dir:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.onex",
                "--port",
                str(port),
                "--state",
                str(Path(state_dir) / "onex.json") if keep_state else "",
            ],
            cwd=settings.BASE_DIR,
            stdout=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(url)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_for(url, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise CommandError(f"The One X sandbox at {url} did not answer")


def _operations(prefix, count):
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    return [
        PutAbsence(
            SUBSCRIPTION,
            f"{prefix}-{n}",
            AbsenceEntry(
                reason_code="MOTE",
                start=start + timedelta(hours=n),
                end=start + timedelta(hours=n, minutes=30),
                return_at=start + timedelta(hours=n, minutes=30),
                divert=False,
                open_diversion=False,
                note=None,
            ),
        )
        for n in range(count)
    ]


class Command(BaseCommand):
    help = "Benchmark One X absence operations per second, one by one and batched."

    def add_arguments(self, parser):
        parser.add_argument("--ops", type=int, default=500, help="operations per run")
        parser.add_argument("--latency-ms", type=float, default=20.0, help="injected latency")
        parser.add_argument("--url", help="a running One X sandbox (default: start a private one)")
        parser.add_argument(
            "--initial-sync",
            type=int,
            nargs="?",
            const=10_000,
            metavar="N",
            help="instead: a first sync of N mailboxes (10,000) through the sync core",
        )
        parser.add_argument("--absences", type=int, default=20, help="per mailbox (initial sync)")
        parser.add_argument("--workers", type=int, default=2, help="processes (initial sync)")
        parser.add_argument(
            "--reads-per-chunk", type=int, default=5, help="bulk reads per chunk (initial sync)"
        )

    def handle(self, *args, **options):
        if options["initial_sync"]:
            self._initial_sync(options)
        elif options["url"]:
            self._bench(options["url"].rstrip("/"), options)
        else:
            with private_sandbox() as url:
                self._bench(url, options)

    def _initial_sync(self, options):
        """The sandbox keeps its default rate limit; only the latency is set."""
        bench = Options(
            mailboxes=options["initial_sync"],
            absences=options["absences"],
            workers=options["workers"],
            reads=options["reads_per_chunk"],
        )
        with private_sandbox(keep_state=False) as url:
            requests.post(
                f"{url}/_sandbox/knobs", json={"latency_ms": options["latency_ms"]}, timeout=5
            ).raise_for_status()
            run_initial_sync(url, bench, self.stdout.write)

    def _bench(self, url, options):
        control = f"{url}/_sandbox/knobs"
        before = requests.get(control, timeout=5).json()
        requests.post(
            control,
            json={
                "latency_ms": options["latency_ms"],
                "rate_limit": 0,
                "rate_429": 0,
                "rate_5xx": 0,
            },
            timeout=5,
        ).raise_for_status()
        # No rate budget: the limit it keeps is off in the sandbox for this run (above).
        client = OneXClient(url, settings.ONEX_CLIENT_ID, settings.ONEX_CLIENT_SECRET, budget=None)
        count = options["ops"]
        try:
            client.list_absence_reasons(COMPANY)  # token and connection in hand before timing
            single_rate = self._run(client, _operations("bench-single", count), batched=False)
            batch_rate = self._run(client, _operations("bench-batch", count), batched=True)
        finally:
            requests.post(
                control,
                json={k: before[k] for k in ("latency_ms", "rate_limit", "rate_429", "rate_5xx")},
                timeout=5,
            )
            client.close()
        self.stdout.write(
            f"One X client against the sandbox at {url}, {options['latency_ms']:g} ms latency, "
            f"{count} absence puts per run (rate limit off in the sandbox and the client):"
        )
        self.stdout.write(f"  one by one: {single_rate:8.1f} operations/s")
        self.stdout.write(f"  batched:    {batch_rate:8.1f} operations/s (100 per request)")
        self.stdout.write(f"  batched is {batch_rate / single_rate:.1f}× faster")

    def _run(self, client, operations, *, batched):
        started = time.perf_counter()
        if batched:
            results = client.apply(COMPANY, operations)
        else:
            results = [r for op in operations for r in client.apply(COMPANY, [op])]
        elapsed = time.perf_counter() - started
        failed = [r for r in results if not r.ok]
        if failed:
            raise CommandError(f"{len(failed)} operations failed, e.g. {failed[0]}")
        # Clean up (untimed) so a shared sandbox is left as it was.
        client.apply(
            COMPANY, [DeleteAbsence(op.subscription_id, op.external_id) for op in operations]
        )
        return len(operations) / elapsed
