"""Benchmark: initial-sync reads from Exchange on-premises through the EWS provider.

Starts the EWS sandbox as a separate process (`python -m sandbox.ews --bench-mailboxes N`),
each mailbox holding a realistic fortnight, injects a fixed latency on every EWS request, and
reads every mailbox's window the way a sync does: `EwsProvider.fetch_many` in chunks of its
`bulk_size`, NTLM-authenticated connections pooled per integration, impersonating each
mailbox. Prints mailboxes per second and EWS requests per mailbox (from the sandbox's log),
with the machine's load. The product reaches the sandbox only through settings, as always.
"""

import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from calendarsync.management.graph_bench import free_port
from calendarsync.models import Integration
from calendarsync.providers.base import ProviderError
from calendarsync.providers.ews import client
from calendarsync.providers.ews.provider import EwsProvider

REPO = Path(__file__).resolve().parents[3]
# The EWS sandbox's service account (sandbox/ews/server.py); product code never imports it.
SANDBOX_USERNAME = "DEMO\\telenor_mss_user"
SANDBOX_PASSWORD = "Sandbox-Lösen-1"


class Command(BaseCommand):
    help = "Time initial-sync reads of many mailboxes from the EWS sandbox (mailboxes/s)."

    def add_arguments(self, parser):
        parser.add_argument("--mailboxes", type=int, default=2000)
        parser.add_argument("--days", type=int, default=14)
        parser.add_argument("--latency-ms", type=int, default=30)
        parser.add_argument("--connections", type=int, default=16, help="EWS_MAX_CONNECTIONS")

    def handle(self, *args, **options):
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            ca_file = Path(tmp) / "ews-ca.pem"
            process = subprocess.Popen(
                [sys.executable, "-m", "sandbox.ews", "--port", str(port), "--ca-file",
                 str(ca_file), "--no-demo", "--bench-mailboxes", str(options["mailboxes"])],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                base = f"https://127.0.0.1:{port}"
                self._wait(base, ca_file, process)
                self._run(base, ca_file, port, options)
            finally:
                process.terminate()
                process.wait(timeout=20)

    def _wait(self, base, ca_file, process):
        deadline = time.monotonic() + 300  # making 2,000 fortnights takes a while
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit("the EWS sandbox stopped")
            try:
                if ca_file.exists():
                    requests.get(f"{base}/_sandbox/health", verify=str(ca_file), timeout=2)
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SystemExit("the EWS sandbox did not start")

    def _control(self, base, ca_file, method, path, payload=None):
        answer = requests.request(
            method, f"{base}/_sandbox/{path}", json=payload, verify=str(ca_file), timeout=60
        )
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def _run(self, base, ca_file, port, options):
        settings.EWS_CA_BUNDLE = str(ca_file)
        settings.OUTBOUND_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
        settings.EWS_MAX_CONNECTIONS = options["connections"]
        integration = Integration(
            kind=Integration.Kind.EWS,
            name="bench",
            ews_url=f"{base}/EWS/Exchange.asmx",
            ews_username=SANDBOX_USERNAME,
            ews_password=SANDBOX_PASSWORD,
        )
        mailboxes = [f"bench-{n:04}@bench.example.se" for n in range(options["mailboxes"])]
        provider = EwsProvider(integration)
        start = timezone.now()
        end = start + timedelta(days=options["days"])
        provider.fetch(mailboxes[0], start, end, include_subject=False)  # version probe, NTLM
        self._control(base, ca_file, "POST", "knobs", {"latency_ms": options["latency_ms"]})
        self._control(base, ca_file, "DELETE", "requests")
        load_before = os.getloadavg()
        began = time.perf_counter()
        items = failures = 0
        for first in range(0, len(mailboxes), provider.bulk_size):
            chunk = mailboxes[first : first + provider.bulk_size]
            for result in provider.fetch_many(chunk, start, end, include_subject=False).values():
                if isinstance(result, ProviderError):
                    failures += 1
                else:
                    items += len(result)
        elapsed = time.perf_counter() - began
        log = self._control(base, ca_file, "GET", "requests")["value"]
        ews_requests = len([entry for entry in log if entry.get("operation")])
        client.forget(integration)
        load_after = os.getloadavg()
        count = len(mailboxes)
        self.stdout.write(
            f"EWS bulk read (fetch_many, {provider.bulk_size} mailboxes per chunk, "
            f"{options['connections']} connections), {options['latency_ms']} ms per request:\n"
            f"  {count} mailboxes x {options['days']} days in {elapsed:.1f} s = "
            f"{count / elapsed:.0f} mailboxes/s; {items} bookings; {failures} failures; "
            f"{ews_requests / count:.2f} EWS requests per mailbox\n"
            f"  load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
            f"({os.cpu_count()} CPUs)"
        )
