"""Ctrl-C on `make run`: every process gone within 10 s, and no traceback.

`make run` runs in a session of its own, as in a terminal; Ctrl-C is SIGINT to the whole
foreground process group, which is what a terminal sends. The embedded defaults (SQLite, the
file broker) under a fresh MSS_VAR_DIR; it needs ports 8000 and 8010–8013.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from tests.faults.processes import wait_until

from .units import REPO

pytestmark = pytest.mark.smoke

STOP_LIMIT = 10.0
PORTS = (8000, 8010, 8011, 8012, 8013)


def group_members(pgid: int) -> list[str]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    members.append(cmdline.read().replace(b"\0", b" ").decode(errors="replace"))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return members


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def test_ctrl_c_on_make_run_stops_everything_within_10_s_without_a_traceback(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "CELERY_", "CACHE_URL", "DJANGO_", "MSS_"))
    }
    env["MSS_VAR_DIR"] = str(tmp_path / "var")
    log_path = tmp_path / "make-run.log"
    with open(log_path, "w") as log:
        make = subprocess.Popen(
            ["make", "run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def up():
            text = log_path.read_text(errors="replace")
            return (
                answers("http://127.0.0.1:8000/healthz")
                and text.count(" ready.") >= 2  # both workers
                and "beat: Starting..." in text
            )

        wait_until(lambda: up() or make.poll() is not None, 300, "make run to start", 1)
        assert make.poll() is None, log_path.read_text()[-3000:]
        time.sleep(5)  # the start's reconcile and demo syncs are under way
        before = len(group_members(make.pid))
        pressed = time.monotonic()
        os.killpg(make.pid, signal.SIGINT)
        wait_until(lambda: not group_members(make.pid), STOP_LIMIT + 5, "every process to end")
        took = time.monotonic() - pressed
    finally:
        leftovers = group_members(make.pid)
        if leftovers:
            os.killpg(make.pid, signal.SIGKILL)
    text = log_path.read_text(errors="replace")
    after_ctrl_c = text[text.rfind("runserver") :]
    print(f"SMOKE make run: {before} processes, all gone {took:.1f} s after Ctrl-C")
    assert took <= STOP_LIMIT, f"{took:.1f} s"
    assert "Traceback" not in text, text[-5000:]
    assert "Stopping what did not stop" not in text, text[-3000:]
    assert "exited with 'signal" not in after_ctrl_c, after_ctrl_c[-3000:]
    for port in PORTS:
        assert not listening(port), f"something still listens on {port}"
