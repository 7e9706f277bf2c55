"""Who administers which company: One X decides.

A user administers a company while one of its active One X subscriptions has their verified
email and is marked admin (set in Mitt Företag). Memberships are created at sign-in and removed
at the next sign-in or directory import after One X stops marking them admin.
"""

import logging

from django.db import transaction
from django.db.models.functions import Lower

from .models import Company, Membership, Subscription

logger = logging.getLogger(__name__)


def admin_company_ids(email: str) -> set[int]:
    """The companies whose One X directory marks this address an active administrator."""
    email = (email or "").strip().lower()
    if not email:
        return set()
    return set(
        Subscription.objects.filter(email=email, is_admin=True, active=True).values_list(
            "company_id", flat=True
        )
    )


@transaction.atomic
def sync_user(user, email: str) -> set[int]:
    """Make the user's memberships match One X for their verified `email`; returns company ids."""
    wanted = admin_company_ids(email)
    held = set(user.memberships.values_list("company_id", flat=True))
    removed, _ = user.memberships.exclude(company_id__in=wanted).delete()
    Membership.objects.bulk_create(
        [Membership(user=user, company_id=company_id) for company_id in wanted - held],
        ignore_conflicts=True,  # a second tab signing in at the same moment
    )
    if removed or wanted - held:
        logger.info(
            "Memberships of user %s: %d added, %d removed", user.pk, len(wanted - held), removed
        )
    return wanted


def prune_company(company: Company) -> int:
    """Remove the memberships of users One X no longer marks admin of `company`; returns count."""
    admins = (
        company.subscriptions.filter(is_admin=True, active=True)
        .annotate(address=Lower("email"))
        .values("address")
    )
    removed, _ = (
        Membership.objects.filter(company=company)
        .alias(address=Lower("user__email"))
        .exclude(address__in=admins)
        .delete()
    )
    if removed:
        logger.info("Directory import of %s removed %d membership(s)", company.onex_id, removed)
    return removed
