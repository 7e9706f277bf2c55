"""What the database and the rate budget say, read when Prometheus scrapes /metrics.

A collector, not gauges kept by the processes: every web worker would otherwise report its own
copy, and a gauge set in a process that died stays behind. A scrape costs three aggregate
queries and one Redis call. A part that cannot be read (database or Redis away) is left out of
that scrape, so /metrics still answers.
"""

import logging

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, F, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from redis import RedisError

from onex.budget import budget_for

from .models import Integration, MailboxSubscription, SyncedUser
from .subscriptions import RENEW_BEFORE

logger = logging.getLogger(__name__)


class StateCollector:
    """A prometheus_client custom collector (register it on a registry)."""

    def collect(self):
        now = timezone.now()
        for part in (self._queue, self._subscriptions, self._integrations):
            try:
                yield from part(now)
            except DatabaseError:
                logger.warning("Metrics: %s not read (database error)", part.__name__)
        try:
            yield from self._budget()
        except (RedisError, OSError):
            logger.warning("Metrics: One X rate budget not read (Redis error)")

    @staticmethod
    def _queue(now):
        due = Q(sync_requested_at__lte=now)
        counts = SyncedUser.objects.aggregate(
            waiting=Count("id", filter=due),
            running=Count("id", filter=Q(sync_started_at__isnull=False)),
            oldest=Min("sync_requested_at", filter=due),
        )
        yield GaugeMetricFamily(
            "mss_sync_waiting_mailboxes",
            "Mailboxes with a sync request that is due (requested and not yet run).",
            value=counts["waiting"],
        )
        yield GaugeMetricFamily(
            "mss_sync_running_mailboxes",
            "Mailboxes a sync run holds now.",
            value=counts["running"],
        )
        oldest = counts["oldest"]
        yield GaugeMetricFamily(
            "mss_sync_oldest_request_age_seconds",
            "How long the longest-waiting due sync request has waited (0: none waiting).",
            value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )

    @staticmethod
    def _subscriptions(now):
        active = Q(status=MailboxSubscription.Status.ACTIVE)
        soon = now + RENEW_BEFORE
        rows = (
            MailboxSubscription.objects.values(provider=F("synced_user__integration__kind"))
            .annotate(
                live=Count(
                    "id", filter=active & (Q(expires_at__isnull=True) | Q(expires_at__gt=soon))
                ),
                expiring=Count("id", filter=active & Q(expires_at__gt=now, expires_at__lte=soon)),
                expired=Count("id", filter=active & Q(expires_at__lte=now)),
                failed=Count("id", filter=Q(status=MailboxSubscription.Status.FAILED)),
            )
            .order_by()
        )
        family = GaugeMetricFamily(
            "mss_subscriptions",
            "Change-notification subscriptions by provider and state (active, expiring: "
            "due for renewal, expired: past expiry, failed).",
            labels=["provider", "state"],
        )
        found = {row["provider"]: row for row in rows}
        for kind in Integration.Kind.values:
            row = found.get(kind, {})
            for state, key in (
                ("active", "live"),
                ("expiring", "expiring"),
                ("expired", "expired"),
                ("failed", "failed"),
            ):
                family.add_metric([kind, state], row.get(key, 0))
        yield family

    @staticmethod
    def _integrations(now):
        rows = Integration.objects.values("kind", "status").annotate(n=Count("id")).order_by()
        counts = {(row["kind"], row["status"]): row["n"] for row in rows}
        family = GaugeMetricFamily(
            "mss_integrations",
            "Integrations by provider kind and status.",
            labels=["kind", "status"],
        )
        for kind in Integration.Kind.values:
            for status in Integration.Status.values:
                family.add_metric([kind, status], counts.get((kind, status), 0))
        yield family

    @staticmethod
    def _budget():
        budget = budget_for(settings.ONEX_API_URL, settings.ONEX_CLIENT_ID)
        if budget is None:  # ONEX_RATE_LIMIT_PER_MINUTE=0: no budget kept
            return
        left = budget.units_left()
        family = GaugeMetricFamily(
            "mss_onex_budget_units_left",
            "One X requests each lane of the shared rate budget may still send in this window.",
            labels=["lane"],
        )
        for lane, units in left.items():
            family.add_metric([str(lane)], units)
        yield family
        yield GaugeMetricFamily(
            "mss_onex_budget_limit",
            "One X requests allowed per window (ONEX_RATE_LIMIT_PER_MINUTE).",
            value=budget.limit,
        )
