"""bench_e2e: change made in the M365 sandbox → entry visible in the One X sandbox.

The real stack of the fault matrix (gunicorn behind an https front, a Celery worker for both
queues plus a dedicated interactive one, beat, Redis and a PostgreSQL database of its own),
Graph answering 30 ms late. Changes are made one a second across BENCH_E2E_MAILBOXES mailboxes;
then again while BENCH_E2E_RESYNC mailboxes of another company resync (an admin's rule change,
repeated while changes remain). Prints p50/p90/p99; asserts nothing about time.

    .venv/bin/pytest -m bench -s -p no:cacheprovider tests/bench/test_bench_e2e.py
    BENCH_E2E_CHANGES=20 BENCH_E2E_RESYNC=200 …   (a short run while developing)
"""

import os
import time

import pytest
from django.db.models import Q

from calendarsync import tasks
from calendarsync.models import SyncedUser, SyncRule
from mss.celery import interactive_queue
from onex.models import AbsenceReason
from tests.faults import population
from tests.faults.processes import worker_service
from tests.m365_sandbox import connected_graph_integration

CHANGES = int(os.environ.get("BENCH_E2E_CHANGES", "200"))
MAILBOXES = int(os.environ.get("BENCH_E2E_MAILBOXES", "50"))
RESYNC = int(os.environ.get("BENCH_E2E_RESYNC", "2000"))
GRAPH_LATENCY_MS = int(os.environ.get("BENCH_E2E_GRAPH_MS", "30"))
VISIBLE_LIMIT = 60.0


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def summary(label, seconds) -> str:
    if not seconds:
        return f"bench_e2e {label}: no changes measured"
    return (
        f"bench_e2e {label}: {len(seconds)} changes, change → One X "
        f"p50 {percentile(seconds, 0.5):.3f} s, p90 {percentile(seconds, 0.9):.3f} s, "
        f"p99 {percentile(seconds, 0.99):.3f} s, max {max(seconds):.3f} s "
        f"(load {' '.join(f'{x:.2f}' for x in os.getloadavg())})"
    )


def resync_company(stack, count):
    """A second company whose `count` mailboxes (two bookings each) the resync reads."""
    company_id, name = "bench-resync", "Resync AB"
    emails = [f"user{n:05d}@resync.example.se" for n in range(count)]
    population.one_x_company(stack.onex, company_id, name, emails)
    tenant = stack.m365.add_tenant(name, users=emails)
    company = population.product_company(company_id, name, 900)
    integration = connected_graph_integration(company, tenant)
    population.add_users(integration, emails)
    rng = population.random.Random("bench-resync")
    for email in emails:
        for spec in population.booking_specs(rng, 2):
            stack.m365.create_event(email, tenant, **population.graph_event(spec))
    return integration


def toggle_rule(integration):
    """An admin adds (or removes) a rule: meetings become Hänvisning; all mailboxes resync."""
    rules = SyncRule.objects.filter(integration=integration)
    if rules.exists():
        rules.delete()
    else:
        SyncRule.objects.create(
            integration=integration,
            position=0,
            show_as=["busy"],
            action=SyncRule.Action.DIVERT,
            reason=AbsenceReason.objects.get(company=integration.company, code="MOTE"),
        )
    tasks.request_syncs(integration.users.all())


def measure(stack, mailboxes, changes, *, during=None) -> list[float]:
    """`changes` changes, one a second; each timed until its entry is in One X."""
    subscription_of = {
        u.email: u.subscription.onex_id
        for u in SyncedUser.objects.select_related("subscription").filter(
            email__in=[m.email for m in mailboxes]
        )
    }
    seconds, started = [], time.monotonic()
    for n in range(changes):
        if during is not None:
            during()
        time.sleep(max(0.0, started + n - time.monotonic()))
        mailbox = mailboxes[n % len(mailboxes)]
        onex_id = subscription_of[mailbox.email]

        def entries(mailbox=mailbox, onex_id=onex_id):
            return sum(
                1 for e in stack.onex.absences(mailbox.company) if e["subscriptionId"] == onex_id
            )

        before = entries()
        made = time.monotonic()
        stack.outlook.add(mailbox)
        deadline = made + VISIBLE_LIMIT
        while entries() <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        seconds.append(time.monotonic() - made)
    return seconds


@pytest.mark.bench
@pytest.mark.e2e
def test_bench_e2e(fault_stack):
    stack = fault_stack(90, "bench-e2e", graph=(1, MAILBOXES), bookings=4)
    stack.supervisor.add(
        worker_service(
            "interactive",
            stack.env(),
            stack.dir,
            queues=interactive_queue("celery"),
            concurrency=1,
        )
    ).start()
    stack.m365.knobs(latency_ms=GRAPH_LATENCY_MS)
    mailboxes = stack.mailboxes()
    quiet = measure(stack, mailboxes, CHANGES)
    stack.say(summary("quiet", quiet))

    if RESYNC:
        integration = resync_company(stack, RESYNC)
        users = integration.users.all()
        state = {"resyncs": 0, "started": time.monotonic(), "took": []}

        def keep_resyncing():
            running = Q(sync_requested_at__isnull=False) | Q(sync_started_at__isnull=False)
            if state["resyncs"] and users.filter(running).exists():
                return
            if state["resyncs"]:
                state["took"].append(time.monotonic() - state["started"])
            state["resyncs"] += 1
            state["started"] = time.monotonic()
            toggle_rule(integration)

        busy = measure(stack, mailboxes, CHANGES, during=keep_resyncing)
        stack.say(summary(f"during a {RESYNC}-mailbox resync", busy))
        took = ", ".join(f"{t:.0f} s" for t in state["took"]) or "still running at the end"
        stack.say(f"bench_e2e: {state['resyncs']} resync(s) started; finished ones took {took}")
