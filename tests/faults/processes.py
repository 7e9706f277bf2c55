"""The real processes of a fault scenario: Redis, gunicorn, Celery workers and beat.

Each runs in a session of its own (so a kill reaches its children: the prefork pool, gunicorn's
workers) and logs to a file in the scenario's directory. `Supervisor` restarts a product process
that exits by itself, as the deploy recipe's supervisor does, and counts the restarts.
"""

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from mss.celery import worker_queues

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def deployed_worker_switches() -> list[str]:
    """The `--without-…` switches the deploy recipe's workers start with, so that a test's worker
    meets a broker outage the way a deployed one does (with gossip and mingle on, Celery 5's worker
    can reconnect to a restarted Redis and never consume again)."""
    unit = (REPO / "deploy/systemd/mss-worker-bulk.service").read_text()
    command = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    return [word for word in command.split() if word.startswith("--without-")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, message: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")


class Service:
    """One subprocess, started again with the same command line after a stop or a kill."""

    def __init__(self, name: str, argv: list[str], *, env: dict, log_dir: Path, ready):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.ready = ready  # callable(service) -> bool
        self.process: subprocess.Popen | None = None
        self._log = None
        self.started_at_offset = 0
        self.expected_down = True  # the supervisor leaves a stopped or killed service alone

    def start(self, timeout: float = 60) -> "Service":
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in _reap
        self._log.write(f"\n----- start {time.strftime('%H:%M:%S')}\n")
        self._log.flush()
        self.started_at_offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: self.ready(self) or not self.alive(), timeout, f"{self.name} to start")
        assert self.alive(), f"{self.name} exited at start:\n{self.log_tail()}"
        self.expected_down = False
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig=signal.SIGKILL) -> None:
        """Signal the whole process group (a machine losing the process, with its children)."""
        self.expected_down = True
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            if sig == signal.SIGKILL:
                self.process.wait(timeout=10)
                self._reap()

    def stop(self, timeout: float = 15) -> None:
        self.expected_down = True
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # Whatever of the group still runs (a pool child, a warm shutdown that hangs) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._reap()

    def _reap(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        with open(self.log_path, errors="replace") as log:
            log.seek(self.started_at_offset)
            return log.read()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]


class Supervisor:
    """Restarts a service that exited although nobody stopped it, one second later."""

    live: set["Supervisor"] = set()  # stopped at exit too, should a teardown never run

    def __init__(self):
        Supervisor.live.add(self)
        self.services: list[Service] = []
        self.restarts: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def add(self, service: Service) -> Service:
        with self._lock:
            self.services.append(service)
        return service

    def _watch(self):
        while not self._stop.wait(0.5):
            with self._lock:
                services = list(self.services)
            for service in services:
                if not service.expected_down and not service.alive():
                    service._reap()
                    time.sleep(1)
                    if self._stop.is_set() or service.expected_down:
                        continue
                    self.restarts[service.name] = self.restarts.get(service.name, 0) + 1
                    with contextlib.suppress(AssertionError):
                        service.start()

    def stop_all(self):
        """Stop every service, newest first; each even if another one's stop failed."""
        Supervisor.live.discard(self)
        self._stop.set()
        self._thread.join(timeout=5)
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()


@atexit.register
def _stop_leftovers():
    for supervisor in list(Supervisor.live):
        supervisor.stop_all()


# ----- the kinds of service


def redis_service(port: int, log_dir: Path) -> Service:
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(log_dir),
    ]
    return Service("redis", argv, env=dict(os.environ), log_dir=log_dir, ready=_redis_ready(port))


def _redis_ready(port):
    def ready(_service):
        try:
            return redis.Redis(port=port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    return ready


def web_service(port: int, env: dict, log_dir: Path) -> Service:
    argv = [
        str(BIN / "gunicorn"),
        "mss.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--timeout",
        "30",
        "--graceful-timeout",
        "5",
    ]
    return Service("web", argv, env=env, log_dir=log_dir, ready=_http_ready(port))


def _http_ready(port):
    def ready(_service):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"GET /login/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
        return False

    return ready


def worker_service(
    name: str, env: dict, log_dir: Path, *, queues: str = "", concurrency: int = 2
) -> Service:
    # The Makefile's worker (make run), named so that two of them can share the broker; one
    # worker consumes both queues unless told (production runs a dedicated interactive worker).
    queues = queues or worker_queues(env.get("CELERY_TASK_DEFAULT_QUEUE", "celery"))
    argv = [
        str(BIN / "celery"),
        "-A",
        "mss",
        "worker",
        "-l",
        "info",
        "-Q",
        queues,
        "--concurrency",
        str(concurrency),
        "-n",
        f"{name}@%h",
        *deployed_worker_switches(),
    ]
    return Service(
        name, argv, env=env, log_dir=log_dir, ready=lambda s: " ready." in s.log_since_start()
    )


def beat_service(env: dict, log_dir: Path) -> Service:
    argv = [
        str(BIN / "celery"),
        "-A",
        "mss",
        "beat",
        "-l",
        "info",
        "--schedule",
        str(log_dir / "celerybeat-schedule"),
        "--pidfile",
        str(log_dir / "celerybeat.pid"),
    ]
    return Service(
        "beat",
        argv,
        env=env,
        log_dir=log_dir,
        ready=lambda s: "beat: Starting..." in s.log_since_start(),
    )
