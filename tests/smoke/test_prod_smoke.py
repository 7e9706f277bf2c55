"""`make prod-smoke`: the production recipe (deploy/) started here, on PostgreSQL and Redis.

An empty database gets deploy/release.sh (migrate, install_schedules, check --deploy); then
deploy/systemd's units run as they are written — gunicorn with deploy/gunicorn.conf.py, a
worker on the bulk queue and one on the interactive queue, exactly one beat — with
MSS_ENV=production and the environment file made from deploy/mss.env.example, as the service
user (not root). One sync goes through the sandboxes (Graph, One X) and the workers, an Outlook
change through a Graph notification and the interactive worker; /metrics is scraped with its
token, /readyz is 200 and, with the broker stopped, 503 naming it; everything then stops on
SIGTERM as systemd stops it, without a traceback.
"""

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from calendarsync import tasks
from calendarsync.models import SyncedUser
from tests.faults import database, oracle, population
from tests.faults.processes import Service, free_port, redis_service, wait_until
from tests.faults.stack import point_this_process
from tests.https_front import HttpsFront

from . import units

pytestmark = pytest.mark.smoke

ARTIFACTS = units.REPO / "test-artifacts" / "smoke"
METRICS_TOKEN = "smoke-metrics-token-0123456789abcdef"
SYNC_LIMIT = 90.0
CHANGE_LIMIT = 30.0


def say(line: str) -> None:
    print(f"SMOKE {line}", flush=True)


class Smoke:
    def __init__(self, settings, m365, onex, m365_ca):
        self.settings, self.m365, self.onex = settings, m365, onex
        self.dir = ARTIFACTS
        if self.dir.exists():
            subprocess.run(["rm", "-rf", str(self.dir)], check=True)
        self.dir.mkdir(parents=True)
        self.dir.chmod(0o755)  # the service user reads the CA and env files here
        self.database = database.faults_name("smoke")
        self.redis_port, self.web_port = free_port(), free_port()
        self.metrics_ports = {"mss-worker-bulk": free_port(), "mss-worker-interactive": free_port()}
        self.front = HttpsFront(f"http://127.0.0.1:{self.web_port}", m365_ca)
        self.services: dict[str, Service] = {}
        self.units: dict[str, units.Unit] = {}
        # The front's certificate is the M365 sandbox CA's (Graph trusts it, as do we here).
        self.ca_file = ca_copy = self.dir / "m365-ca.pem"
        ca_copy.write_text(Path(settings.MS_CA_BUNDLE).read_text())
        ca_copy.chmod(0o644)
        self.env_file = self.dir / "mss.env"
        self.env_file.write_text(self._env_text(ca_copy))
        self.env_file.chmod(0o644)

    # ----- the environment file: the template with this machine's values

    def _env_text(self, ca_file: Path) -> str:
        s = self.settings
        here = {
            "SECRET_KEY": "smoke-" + Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PUBLIC_BASE_URL": self.front.url,
            "MSS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "TELENOR_ID_URL": "https://127.0.0.1:9",  # no sign-in in this run
            "TELENOR_ID_CLIENT_ID": "smoke",
            "TELENOR_ID_CLIENT_SECRET": "smoke-telenorid-secret",
            "DATABASE_URL": database.url_for(self.database),
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CACHE_URL": f"rediscache://127.0.0.1:{self.redis_port}/1",
            "ONEX_API_URL": s.ONEX_API_URL,
            "ONEX_CLIENT_ID": s.ONEX_CLIENT_ID,
            "ONEX_CLIENT_SECRET": s.ONEX_CLIENT_SECRET,
            "MS_LOGIN_URL": s.MS_LOGIN_URL,
            "MS_GRAPH_URL": s.MS_GRAPH_URL,
            "MS_CLIENT_ID": s.MS_CLIENT_ID,
            "MS_CLIENT_SECRET": s.MS_CLIENT_SECRET,
            "MSS_METRICS_TOKEN": METRICS_TOKEN,
            "GUNICORN_BIND": f"127.0.0.1:{self.web_port}",
            "GUNICORN_WORKERS": "2",
        }
        template = units.read_env_file(units.REPO / "deploy" / "mss.env.example")
        unset = [key for key, value in template.items() if "change-me" in value]
        assert set(unset) <= set(here), f"the template has placeholders we did not fill: {unset}"
        values = {**template, **here, "MS_CA_BUNDLE": str(ca_file)}
        return "".join(f"{key}={value}\n" for key, value in values.items())

    # ----- processes

    def unit(self, name: str) -> units.Unit:
        overrides = {}
        if name in self.metrics_ports:
            overrides["MSS_WORKER_METRICS_PORT"] = str(self.metrics_ports[name])
        unit = units.load(name, env_file=self.env_file, base_dir=self.dir, overrides=overrides)
        self.units[name] = unit
        return unit

    def run_once(self, name: str) -> None:
        """A oneshot unit (mss-release), or a unit's ExecStartPre lines."""
        unit = self.unit(name)
        for argv in [*unit.pre, unit.argv]:
            self._run(name, argv, unit.env)

    def _run(self, name, argv, env):
        result = subprocess.run(
            argv, cwd=units.REPO, env=env, capture_output=True, text=True, timeout=300
        )
        (self.dir / f"{name}.log").open("a").write(result.stdout + result.stderr)
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}"

    def start(self, name: str, ready) -> Service:
        unit = self.unit(name)
        for argv in unit.pre:
            self._run(f"{name}-pre", argv, unit.env)
        service = Service(name, unit.argv, env=unit.env, log_dir=self.dir, ready=ready)
        self.services[name] = service.start(timeout=90)
        say(f"{name} started (pid {service.process.pid}, as {unit.user or 'this user'})")
        return service

    def stop(self, name: str) -> float:
        """As systemd stops a unit: SIGTERM to the main process (KillMode=mixed) or to all
        (control-group); returns how long it took. SIGKILL only after TimeoutStopSec."""
        service, unit = self.services[name], self.units[name]
        service.expected_down = True
        started = time.monotonic()
        if unit.kill_mode == "mixed":
            service.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(service.process.pid, signal.SIGTERM)
        try:
            code = service.process.wait(timeout=min(unit.stop_timeout, 60))
        finally:
            service.kill()  # whatever of its group is left
        took = time.monotonic() - started
        assert code == 0, f"{name} exited {code}:\n{service.log_tail()}"
        return took

    def close(self):
        for service in reversed(list(self.services.values())):
            service.kill()
        self.front.stop()


def create_empty_database(name: str) -> None:
    with database._admin() as admin, admin.cursor() as cursor:
        database._drop(cursor, name)
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    with database._admin() as admin, admin.cursor() as cursor:
        database._drop(cursor, name)


def ready_http(port):
    def ready(_service):
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    return ready


def in_log(text):
    return lambda service: text in service.log_since_start()


def scrape(url: str, verify=True, **headers) -> dict[str, float]:
    """sample name{labels} → value, of the mss_* samples."""
    response = requests.get(url, headers=headers, timeout=10, verify=verify)
    assert response.status_code == 200, (url, response.status_code)
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.startswith("mss_"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def total(samples: dict[str, float], name: str) -> float:
    return sum(value for key, value in samples.items() if key.startswith(name + "{"))


@pytest.mark.django_db(transaction=True)
def test_the_production_recipe_starts_syncs_reports_and_stops(
    settings, m365, onex_sandbox, m365_ca
):
    smoke = Smoke(settings, m365, onex_sandbox, m365_ca)
    create_empty_database(smoke.database)
    redis = redis_service(smoke.redis_port, smoke.dir).start()
    undo_celery = point_this_process(
        settings,
        f"redis://127.0.0.1:{smoke.redis_port}/0",
        f"rediscache://127.0.0.1:{smoke.redis_port}/1",
    )
    cleanup = contextlib.ExitStack()
    cleanup.callback(drop_database, smoke.database)
    cleanup.callback(redis.kill)
    cleanup.callback(smoke.close)
    cleanup.callback(undo_celery)
    with cleanup:
        smoke.run_once("mss-release")
        say("release: migrate, install_schedules, check --deploy passed on an empty database")
        cleanup.enter_context(database.ScenarioDatabase("smoke").attached())
        world = population.build_graph(
            m365, onex_sandbox, seed="smoke", integrations=1, per_integration=6, bookings=4
        )
        web = smoke.start("mss-web", ready_http(smoke.web_port))
        assert "Booting worker" in web.log_text()
        bulk = smoke.start("mss-worker-bulk", in_log(" ready."))
        interactive = smoke.start("mss-worker-interactive", in_log(" ready."))
        beat = smoke.start("mss-beat", in_log("beat: Starting..."))
        beat_started = time.monotonic()
        for worker in (bulk, interactive):
            assert "superuser privileges" not in worker.log_text()
        # Static files from the app server (whitenoise), hashed by collectstatic.
        trust = str(smoke.ca_file)
        login = requests.get(f"{smoke.front.url}/login/", timeout=10, verify=trust)
        assert login.status_code == 200
        css = login.text.split('href="/static/', 1)[1].split('"', 1)[0]
        assert requests.get(f"{smoke.front.url}/static/{css}", verify=trust).status_code == 200

        # One sync: subscriptions and reads on the bulk worker, entries into One X.
        started = time.monotonic()
        tasks.start_syncing(SyncedUser.objects.filter(integration__in=world.integrations))
        calendars = {"graph": oracle.GraphCalendars(m365)}
        plan = oracle.plan_now(world, calendars)
        wait_until(
            lambda: oracle.tally(onex_sandbox, plan).clean, SYNC_LIMIT, "the sync", interval=0.5
        )
        say(
            f"one sync through the sandboxes: {len(plan.absences)} absences of "
            f"{len(world.mailboxes)} mailboxes in One X in {time.monotonic() - started:.1f} s"
        )
        assert "sync_mailboxes" in bulk.log_text()

        # An Outlook change: a Graph notification to gunicorn, the interactive worker.
        started = time.monotonic()
        mailbox = world.mailboxes[0]
        population.Outlook(m365, seed="smoke").add(mailbox)
        plan = oracle.plan_now(world, calendars)
        wait_until(
            lambda: oracle.tally(onex_sandbox, plan).clean, CHANGE_LIMIT, "the change", interval=0.3
        )
        say(f"an Outlook change reached One X in {time.monotonic() - started:.1f} s")
        assert "sync_mailboxes" in interactive.log_text()

        # /metrics: off without the token, the product's metrics with it.
        metrics_url = f"{smoke.front.url}/metrics"
        refused = requests.get(metrics_url, timeout=10, verify=trust)
        assert refused.status_code == 401
        web_samples = scrape(metrics_url, trust, Authorization=f"Bearer {METRICS_TOKEN}")
        worker_samples = {}
        for name, port in smoke.metrics_ports.items():
            worker_samples[name] = scrape(f"http://127.0.0.1:{port}/metrics")
        say(
            f"/metrics: {len(web_samples)} mss_* samples from the web, "
            + ", ".join(f"{len(s)} from {name}" for name, s in worker_samples.items())
        )
        everything = {**web_samples, **worker_samples["mss-worker-bulk"]}
        for name in sorted({key.split("{")[0] for key in everything}):
            say(f"  {name} = {total(everything, name):g}")
        for name in EXPECTED_NON_ZERO_WEB:
            assert total(web_samples, name) > 0, name
        for name in EXPECTED_NON_ZERO_WORKER:
            assert total(worker_samples["mss-worker-bulk"], name) > 0, name
            assert total(worker_samples["mss-worker-interactive"], name) > 0, name

        # /readyz: ready; then, the broker (and cache) stopped, not ready, naming them.
        readyz = f"http://127.0.0.1:{smoke.web_port}/readyz"
        answer = requests.get(readyz, timeout=20)
        say(f"/readyz {answer.status_code} {answer.text}")
        assert answer.status_code == 200
        redis.stop()
        answer = requests.get(readyz, timeout=20)
        say(f"/readyz with the broker stopped: {answer.status_code} {answer.text}")
        assert answer.status_code == 503
        assert answer.json()["broker"] == "failed"
        redis.start()
        wait_until(lambda: requests.get(readyz, timeout=20).ok, 30, "/readyz to recover", 1)

        # Beat hands out its schedules (the sweeper runs every minute).
        wait_until(lambda: "Sending due task" in beat.log_text(), 75, "beat to send a task", 1)
        say(f"beat sent its first due task {time.monotonic() - beat_started:.0f} s after start")

        # Stopped as systemd stops them: SIGTERM, each within its time, no traceback.
        for name in ("mss-beat", "mss-worker-interactive", "mss-worker-bulk", "mss-web"):
            took = smoke.stop(name)
            say(f"{name} stopped in {took:.1f} s")
            assert took < 15, name
        for name, service in smoke.services.items():
            assert "Traceback" not in service.log_text(), f"{name}:\n{service.log_tail()}"
        # Production logs JSON lines, each task's with its id (LOG_FORMAT defaults to json).
        task_lines = [
            json.loads(line)
            for line in bulk.log_text().splitlines()
            if line.startswith("{") and '"task_id": "' in line
        ]
        assert any(
            line["task_id"] and "sync_mailboxes" in line["message"] for line in task_lines
        ), task_lines[:3]
        access = [line for line in web.log_text().splitlines() if '"GET /metrics" 200' in line]
        assert access, "gunicorn's access line for the scrape"


# What one sync, one change and their notifications must have counted (mss/metrics.py):
# the web's own and scrape-time figures, and each worker's.
EXPECTED_NON_ZERO_WEB = [
    "mss_integrations",
    "mss_subscriptions",
    "mss_notifications_received_total",
    "mss_notification_answer_seconds_count",
]
EXPECTED_NON_ZERO_WORKER = [
    "mss_syncs_total",
    "mss_sync_duration_seconds_count",
    "mss_onex_operations_total",
    "mss_provider_http_responses_total",
]
