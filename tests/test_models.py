from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from calendarsync.models import Booking, Integration, SyncedUser
from calendarsync.retention import purge_expired_bookings
from onex.models import Subscription


def test_it_allows_one_synced_user_per_email(integration, subscription):
    SyncedUser.objects.create(integration=integration, subscription=subscription, email="a@x.se")
    with pytest.raises(IntegrityError), transaction.atomic():
        SyncedUser.objects.create(
            integration=integration, subscription=subscription, email="A@x.se "
        )


def test_it_keeps_days_ahead_in_range(company):
    with pytest.raises(IntegrityError), transaction.atomic():
        Integration.objects.create(company=company, kind="graph", name="x", days_ahead=61)
    integration = Integration(company=company, kind="graph", name="x", days_ahead=0)
    with pytest.raises(ValidationError):
        integration.full_clean()


def test_it_rejects_a_subscription_of_another_company(integration, other_company):
    theirs = Subscription.objects.create(company=other_company, onex_id="s9", email="b@annat.se")
    user = SyncedUser(integration=integration, subscription=theirs, email="b@annat.se")
    with pytest.raises(ValidationError) as exc:
        user.full_clean()
    assert "subscription" in exc.value.message_dict


def make_booking(user, external_id, end):
    return Booking.objects.create(
        synced_user=user,
        external_id=external_id,
        provider_item_id=external_id,
        start=end - timedelta(hours=1),
        end=end,
        forwarding="info",
        reason_code="MOTE",
        return_at=end,
        fingerprint="f",
        pushed_at=end,
    )


def test_it_purges_bookings_that_ended_over_30_days_ago(integration, subscription):
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )
    now = timezone.now()
    make_booking(user, "old", now - timedelta(days=31))
    make_booking(user, "recent", now - timedelta(days=29))
    assert purge_expired_bookings(now) == 1
    assert list(Booking.objects.values_list("external_id", flat=True)) == ["recent"]
