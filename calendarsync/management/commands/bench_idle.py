"""Benchmark: what idle mailboxes cost in Graph requests a day.

Starts the Microsoft 365 sandbox as a child process with a tenant of N mailboxes and no events,
subscribes and syncs them once through the product's tasks, then plays the beat's schedule
(mss/schedules.py) for D simulated days: the clock (`django.utils.timezone.now`, and the
sandbox's through its `clock_offset_seconds` knob) steps from one beat firing to the next, and
each firing's task runs in this process with Celery's eager mode, so every sync and renewal it
enqueues runs before the next firing. Nothing changes in the calendars, so no notification
comes. Graph's validation handshake for new subscriptions reaches a small https echo here.

One X is in memory (idle mailboxes write nothing); the directory import is not played (it reads
One X, never Graph). Prints Graph requests per mailbox per simulated day, counting a $batch's
steps (not its envelope), by kind and by beat task, and the machine's load. The rows the bench
makes are deleted afterwards.
"""

import logging
import os
import ssl
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import requests
import trustme
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from calendarsync import audit, sync, tasks
from calendarsync.management.graph_bench import bench_integration, start_m365_sandbox
from calendarsync.models import MailboxSubscription, SyncedUser
from calendarsync.rules import STOCKHOLM
from mss.celery import app
from mss.schedules import PERIODIC_TASKS
from onex.models import Company
from onex.operations import InMemoryAbsences

BENCH_TENANT = "be9c0000-0000-4000-8000-0000000001d1"
NOT_PLAYED = {"onex.tasks.import_directory"}  # One X only: no Graph request


class Command(BaseCommand):
    help = "Graph requests per idle mailbox per simulated day (M365 sandbox, simulated clock)."

    def add_arguments(self, parser):
        parser.add_argument("--mailboxes", type=int, default=1000)
        parser.add_argument("--days", type=int, default=3)
        parser.add_argument(
            "--start",
            default="",
            help="simulated start, ISO in Stockholm time (default: tomorrow 12:00)",
        )

    def handle(self, *args, **options):
        if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
            raise CommandError("use a file or PostgreSQL database")
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # a line per task
        with tempfile.TemporaryDirectory() as tmp:
            echo, echo_ca = _validation_echo(Path(tmp))
            sandbox, base_url, ca_file = start_m365_sandbox(Path(tmp), trust_ca=echo_ca)
            try:
                self.onex = MemoryOneX()
                with _eager(), _memory_onex(self.onex):
                    self._run(base_url, ca_file, echo.server_port, options)
            finally:
                sandbox.terminate()
                sandbox.wait(timeout=10)
                echo.shutdown()

    def _run(self, base_url, ca_file, echo_port, options):
        settings.MS_LOGIN_URL = base_url
        settings.MS_GRAPH_URL = base_url + "/v1.0"
        settings.MS_CA_BUNDLE = ca_file
        settings.PUBLIC_BASE_URL = f"https://127.0.0.1:{echo_port}"
        self.control = requests.Session()
        self.control.trust_env, self.control.verify = False, ca_file
        self.base_url = base_url
        count = options["mailboxes"]
        self.control.post(
            f"{base_url}/_sandbox/tenants",
            json={
                "id": BENCH_TENANT,
                "name": "Bench AB",
                "generate": {"users": count, "domain": "bench.se", "fortnight": False},
            },
            timeout=600,
        ).raise_for_status()
        emails = [f"user{n:05d}@bench.se" for n in range(count)]
        clock = SimulatedClock(_start(options["start"]))
        integration = None
        try:
            with mock.patch("django.utils.timezone.now", clock.now):
                self._set_sandbox_clock(clock)
                integration = bench_integration("bench-idle", BENCH_TENANT, emails)
                tasks.start_syncing(integration.users.all())  # subscribed and synced, eagerly
                setup = self._take_log()
                live = MailboxSubscription.objects.filter(
                    synced_user__integration=integration, status="active"
                ).count()
                synced = integration.users.filter(last_synced_at__isnull=False).count()
                started = time.perf_counter()
                tally = self._play(clock, options["days"])
                seconds = time.perf_counter() - started
        finally:
            if integration is not None:
                SyncedUser.objects.filter(integration__company=integration.company).delete()
                Company.objects.filter(pk=integration.company_id).delete()
        self._report(count, options["days"], setup, live, synced, tally, seconds)

    # ----- the beat, played

    def _play(self, clock, days) -> dict[str, Counter]:
        """Every beat firing of `days` simulated days, in order; per task what Graph saw."""
        schedules = [
            (name, spec["task"], spec["schedule"])
            for name, spec in PERIODIC_TASKS.items()
            if spec["task"] not in NOT_PLAYED
        ]
        app.loader.import_default_modules()
        tally: dict[str, Counter] = {}
        start = clock.moment
        for minute in range(days * 24 * 60):
            moment = start + timedelta(minutes=minute)
            due = [(task, s) for _name, task, s in schedules if fires_at(s, moment)]
            if not due:
                continue
            clock.moment = moment
            self._set_sandbox_clock(clock)
            for task, _schedule in due:
                app.tasks[task].apply()
                tally.setdefault(task, Counter()).update(self._take_log())
        return tally

    def _set_sandbox_clock(self, clock):
        offset = (clock.moment - datetime.now(STOCKHOLM)).total_seconds()
        self.control.post(
            f"{self.base_url}/_sandbox/knobs", json={"clock_offset_seconds": offset}, timeout=10
        ).raise_for_status()

    def _take_log(self) -> Counter:
        entries = self.control.get(f"{self.base_url}/_sandbox/requests", timeout=60).json()
        self.control.delete(f"{self.base_url}/_sandbox/requests", timeout=10)
        return Counter(kind_of(entry) for entry in entries["value"])

    # ----- the figures

    def _report(self, count, days, setup, live, synced, tally, seconds):
        total = sum(tally.values(), Counter())
        requests_ = sum(n for kind, n in total.items() if kind in REQUEST_KINDS)
        per_day = requests_ / count / days
        self.stdout.write(
            f"setup: {live} of {count} mailboxes subscribed, {synced} synced "
            f"({setup['subscribe']} subscriptions made, {setup['calendarView']} reads)"
        )
        self.stdout.write(
            f"{days} simulated days played in {seconds:.1f} s: {per_day:.2f} Graph requests "
            f"per mailbox per day ($batch steps counted, envelopes not)"
        )
        for kind in REQUEST_KINDS:
            self.stdout.write(f"  {kind:<14} {total[kind] / count / days:6.3f} per mailbox a day")
        self.stdout.write(
            f"  (not counted: {total['batch'] / days:.1f} $batch envelopes and "
            f"{total['token'] / days:.1f} token requests a day in all; One X entries written: "
            f"{len(self.onex.entries)})"
        )
        self.stdout.write("by beat task (Graph requests per mailbox per day):")
        for task, counter in sorted(tally.items()):
            mine = sum(n for kind, n in counter.items() if kind in REQUEST_KINDS)
            self.stdout.write(f"  {task:<48} {mine / count / days:6.3f}")
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        self.stdout.write(
            f"database: {connection.vendor}; load average {load} on {os.cpu_count()} cores"
        )


REQUEST_KINDS = ("calendarView", "renew", "subscribe", "other")


def kind_of(entry: dict) -> str:
    """What one logged sandbox request was: a calendar read, a subscription renewed or made,
    a $batch envelope (its steps are logged on their own), a token, or something else."""
    path, method = entry.get("path", ""), entry.get("method", "")
    if entry.get("login"):
        return "token"
    if path.endswith("/$batch") and not entry.get("batch"):
        return "batch"
    if "/calendarView" in path or "/calendarview" in path.lower():
        return "calendarView"
    if path.startswith("/v1.0/subscriptions"):
        return {"PATCH": "renew", "POST": "subscribe"}.get(method, "other")
    return "other"


def fires_at(schedule, moment: datetime) -> bool:
    """Whether a crontab fires in this minute (in the beat's time zone, Stockholm)."""
    local = moment.astimezone(STOCKHOLM)
    return (
        local.minute in schedule.minute
        and local.hour in schedule.hour
        and local.isoweekday() % 7 in schedule.day_of_week
        and local.day in schedule.day_of_month
        and local.month in schedule.month_of_year
    )


class SimulatedClock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def _start(text: str) -> datetime:
    if text:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=STOCKHOLM)
    tomorrow = datetime.now(STOCKHOLM).date() + timedelta(days=1)
    return datetime.combine(tomorrow, datetime.min.time(), tzinfo=STOCKHOLM) + timedelta(hours=12)


class _eager:
    """Celery's eager mode for the bench's duration: tasks run where they are enqueued."""

    def __enter__(self):
        self.saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
        app.conf.task_always_eager, app.conf.task_eager_propagates = True, True

    def __exit__(self, *exc):
        app.conf.task_always_eager, app.conf.task_eager_propagates = self.saved


class MemoryOneX(InMemoryAbsences):
    """One X for the bench, in memory. Idle mailboxes write nothing, so the audit's listing
    is empty; a write would show in the report (`One X entries`)."""

    def list_absences(self, company_id, **kwargs):
        return []


def _memory_onex(onex):
    patches = [
        mock.patch.object(sync, "default_writer", lambda *args, **kwargs: onex),
        mock.patch.object(audit, "get_client", lambda *args, **kwargs: onex),
    ]
    return _Patches(patches)


class _Patches:
    def __init__(self, patches):
        self.patches = patches

    def __enter__(self):
        for patch in self.patches:
            patch.start()

    def __exit__(self, *exc):
        for patch in reversed(self.patches):
            patch.stop()


def _validation_echo(tmp: Path) -> tuple[ThreadingHTTPServer, Path]:
    """An https server that answers Graph's validation handshake (echoes validationToken) and
    counts anything else; returns it and its CA, which the sandbox is told to trust."""
    ca = trustme.CA(organization_name="MSS bench_idle CA")
    certificate = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp / "echo-ca.pem"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate.configure_cert(context)

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            token = parse_qs(urlsplit(self.path).query).get("validationToken", [""])[0]
            body = token.encode()
            self.send_response(200 if token else 202)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, tmp / "echo-ca.pem"
