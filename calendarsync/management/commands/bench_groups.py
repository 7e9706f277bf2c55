"""Benchmark: Katalog Synk on a group of 10,000 members (Exchange Online).

Starts the Microsoft 365 sandbox as a separate process (`python -m sandbox.m365`), gives it a
tenant of N + 5 users and an Entra ID group of the first N, injects a fixed latency on every
HTTP round trip to Graph, and runs `calendarsync.membership.run` on a company with an active
One X subscription for each of those users (inside a transaction that is rolled back):

- first run: the group read whole, N users added;
- delta run, after 10 changes in Entra (5 users added to the group, 5 removed).

Prints for each run the seconds, the Graph HTTP requests (from the sandbox's request log), the
users added and removed, and the machine's load average. The tasks a run hands back (first
syncs, removals) are not run. The product reaches the sandbox only through settings.
"""

import os
import time

from django.core.management.base import BaseCommand
from django.db import transaction

from calendarsync import membership
from calendarsync.management.graph_bench import graph_pointed_at_sandbox
from calendarsync.models import FollowedGroup, Integration
from onex.models import Company, Subscription

BENCH_TENANT = "be9c0000-0000-4000-8000-0000000067c5"
CHANGES = 5  # users added to the group, and as many removed, before the delta run
DOMAIN = "bench.se"


class _Rollback(Exception):
    pass


def _email(n: int) -> str:
    return f"user{n:05d}@{DOMAIN}"  # as the sandbox's `generate` names them


class Command(BaseCommand):
    help = "Time Katalog Synk's membership runs on one large Entra ID group (M365 sandbox)."

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=10_000)
        parser.add_argument("--latency-ms", type=int, default=30)
        parser.add_argument("--port", type=int, default=0, help="0 = a free port")

    def handle(self, *args, **options):
        with graph_pointed_at_sandbox(options["port"]) as (base_url, control):
            self._run(base_url, control, options)

    def _run(self, base_url, control, options):
        count = options["members"]
        people = [_email(n) for n in range(count + CHANGES)]

        def sandbox(method, path, payload=None):
            answer = control.request(
                method, f"{base_url}/_sandbox/{path}", json=payload, timeout=600
            )
            answer.raise_for_status()
            return answer.json() if answer.content else None

        started = time.perf_counter()
        sandbox(
            "POST",
            "tenants",
            {
                "id": BENCH_TENANT,
                "name": "Bench AB",
                "generate": {"users": len(people), "domain": DOMAIN, "fortnight": False},
            },
        )
        group = sandbox(
            "POST",
            f"tenants/{BENCH_TENANT}/groups",
            {"displayName": "Alla", "members": people[:count]},
        )
        self.stdout.write(
            f"sandbox: {len(people)} users, a group of {count} in "
            f"{time.perf_counter() - started:.1f} s; latency {options['latency_ms']} ms per "
            "Graph round trip"
        )
        sandbox("POST", "knobs", {"latency_ms": options["latency_ms"]})

        def graph_requests() -> int:
            entries = sandbox("GET", "requests")["value"]
            sandbox("DELETE", "requests")
            return sum(1 for e in entries if e["path"].startswith("/v1.0") and not e.get("batch"))

        try:
            with transaction.atomic():
                integration = self._integration(people)
                FollowedGroup.objects.create(
                    integration=integration, provider_id=group["id"], name="Alla"
                )
                graph_requests()
                self._measure("first run (whole read)", integration, graph_requests)
                sandbox(
                    "POST",
                    f"tenants/{BENCH_TENANT}/groups/{group['id']}/members",
                    {"members": people[count:]},
                )
                sandbox(
                    "DELETE",
                    f"tenants/{BENCH_TENANT}/groups/{group['id']}/members",
                    {"members": people[:CHANGES]},
                )
                graph_requests()
                self._measure(
                    f"delta run ({CHANGES} added, {CHANGES} removed in Entra)",
                    integration,
                    graph_requests,
                )
                raise _Rollback
        except _Rollback:
            pass

    @staticmethod
    def _integration(people) -> Integration:
        """A company whose One X subscriptions are the tenant's users, none synced yet."""
        company = Company.objects.create(
            name="Bench AB", org_number="bench-groups", onex_id="bench-groups"
        )
        Subscription.objects.bulk_create(
            (
                Subscription(company=company, onex_id=f"bench-groups-{n}", email=email)
                for n, email in enumerate(people)
            ),
            batch_size=1000,
        )
        return Integration.objects.create(
            company=company,
            kind=Integration.Kind.GRAPH,
            name="Bench",
            status=Integration.Status.CONNECTED,
            tenant_id=BENCH_TENANT,
            user_source=Integration.UserSource.GROUPS_ONLY,
        )

    def _measure(self, label, integration, graph_requests):
        started = time.perf_counter()
        outcome = membership.run(integration)
        seconds = time.perf_counter() - started
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        error = f"; error {outcome.error}" if outcome.error else ""
        self.stdout.write(
            f"{label}: {seconds:.2f} s; {graph_requests()} Graph HTTP requests; "
            f"{len(outcome.added_ids)} users added, {outcome.removed} removed, "
            f"{len(outcome.held)} held{error}; load average {load}"
        )
