"""Faults of the queue and its stores mid-resync: a worker killed, Redis restarted empty,
database connections cut. An admin's new rule resyncs 120 mailboxes in three integrations
(every meeting becomes a Hänvisning); the fault strikes once a third of it reached One X."""

import signal
import time

import pytest

from .processes import wait_until

pytestmark = pytest.mark.faults

MID_RESYNC = 0.3


def start_resync(stack):
    stack.probe()
    stack.onex.knobs(latency_ms=30)  # One X's own latency: a resync takes seconds, not a blink
    stack.resync_with_new_rule()
    plan = stack.plan()
    return plan, stack.tally(plan, rows=False)


def test_a_worker_killed_mid_resync_loses_nothing(fault_stack):
    stack = fault_stack(1, "worker-sigkill")
    plan, before = start_resync(stack)
    stack.wait_for_progress(plan, before, MID_RESYNC)
    stack.workers[0].kill(signal.SIGKILL)  # the worker and its pool, as a lost machine
    time.sleep(1)
    stack.start_worker()  # a new worker 1 s later
    fault_ended = time.monotonic()
    stack.assert_recovered(stack.finish(fault_ended))


def test_redis_restarted_empty_mid_resync_loses_nothing(fault_stack):
    stack = fault_stack(2, "redis-restart")
    plan, before = start_resync(stack)
    stack.wait_for_progress(plan, before, MID_RESYNC)
    stack.redis.kill(signal.SIGKILL)  # no persistence: queued and unacknowledged tasks go
    stack.redis.start()
    fault_ended = time.monotonic()
    stack.assert_recovered(stack.finish(fault_ended))


def test_database_connections_cut_mid_resync_lose_nothing(fault_stack):
    stack = fault_stack(3, "db-terminate")
    plan, before = start_resync(stack)
    stack.wait_for_progress(plan, before, MID_RESYNC)
    cut = 0
    for _ in range(5):  # five cuts, 0.7 s apart: they hit reads, claims, records and releases
        cut += stack.db.terminate_other_sessions()
        time.sleep(0.7)
    fault_ended = time.monotonic()
    wait_until(lambda: stack.workers[-1].alive(), 10, "the worker to be up")
    stack.assert_recovered(stack.finish(fault_ended, notes=f" sessions_cut={cut}"))
