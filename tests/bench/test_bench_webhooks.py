"""bench_webhooks: Graph change-notification intake through gunicorn on PostgreSQL.

gunicorn as the fault matrix starts it (tests/faults/processes.py `web_service`; DEBUG off,
persistent database connections as on PostgreSQL by default) on a free port, the subscriptions
made up front, and client threads POSTing batches of notifications with valid clientStates
(each batch for distinct mailboxes picked at random, so some find their run pending and some
request one). The runs they request go to a queue of the benchmark's own in Redis, dropped at the
end. Prints notifications/s, POSTs/s, p50 and p99 per POST and the load average; asserts no
timings.

    .venv/bin/pytest -m bench -s -p no:cacheprovider tests/bench/test_bench_webhooks.py
    knobs: BENCH_WEBHOOKS_SECONDS (20), _CLIENTS (8), _BATCH (10), _MAILBOXES (1000),
    _WORKERS (gunicorn workers, 4)
"""

import http.client
import json
import os
import random
import threading
import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from calendarsync.models import Integration, MailboxSubscription, SyncedUser
from mss.celery import interactive_queue
from onex.models import Company, Subscription
from tests.faults.processes import free_port, web_service

SECONDS = float(os.environ.get("BENCH_WEBHOOKS_SECONDS", "20"))
CLIENTS = int(os.environ.get("BENCH_WEBHOOKS_CLIENTS", "8"))
BATCH = int(os.environ.get("BENCH_WEBHOOKS_BATCH", "10"))
MAILBOXES = int(os.environ.get("BENCH_WEBHOOKS_MAILBOXES", "1000"))
WORKERS = int(os.environ.get("BENCH_WEBHOOKS_WORKERS", "4"))
TENANT = "bench-tenant"


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def make_subscriptions(count):
    company = Company.objects.create(name="Bench AB", org_number="559999-0001", onex_id="bench")
    integration = Integration.objects.create(
        company=company, kind="graph", name="Exchange Online", status="connected", tenant_id=TENANT
    )
    subs = Subscription.objects.bulk_create(
        Subscription(company=company, onex_id=f"s{n}", email=f"u{n}@bench.se") for n in range(count)
    )
    users = SyncedUser.objects.bulk_create(
        SyncedUser(integration=integration, subscription=s, email=s.email) for s in subs
    )
    expires = timezone.now() + timedelta(days=2)
    MailboxSubscription.objects.bulk_create(
        MailboxSubscription(
            synced_user=u,
            provider_subscription_id=f"graph-sub-{n}",
            client_state=f"state-{n}",
            expires_at=expires,
        )
        for n, u in enumerate(users)
    )


def body(rng) -> bytes:
    numbers = rng.sample(range(MAILBOXES), min(BATCH, MAILBOXES))
    value = [
        {
            "subscriptionId": f"graph-sub-{n}",
            "changeType": "updated",
            "resource": f"Users/u{n}/Events/e",
            "clientState": f"state-{n}",
            "tenantId": TENANT,
        }
        for n in numbers
    ]
    return json.dumps({"value": value}).encode()


def client_thread(port, path, stop, latencies, failures, seed):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not stop.is_set():
        payload = body(rng)
        started = time.perf_counter()
        try:
            conn.request("POST", path, payload, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            ok = response.status == 202
            if response.getheader("Connection", "").lower() == "close":
                conn.close()  # gunicorn's sync workers close after each request
        except (OSError, http.client.HTTPException):
            conn.close()
            ok = False
        (latencies if ok else failures).append(time.perf_counter() - started)


@pytest.mark.bench
def test_bench_webhooks(transactional_db, tmp_path):
    assert connection.vendor == "postgresql", "bench_webhooks needs DATABASE_URL=postgres://…"
    make_subscriptions(MAILBOXES)
    queue = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    db = connection.settings_dict
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_CONN", "DJANGO_"))},
        "DJANGO_SETTINGS_MODULE": "mss.settings",
        "DATABASE_URL": (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CACHE_URL": os.environ.get("CACHE_URL", "locmemcache://"),
        "DEBUG": "false",
        "SECRET_KEY": settings.SECRET_KEY,
        "MSS_ENCRYPTION_KEYS": ",".join(settings.MSS_ENCRYPTION_KEYS),
        "LOG_LEVEL": "WARNING",
    }
    port = free_port()
    web = web_service(port, env, tmp_path)
    web.argv[web.argv.index("--workers") + 1] = str(WORKERS)
    web.start()
    path = reverse("calendarsync:graph_notifications")
    stop, latencies, failures = threading.Event(), [], []
    threads = [
        threading.Thread(
            target=client_thread, args=(port, path, stop, latencies, failures, n), daemon=True
        )
        for n in range(CLIENTS)
    ]
    try:
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(SECONDS)
        stop.set()
        for thread in threads:
            thread.join(15)
        elapsed = time.perf_counter() - started
        load = os.getloadavg()
    finally:
        web.stop()
        with redis.Redis.from_url(broker) as r:
            r.delete(queue, interactive_queue(queue))
    posts = len(latencies)
    assert posts, f"no POST answered 202 ({len(failures)} failed):\n{web.log_tail()}"
    print(
        f"\nbench_webhooks: {posts * BATCH / elapsed:.0f} notifications/s "
        f"({posts / elapsed:.0f} POSTs/s of {BATCH}; {CLIENTS} clients, {WORKERS} gunicorn "
        f"workers, {MAILBOXES} mailboxes), per POST p50 {percentile(latencies, 0.5) * 1000:.1f}"
        f" ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms, {len(failures)} failed "
        f"(load {' '.join(f'{x:.2f}' for x in load)})",
        flush=True,
    )
