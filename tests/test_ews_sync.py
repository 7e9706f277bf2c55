"""Exchange On Prem through the whole sync: the EWS sandbox → the sync core → the One X sandbox.
A private booking never reaches One X, no request asks for a body, and with Alla möten
privata on no request asks for the subject either."""

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from calendarsync.models import Integration, SyncedUser
from calendarsync.sync import sync_mailbox
from onex.models import Subscription

ANNA = "anna.andersson@demo.se"  # sub-anna in the One X sandbox's Demo AB
BODY_URIS = {"item:Body", "item:TextBody", "item:UniqueBody", "item:MimeContent"}

pytestmark = pytest.mark.django_db


@pytest.fixture
def anna(on_prem, onex_sandbox, company):
    integration = on_prem(company, ANNA, name="Anna Andersson")
    subscription = Subscription.objects.create(
        company=company, onex_id="sub-anna", email=ANNA, display_name="Anna", has_diversion=True
    )
    return SyncedUser.objects.create(integration=integration, subscription=subscription, email=ANNA)


def soon(hours):
    return (timezone.now() + timedelta(days=1, hours=hours)).replace(
        minute=0, second=0, microsecond=0
    )


def add(ews, subject, start, **extra):
    return ews.create_event(
        ANNA,
        subject=subject,
        start=start.astimezone(UTC).isoformat(),
        end=(start + timedelta(hours=1)).astimezone(UTC).isoformat(),
        **extra,
    )


def entries(onex_sandbox):
    return [e for e in onex_sandbox.absences("demo-ab") if e["subscriptionId"] == "sub-anna"]


def test_a_private_booking_never_reaches_one_x_and_no_body_is_asked_for(ews, onex_sandbox, anna):
    Integration.objects.filter(pk=anna.integration_id).update(all_meetings_private=False)
    anna.refresh_from_db()
    add(ews, "Tandläkare", soon(1), sensitivity="Private")
    add(ews, "Hemligt", soon(3), sensitivity="Confidential")
    add(ews, "Kundmöte", soon(5))
    ews.clear_requests()
    assert sync_mailbox(anna).status == "ok"
    written = entries(onex_sandbox)
    assert len(written) == 1
    assert written[0]["start"].startswith(soon(5).astimezone(UTC).strftime("%Y-%m-%dT%H"))
    assert all(e["note"] not in ("Tandläkare", "Hemligt") for e in written)
    assert not ews.asked_fields() & BODY_URIS
    assert "item:Subject" in ews.asked_fields()  # subjects allowed for this integration


def test_with_all_meetings_private_no_subject_is_asked_for(ews, onex_sandbox, anna):
    Integration.objects.filter(pk=anna.integration_id).update(all_meetings_private=True)
    anna.refresh_from_db()
    add(ews, "Kundmöte med Volvo", soon(1))
    add(ews, "Lunch", soon(4))
    ews.clear_requests()
    assert sync_mailbox(anna).status == "ok"
    written = entries(onex_sandbox)
    assert len(written) == 2 and all(not e["note"] for e in written)
    asked = ews.asked_fields()
    assert asked and "item:Subject" not in asked and not asked & BODY_URIS


def test_moving_and_deleting_a_booking_update_and_remove_its_entry(ews, onex_sandbox, anna):
    booking = add(ews, "Styrgrupp", soon(2))
    assert sync_mailbox(anna).status == "ok"
    assert len(entries(onex_sandbox)) == 1
    later = soon(6)
    ews.update_event(
        ANNA,
        booking["id"],
        start=later.astimezone(UTC).isoformat(),
        end=(later + timedelta(hours=1)).astimezone(UTC).isoformat(),
    )
    assert sync_mailbox(SyncedUser.objects.get(pk=anna.pk)).status == "ok"
    (moved,) = entries(onex_sandbox)
    assert moved["start"].startswith(later.astimezone(UTC).strftime("%Y-%m-%dT%H"))
    ews.delete_event(ANNA, booking["id"])
    assert sync_mailbox(SyncedUser.objects.get(pk=anna.pk)).status == "ok"
    assert entries(onex_sandbox) == []
