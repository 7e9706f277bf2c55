"""How far an integration's requested syncs have come, for the pages that watch them.

A mailbox is pending while its sync is requested (`sync_requested_at`) or running
(`sync_started_at`). A request older than MSS_SYNC_QUEUE_ALERT_MINUTES means no worker took it:
the pages show that as an error instead of a healthy "now".
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

PENDING = Q(sync_requested_at__isnull=False) | Q(sync_started_at__isnull=False)
POLL_SECONDS = 2  # while work is moving
STALLED_POLL_SECONDS = 30  # while nothing moves: the page still notices when workers return


def queue_alert_after() -> timedelta:
    return timedelta(minutes=settings.MSS_SYNC_QUEUE_ALERT_MINUTES)


@dataclass(frozen=True)
class SyncProgress:
    total: int
    pending: int
    oldest_request: datetime | None  # the longest-waiting request, if any
    stalled: bool  # that request has waited longer than the alert limit

    @property
    def done(self) -> int:
        return self.total - self.pending

    @property
    def poll_seconds(self) -> int | None:
        """How often a page showing this should ask again; None: nothing to wait for."""
        if not self.pending:
            return None
        return STALLED_POLL_SECONDS if self.stalled else POLL_SECONDS


def stalled(oldest_request: datetime | None, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return oldest_request is not None and oldest_request < now - queue_alert_after()


def sync_progress(users, now: datetime | None = None) -> SyncProgress:
    """Progress over a SyncedUser queryset (usually an integration's users), in one query."""
    counts = users.aggregate(
        total=Count("id"),
        pending=Count("id", filter=PENDING),
        oldest=Min("sync_requested_at"),
    )
    return SyncProgress(
        total=counts["total"],
        pending=counts["pending"],
        oldest_request=counts["oldest"],
        stalled=stalled(counts["oldest"], now),
    )


def poll_seconds(rows, now: datetime | None = None) -> int | None:
    """How often a list of loaded SyncedUser rows should be fetched again; None: none pending."""
    pending = [row for row in rows if row.sync_requested_at or row.sync_started_at]
    if not pending:
        return None
    oldest = min((row.sync_requested_at for row in pending if row.sync_requested_at), default=None)
    return STALLED_POLL_SECONDS if stalled(oldest, now) else POLL_SECONDS
