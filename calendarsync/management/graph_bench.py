"""What the Graph benchmarks share: the Microsoft 365 sandbox as a child process and a company
with an integration of N mailboxes (never used by the product)."""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import CommandError

from calendarsync.models import Integration, SyncedUser
from onex.models import Company, Subscription


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_m365_sandbox(
    tmp: Path, port: int = 0, *, trust_ca: Path | None = None
) -> tuple[subprocess.Popen, str, str]:
    """Start `sandbox.m365` on loopback without demo data: (process, base URL, CA file).
    `trust_ca`: the CA of the product's https certificate, which Graph's deliveries must trust."""
    port = port or free_port()
    ca_file = tmp / "ca.pem"
    trust = ["--trust-ca", str(trust_ca)] if trust_ca else []
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
            *trust,
        ],
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # The secret goes by environment, never on a command line that `ps` shows.
        env={
            **os.environ,
            "PYTHONPATH": str(settings.BASE_DIR),
            "MS_CLIENT_SECRET": settings.MS_CLIENT_SECRET,
        },
    )
    line = process.stdout.readline()
    if "M365 sandbox on" not in line:
        raise CommandError(f"the sandbox did not start: {line}")
    return process, f"https://127.0.0.1:{port}", str(ca_file)


@contextlib.contextmanager
def graph_pointed_at_sandbox(port: int = 0):
    """The sandbox for one benchmark run, with the product's Graph settings pointing at it:
    yields (base URL, a session for the sandbox's controls); stopped afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url, ca_file = start_m365_sandbox(Path(tmp), port)
        try:
            settings.MS_LOGIN_URL = base_url
            settings.MS_GRAPH_URL = base_url + "/v1.0"
            settings.MS_CA_BUNDLE = ca_file
            control = requests.Session()
            control.trust_env, control.verify = False, ca_file
            yield base_url, control
        finally:
            process.terminate()
            process.wait(timeout=10)


def bench_integration(tag: str, tenant_id: str, mailboxes) -> Integration:
    """A connected Exchange Online integration of a company of its own, syncing `mailboxes`."""
    company = Company.objects.create(name="Bench AB", org_number=tag, onex_id=tag)
    integration = Integration.objects.create(
        company=company,
        kind=Integration.Kind.GRAPH,
        name="Bench",
        status=Integration.Status.CONNECTED,
        tenant_id=tenant_id,
    )
    subscriptions = Subscription.objects.bulk_create(
        Subscription(company=company, onex_id=f"{tag}-{n}", email=mailbox)
        for n, mailbox in enumerate(mailboxes)
    )
    SyncedUser.objects.bulk_create(
        SyncedUser(integration=integration, subscription=s, email=s.email) for s in subscriptions
    )
    return integration
