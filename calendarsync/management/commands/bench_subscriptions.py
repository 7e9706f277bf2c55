"""Time subscribing many mailboxes to Graph change notifications, through the product's
processes: `tasks.request_subscriptions` enqueues the chunks, real `celery worker` processes run
them (each chunk sends its requests in parallel and writes a row per mailbox), and the product's
webhook views, served by gunicorn, answer Graph's two validation handshakes per subscription.

The M365 sandbox runs as a child process with a tenant of N mailboxes. Graph delivers to https
only: gunicorn serves TLS with a certificate from a test CA made here, which the sandbox is told
to trust (`--trust-ca`). The rows the bench makes are deleted afterwards. Prints the time,
subscriptions per second and the machine's load.
"""

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import trustme
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from calendarsync import subscriptions, tasks
from calendarsync.management.graph_bench import (
    bench_integration,
    free_port,
    start_m365_sandbox,
)
from calendarsync.models import MailboxSubscription, SyncedUser
from mss.celery import app
from onex.models import Company

BENCH_TENANT = "be9c0000-0000-4000-8000-0000000005b5"


class Command(BaseCommand):
    help = "Time subscribing N mailboxes to Graph change notifications (sandbox, real workers)."

    def add_arguments(self, parser):
        parser.add_argument("--mailboxes", type=int, default=10_000)
        parser.add_argument("--workers", type=int, default=2, help="worker processes")
        parser.add_argument("--latency-ms", type=int, default=0)
        parser.add_argument("--timeout", type=float, default=600)

    def handle(self, *args, **options):
        if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
            raise CommandError("the workers need a shared database (a file or PostgreSQL)")
        children = []
        try:
            with tempfile.TemporaryDirectory() as tmp:
                web_ca = self._web_certificate(Path(tmp))
                sandbox, base_url, ca_file = start_m365_sandbox(Path(tmp), trust_ca=web_ca)
                children.append(sandbox)
                env = self._environment(base_url, ca_file, Path(tmp))
                children.append(self._gunicorn(env))
                children.append(self._workers(env, options["workers"], Path(tmp)))
                self._run(base_url, ca_file, env, options)
        finally:
            for child in reversed(children):
                child.terminate()
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()

    @staticmethod
    def _web_certificate(tmp: Path) -> Path:
        """gunicorn's certificate for 127.0.0.1 (web-cert.pem, web-key.pem); returns its CA."""
        ca = trustme.CA(organization_name="MSS bench web CA")
        certificate = ca.issue_cert("127.0.0.1")
        certificate.cert_chain_pems[0].write_to_path(str(tmp / "web-cert.pem"))
        certificate.private_key_pem.write_to_path(str(tmp / "web-key.pem"))
        ca.cert_pem.write_to_path(str(tmp / "web-ca.pem"))
        return tmp / "web-ca.pem"

    def _environment(self, base_url, ca_file, tmp: Path) -> dict:
        web_port = free_port()
        db = connection.settings_dict
        if db["ENGINE"].endswith("sqlite3"):
            database = f"sqlite:///{db['NAME']}"
        else:
            password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
            database = (
                f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
            )
        return {
            **os.environ,
            "PYTHONPATH": str(settings.BASE_DIR),
            "DATABASE_URL": database,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_TASK_DEFAULT_QUEUE": f"bench-subscriptions-{uuid.uuid4().hex[:8]}",
            "MS_LOGIN_URL": base_url,
            "MS_GRAPH_URL": base_url + "/v1.0",
            "MS_CA_BUNDLE": ca_file,
            "MS_CLIENT_ID": settings.MS_CLIENT_ID,
            "MS_CLIENT_SECRET": settings.MS_CLIENT_SECRET,
            "PUBLIC_BASE_URL": f"https://127.0.0.1:{web_port}",
            "MSS_WEB_PORT": str(web_port),
            "MSS_WEB_TLS": str(tmp),
        }

    def _gunicorn(self, env) -> subprocess.Popen:
        """The product's web side: Graph's validation requests reach its webhook views."""
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "mss.wsgi:application",
                "--bind",
                f"127.0.0.1:{env['MSS_WEB_PORT']}",
                "--workers",
                "2",
                "--threads",
                "8",
                "--certfile",
                str(Path(env["MSS_WEB_TLS"]) / "web-cert.pem"),
                "--keyfile",
                str(Path(env["MSS_WEB_TLS"]) / "web-key.pem"),
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until(
            lambda: _answers(
                f"{env['PUBLIC_BASE_URL']}/login/", Path(env["MSS_WEB_TLS"]) / "web-ca.pem"
            ),
            30,
            "gunicorn to listen",
        )
        return process

    def _workers(self, env, count, tmp: Path) -> subprocess.Popen:
        log = tmp / "worker.log"
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("celery")),
                "-A",
                "mss",
                "worker",
                "-Q",
                env["CELERY_TASK_DEFAULT_QUEUE"],
                "-n",
                f"{env['CELERY_TASK_DEFAULT_QUEUE']}@%h",
                "--concurrency",
                str(count),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self._wait_until(lambda: "ready." in log.read_text(), 60, "the Celery workers")
        return process

    def _run(self, base_url, ca_file, env, options):
        count = options["mailboxes"]
        control = requests.Session()
        control.trust_env, control.verify = False, ca_file
        control.post(
            f"{base_url}/_sandbox/tenants",
            json={
                "id": BENCH_TENANT,
                "name": "Bench AB",
                "generate": {"users": count, "domain": "bench.se", "fortnight": False},
            },
            timeout=600,
        ).raise_for_status()
        control.post(
            f"{base_url}/_sandbox/knobs",
            json={"latency_ms": options["latency_ms"], "log": False},
            timeout=10,
        ).raise_for_status()
        emails = [f"user{n:05d}@bench.se" for n in range(count)]
        integration = bench_integration("bench-subscriptions", BENCH_TENANT, emails)
        company = integration.company
        subscribed = MailboxSubscription.objects.filter(
            synced_user__integration=integration, status="active"
        )
        app.conf.task_default_queue = env["CELERY_TASK_DEFAULT_QUEUE"]
        try:
            started = time.perf_counter()
            chunks = tasks.request_subscriptions(integration.users.all())  # enqueued at once
            self._wait_until(lambda: subscribed.count() >= count, options["timeout"], "all")
            seconds = time.perf_counter() - started
            made = subscribed.count()
            remote = control.get(f"{base_url}/_sandbox/subscriptions", timeout=120).json()
        finally:
            # Users first: One X subscriptions are protected while a synced user points at one.
            SyncedUser.objects.filter(integration__company=company).delete()
            Company.objects.filter(pk=company.pk).delete()
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        self.stdout.write(
            f"subscribed {made} of {count} mailboxes in {seconds:.1f} s ({made / seconds:.0f}/s; "
            f"{chunks // subscriptions.CHUNK_SIZE} chunk tasks of {subscriptions.CHUNK_SIZE}, "
            f"{options['workers']} worker processes, {subscriptions.PARALLEL} requests in "
            f"flight each; {options['latency_ms']} ms added latency per Graph call)"
        )
        self.stdout.write(
            f"sandbox holds {len(remote.get('value', []))} subscriptions; database: "
            f"{connection.vendor}; load average {load} on {os.cpu_count()} cores"
        )

    @staticmethod
    def _wait_until(predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise CommandError(f"gave up waiting for {what} after {timeout:.0f} s")
            time.sleep(0.2)


def _answers(url, ca_file: Path) -> bool:
    try:
        requests.get(url, timeout=2, verify=str(ca_file))
    except requests.RequestException:
        return False
    return True
