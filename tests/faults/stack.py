"""One fault scenario's whole stack, and the measurements every scenario takes.

Real processes on free ports: a Redis of the scenario's own (broker and cache), gunicorn behind
an https front (Graph delivers to https only; the front is production's TLS terminator), Celery
workers and beat, each under a supervisor that restarts what exits by itself. A PostgreSQL
database of its own. The sandboxes run in this process, as the other tests' fixtures run them.
Beat runs only the jobs that come round within the 120 s a scenario has to converge (the
sweepers): recovery must not wait for the hourly reconcile, nor pass because the half-hourly
renewal happened to fire.

A scenario: `start` (population, a first sync, processes), `probe` (a normal change gets
through), the fault, then `finish`: one more Outlook change just after the fault, the plan from
the sandbox calendars, and the time until One X, the plan and the product's rows agree.
"""

import contextlib
import os
import random
import shutil
import time
from dataclasses import dataclass

import environ
import redis
from celery.schedules import crontab
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from calendarsync import providers, subscriptions, sync, tasks
from calendarsync.models import Integration, SyncedUser, SyncRule
from onex.models import AbsenceReason
from tests.https_front import HttpsFront

from . import oracle, population
from .database import ScenarioDatabase
from .processes import (
    REPO,
    Supervisor,
    beat_service,
    free_port,
    redis_service,
    wait_until,
    web_service,
    worker_service,
)

CONVERGE_LIMIT = 120.0  # seconds after the fault ended (the "done when")
SETTLE = 5.0  # clean for this long counts as converged (a late stray write would show)
PROBE_LIMIT = 30.0
HOURLY_RECONCILE = "calendarsync.tasks.reconcile_all_mailboxes"
ARTIFACTS = REPO / "test-artifacts" / "faults"
REPORTS: list[tuple[int, str]] = []  # (scenario, FAULT line), repeated in pytest's summary


@dataclass
class Result:
    name: str
    tally: oracle.Tally
    converged: float | None  # seconds after the fault ended, None if not within the limit
    notes: str = ""

    @property
    def line(self) -> str:
        converged = f"{self.converged:.1f}s" if self.converged is not None else "no"
        load = os.getloadavg()[0]
        return (
            f"FAULT {self.name}: lost={self.tally.lost} duplicated={self.tally.duplicated} "
            f"converged={converged} (load {load:.1f}) [{self.tally.describe()}{self.notes}]"
        )


def period_seconds(task: PeriodicTask) -> float:
    """The longest wait between two runs of a periodic task."""
    if task.interval is not None:
        return task.interval.every * PERIODS[task.interval.period]
    if task.crontab is None:
        return float("inf")  # solar or clocked: not a periodic job of ours
    schedule = crontab(
        minute=task.crontab.minute,
        hour=task.crontab.hour,
        day_of_week=task.crontab.day_of_week,
        day_of_month=task.crontab.day_of_month,
        month_of_year=task.crontab.month_of_year,
    )
    if (len(schedule.hour), len(schedule.day_of_week), len(schedule.day_of_month)) != (24, 7, 31):
        return 24 * 3600.0  # at most hourly on some days: far too slow anyway
    minutes = sorted(schedule.minute)
    gaps = [b - a for a, b in zip(minutes, minutes[1:] + [minutes[0] + 60], strict=True)]
    return max(gaps) * 60.0


PERIODS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


def chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


class Stack:
    """A scenario's processes, world and measurements; `close` undoes everything `start` did."""

    def __init__(self, number, name, *, settings_fixture, m365, onex, m365_ca, ews=None):
        self.number, self.name = number, name
        # The processes' logs stay after the run (CI keeps test-artifacts/), one run's worth.
        self.dir = ARTIFACTS / f"{number:02d}-{name}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.settings = settings_fixture
        self.m365, self.onex, self.m365_ca, self.ews = m365, onex, m365_ca, ews
        self.db = ScenarioDatabase(number)
        self.supervisor = Supervisor()
        self.redis_port = free_port()
        self.web_port = free_port()
        self.broker_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.cache_url = f"rediscache://127.0.0.1:{self.redis_port}/1"
        self.workers = []
        self.population = population.Population()
        self.outlook = population.Outlook(m365, ews, seed=name)
        self.rng = random.Random(name)
        self.calendars = {"graph": oracle.GraphCalendars(m365), "ews": oracle.EwsCalendars()}
        self._exit = contextlib.ExitStack()
        self.front = None
        self.redis = self.web = self.beat = None

    # ----- start and stop

    def start(self, *, graph=(3, 40), ews_mailboxes=0, on_prem=None, bookings=6):
        """`graph`: (integrations, mailboxes each); `ews_mailboxes` needs `on_prem`."""
        self._exit.callback(self.db.drop)
        self._exit.callback(self.calendars["graph"].http.close)
        self.db.create()
        self._exit.enter_context(self.db.attached())
        self._exit.callback(self.supervisor.stop_all)
        self._keep_quick_schedules()
        self.redis = self.supervisor.add(redis_service(self.redis_port, self.dir)).start()
        self._point_this_process()
        self.front = HttpsFront(f"http://127.0.0.1:{self.web_port}", self.m365_ca)
        self._exit.callback(self.front.stop)
        self.settings.PUBLIC_BASE_URL = self.front.url
        self.ews_env = {}
        if ews_mailboxes:
            self._point_at_ews()
        self.web = self.supervisor.add(web_service(self.web_port, self.env(), self.dir)).start()
        if graph and graph[0]:
            self._add(
                population.build_graph(
                    self.m365,
                    self.onex,
                    seed=self.name,
                    integrations=graph[0],
                    per_integration=graph[1],
                    bookings=bookings,
                )
            )
        if ews_mailboxes:
            self._add(
                population.build_ews(
                    self.ews,
                    self.onex,
                    on_prem,
                    seed=self.name,
                    mailboxes=ews_mailboxes,
                    bookings=bookings,
                    number=self.number,
                )
            )
        self._first_sync()
        self.start_worker()
        self.beat = self.supervisor.add(beat_service(self.env(), self.dir)).start()
        return self

    def _keep_quick_schedules(self):
        """Beat keeps only what runs at least every CONVERGE_LIMIT seconds (the sweepers). A
        job of a longer period (the hourly reconcile, the half-hourly renewal, the directory
        import, the daily audit) either misses the window or, firing by the clock's chance,
        would make a scenario's result depend on the time of day."""
        kept = []
        for task in PeriodicTask.objects.select_related("crontab", "interval"):
            quick = period_seconds(task) <= CONVERGE_LIMIT
            if task.enabled and not quick:
                PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)
            elif task.enabled:
                kept.append(task.task)
        assert HOURLY_RECONCILE not in kept
        self.say(f"{self.name}: beat keeps {', '.join(kept) or 'nothing'}")

    def close(self):
        self._exit.close()

    def _add(self, part):
        self.population.integrations += part.integrations
        self.population.mailboxes += part.mailboxes

    def _point_this_process(self):
        """This process enqueues (a settings change, Aktiv off) to the scenario's Redis and
        shares its cache, as the web process does."""
        self._exit.callback(point_this_process(self.settings, self.broker_url, self.cache_url))

    def _point_at_ews(self):
        # Exchange pushes to the web process itself (http, as customers' Exchange servers are
        # configured with the firewall table's address); a status event every minute, the
        # shortest Exchange allows, so a silent subscription counts as lost after two.
        url = f"http://127.0.0.1:{self.web_port}{reverse('ews_notifications')}"
        self.settings.EWS_NOTIFICATION_URL = url
        self.settings.EWS_STATUS_FREQUENCY = 1
        self.ews_env = {
            "EWS_NOTIFICATION_URL": url,
            "EWS_STATUS_FREQUENCY": "1",
            "EWS_CA_BUNDLE": self.settings.EWS_CA_BUNDLE,
            "OUTBOUND_ALLOWED_HOSTS": ",".join(self.settings.OUTBOUND_ALLOWED_HOSTS),
        }

    def env(self) -> dict:
        s = self.settings
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DATABASE_URL", "CELERY_", "CACHE_URL", "DJANGO_", "MSS_"))
        }
        return {
            **base,
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": "mss.settings",
            "DATABASE_URL": self.db.url,
            "CELERY_BROKER_URL": self.broker_url,
            "CACHE_URL": self.cache_url,
            "DEBUG": "false",
            "MSS_VAR_DIR": str(self.dir / "var"),
            "SECRET_KEY": s.SECRET_KEY,
            "MSS_ENCRYPTION_KEYS": ",".join(s.MSS_ENCRYPTION_KEYS),
            "MS_LOGIN_URL": s.MS_LOGIN_URL,
            "MS_GRAPH_URL": s.MS_GRAPH_URL,
            "MS_CA_BUNDLE": s.MS_CA_BUNDLE,
            "MS_CLIENT_ID": s.MS_CLIENT_ID,
            "MS_CLIENT_SECRET": s.MS_CLIENT_SECRET,
            "ONEX_API_URL": s.ONEX_API_URL,
            "ONEX_CLIENT_ID": s.ONEX_CLIENT_ID,
            "ONEX_CLIENT_SECRET": s.ONEX_CLIENT_SECRET,
            "PUBLIC_BASE_URL": self.front.url,
            **self.ews_env,
        }

    def start_worker(self):
        name = f"worker-{len(self.workers) + 1}"
        worker = self.supervisor.add(worker_service(name, self.env(), self.dir)).start()
        self.workers.append(worker)
        return worker

    def restart_web(self):
        self.web.start()

    # ----- the first sync (in this process: quick, and no fault is injected yet)

    def _first_sync(self):
        for integration in self.population.integrations:
            users = list(
                integration.users.select_related("integration__company", "subscription").order_by(
                    "pk"
                )
            )
            for chunk in chunks(users, subscriptions.CHUNK_SIZE):
                ensured = subscriptions.ensure(chunk)
                assert not ensured.failed_ids, f"{len(ensured.failed_ids)} not subscribed"
            for chunk in chunks([u.pk for u in users], providers.bulk_size(integration.kind)):
                outcomes = sync.sync_mailboxes(chunk)
                failed = {pk: o for pk, o in outcomes.items() if o.status != sync.Status.OK}
                assert not failed, f"the first sync failed: {failed}"
        self.baseline = self.tally(self.plan())
        assert self.baseline.clean, f"the first sync left drift: {self.baseline.describe()}"
        self.say(f"{self.name}: first sync {self.baseline.describe()}")

    def say(self, line: str) -> None:
        """Print (pytest shows it with a failure) and keep it, timed, beside the logs."""
        print(line, flush=True)
        with open(self.dir / "scenario.log", "a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    # ----- measuring

    def plan(self, users=None) -> oracle.Plan:
        return oracle.plan_now(self.population, self.calendars, users=users)

    def tally(self, plan, *, rows=True) -> oracle.Tally:
        return oracle.tally(self.onex, plan, rows=rows)

    def mailboxes(self, integration=None):
        if integration is not None:
            return self.population.of(integration)
        return self.population.mailboxes

    def user_of(self, mailbox) -> SyncedUser:
        return SyncedUser.objects.get(
            email=mailbox.email, integration__company__onex_id=mailbox.company
        )

    def probe(self, label="a normal change", mailbox=None) -> float:
        """An Outlook change in one mailbox reaches One X (and the product's rows) in time."""
        mailbox = mailbox or self.rng.choice(self.mailboxes())
        started = time.monotonic()
        self.outlook.add(mailbox)
        plan = self.plan(users=SyncedUser.objects.filter(pk=self.user_of(mailbox).pk))
        wait_until(
            lambda: self.tally(plan).clean, PROBE_LIMIT, f"{label} to reach One X", interval=0.3
        )
        seconds = time.monotonic() - started
        self.say(f"{self.name}: {label} reached One X in {seconds:.1f} s")
        return seconds

    def resync_with_new_rule(self) -> None:
        """An admin adds a rule (meetings become Hänvisning) to every integration: each
        integration resyncs all its mailboxes, as saving the rules page does."""
        for integration in self.population.integrations:
            SyncRule.objects.create(
                integration=integration,
                position=0,
                show_as=["busy"],
                action=SyncRule.Action.DIVERT,
                reason=AbsenceReason.objects.get(company=integration.company, code="MOTE"),
            )
            tasks.request_syncs(integration.users.all())  # views.common.resync

    def wait_for_progress(self, plan, before: oracle.Tally, share: float, timeout=90) -> float:
        """Wait until `share` of the absences the change concerns are in One X as planned
        (mid-resync); returns the share reached."""
        changed = set(plan.absences) - before.matched
        assert changed, "the change concerns no absence"

        def reached():
            done = len(self.tally(plan, rows=False).matched & changed) / len(changed)
            return done if done >= share else 0

        done = wait_until(reached, timeout, f"{share:.0%} of the resync", interval=0.1)
        self.say(f"{self.name}: fault injected at {done:.0%} of {len(changed)} changes")
        return done

    def finish(self, fault_ended: float, *, change_after=True, notes="", phase="") -> Result:
        """One more change just after the fault, then the time until all agree."""
        if change_after:
            syncing = [
                m
                for i in self.population.integrations
                if Integration.objects.get(pk=i.pk).syncing
                for m in self.population.of(i)
            ]
            self.outlook.add(self.rng.choice(syncing))
        self.say(f"{self.name}: the fault ended {time.monotonic() - fault_ended:.1f} s ago")
        plan = self.plan()
        result = self.converge(plan, fault_ended, notes=notes)
        if phase:
            result.name = f"{self.name} ({phase})"
        self.say(result.line)
        REPORTS.append((self.number, result.line))
        return result

    def converge(self, plan, fault_ended: float, *, notes="", limit=CONVERGE_LIMIT) -> Result:
        clean_since = None
        while True:
            current = self.tally(plan)
            now = time.monotonic()
            if current.clean:
                clean_since = clean_since or now
                if now - clean_since >= SETTLE:
                    break
            else:
                clean_since = None
            if now - fault_ended > limit and clean_since is None:
                break
            time.sleep(1)
        converged = clean_since - fault_ended if clean_since is not None else None
        return Result(self.name, current, converged, notes + self.diagnostics())

    def diagnostics(self) -> str:
        """Why a scenario may not have converged: stuck mailboxes, queued and unacknowledged
        tasks, restarted processes."""
        users = self.population.users()
        requested = users.filter(sync_requested_at__isnull=False).count()
        claimed = users.filter(sync_started_at__isnull=False).count()
        broker = redis.Redis(port=self.redis_port, socket_timeout=2)
        try:
            queued = broker.llen("celery") + broker.llen("interactive")
            unacked = broker.zcard("unacked_index")
        except redis.RedisError:
            queued = unacked = "?"
        restarts = ",".join(f"{k}:{v}" for k, v in self.supervisor.restarts.items()) or "0"
        return (
            f" requested={requested} claimed={claimed} queued={queued} unacked={unacked}"
            f" restarts={restarts}"
        )

    def assert_recovered(self, result: Result) -> None:
        tally = result.tally
        where = f"the processes' logs: {self.dir}"
        assert tally.lost == 0 and tally.duplicated == 0, f"{result.line}\n{where}"
        assert result.converged is not None, f"{result.line}\n{where}"
        assert result.converged <= CONVERGE_LIMIT, f"{result.line}\n{where}"

    def onex_failures(self) -> int:
        """How many One X API requests the sandbox's knobs failed."""
        return sum(1 for request in self.onex.requests() if request.get("injected"))


def point_this_process(settings, broker_url: str, cache_url: str):
    """This test process's Celery and cache on a stack's Redis; returns the undo."""
    from mss.celery import app

    keys = ("broker_url", "task_default_queue", "broker_transport_options", "task_always_eager")
    saved = {key: app.conf[key] for key in keys}
    # Celery reads the broker from CELERY_BROKER_URL before its configuration.
    saved_environ = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = broker_url
    app.conf.update(
        broker_url=broker_url,
        task_default_queue="celery",
        broker_transport_options={},
        task_always_eager=False,
    )
    _reset_celery_connections(app)
    assert app.connection_for_write().as_uri().endswith(broker_url.rsplit(":", 1)[1])
    settings.CACHES = {"default": environ.Env.cache_url_config(cache_url)}

    def restore():
        if saved_environ is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_environ
        app.conf.update(saved)
        _reset_celery_connections(app)

    return restore


def _reset_celery_connections(app):
    # Drop this app's references only: kombu shares pools per broker URL across apps.
    app._pool = None
    app.__dict__.pop("amqp", None)  # rebuilt from the current conf on next use
