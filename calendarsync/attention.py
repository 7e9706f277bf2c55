"""The integrations that need someone, across companies: Django admin's operations page
(Drift) for Telenor's support, and the `mss_*` gauges' sibling in the admin."""

from datetime import datetime

from django.db.models import Count, Q
from django.db.models.functions import Coalesce

from .daily import OVERDUE_AFTER
from .models import Integration, MailboxSubscription, SyncedUser


def integrations_needing_attention(now: datetime):
    """Active integrations that are stopped for a reason the admin must fix, failing, or have
    mailboxes in error, unread for OVERDUE_AFTER, or without a working subscription; each
    annotated with those counts (one query)."""
    users = "users"
    subscription_status = "users__mailbox_subscription__status"
    counted = Integration.objects.filter(active=True).exclude(status=Integration.Status.REMOVING)
    counted = counted.alias(
        last_read=Coalesce("users__last_synced_at", "users__created_at")
    ).annotate(
        mailboxes_failing=Count(
            users, filter=Q(users__state=SyncedUser.State.ERROR), distinct=True
        ),
        mailboxes_overdue=Count(
            users,
            filter=Q(last_read__lt=now - OVERDUE_AFTER, users__subscription__active=True),
            distinct=True,
        ),
        subscriptions_failed=Count(
            users,
            filter=Q(**{subscription_status: MailboxSubscription.Status.FAILED}),
            distinct=True,
        ),
        subscriptions_expired=Count(
            users,
            filter=Q(
                **{subscription_status: MailboxSubscription.Status.ACTIVE},
                users__mailbox_subscription__expires_at__lt=now,
            ),
            distinct=True,
        ),
    )
    return counted.filter(
        Q(status__in=[Integration.Status.NEEDS_ATTENTION, Integration.Status.ERROR])
        | Q(mailboxes_failing__gt=0)
        | Q(mailboxes_overdue__gt=0)
        | Q(subscriptions_failed__gt=0)
        | Q(subscriptions_expired__gt=0)
    )
