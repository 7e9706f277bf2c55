import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone, translation

from calendarsync import actors
from calendarsync.models import (
    Activity,
    Booking,
    FollowedGroup,
    MailboxSubscription,
    MembershipReport,
    SyncedUser,
    SyncRule,
)
from onex.models import AbsenceReason, Membership


@pytest.fixture
def one_of_each(company, integration, subscription, admin_user):
    reason = AbsenceReason.objects.create(company=company, code="MOTE", label_sv="Möte")
    SyncRule.objects.create(integration=integration, action="info", reason=reason)
    user = SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=subscription.email
    )
    MailboxSubscription.objects.create(
        synced_user=user, provider_subscription_id="sub-abc", client_state="very-secret-state"
    )
    Booking.objects.create(
        synced_user=user,
        external_id="x1",
        provider_item_id="AAMk1",
        start="2026-12-01T09:00Z",
        end="2026-12-01T10:00Z",
        forwarding="info",
        reason_code="MOTE",
        return_at="2026-12-01T10:00Z",
        fingerprint="f",
        pushed_at="2026-11-30T10:00Z",
    )
    Activity.record(integration, "synced", actor=actors.SYSTEM, params={"written": 1})
    assert Membership.objects.exists()


def test_it_lets_staff_reach_every_model(staff_client, one_of_each):
    project_models = [
        model
        for model in admin.site._registry
        if model._meta.app_label in ("onex", "calendarsync", "django_celery_beat")
    ]
    assert len(project_models) >= 10
    for model in project_models:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert staff_client.get(changelist).status_code == 200, changelist
        obj = model._default_manager.first()
        if obj is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            assert staff_client.get(change).status_code == 200, change


def test_it_never_shows_secrets_in_admin(staff_client, one_of_each, integration):
    integration.ews_password = "Hemligt-Lösen-42"
    integration.save()
    sub = MailboxSubscription.objects.get()
    pages = [
        reverse("admin:calendarsync_integration_change", args=[integration.pk]),
        reverse("admin:calendarsync_mailboxsubscription_change", args=[sub.pk]),
        reverse("admin:calendarsync_mailboxsubscription_changelist"),
    ]
    for page in pages:
        body = staff_client.get(page).content.decode()
        assert "Hemligt-Lösen-42" not in body
        assert "very-secret-state" not in body


def test_it_keeps_the_password_when_admin_leaves_it_empty(staff_client, integration, company):
    integration.ews_password = "keep-me"
    integration.save()
    url = reverse("admin:calendarsync_integration_change", args=[integration.pk])
    response = staff_client.post(
        url,
        {
            "company": company.pk,
            "kind": "graph",
            "name": "Renamed",
            "active": "on",
            "days_ahead": 14,
            "ews_password": "",
            "rules-TOTAL_FORMS": 0,
            "rules-INITIAL_FORMS": 0,
            "groups-TOTAL_FORMS": 0,
            "groups-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    integration.refresh_from_db()
    assert integration.name == "Renamed"
    assert integration.ews_password == "keep-me"


def test_it_denies_admin_to_company_admins(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 302


def test_staff_read_the_followed_groups_and_the_last_membership_run(
    staff_client, integration, company
):
    group = FollowedGroup.objects.create(
        integration=integration,
        provider_id="g-1",
        name="Kalenderkoppling",
        members={"m1": ["anna@demo.se", "anna@demo.se"], "m2": ["bo@demo.se", "bo@demo.se"]},
        matched=1,
    )
    MembershipReport.objects.create(
        integration=integration,
        finished_at=timezone.now(),
        added=["anna@demo.se"],
        removed=3,
        without_subscription=["bo@demo.se"],
        held_removals=[7, 8],
        error="group_not_found",
    )
    url = reverse("admin:calendarsync_integration_change", args=[integration.pk])
    with translation.override("en"):
        body = staff_client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Kalenderkoppling" in body and "g-1" in body
    assert "1 added, 3 removed, 1 without a One X subscription, 2 removals held" in body
    assert "last run failed" in body
    assert 'name="groups-0-name"' not in body  # read only: chosen by the company admin

    # Saving the integration keeps its groups (the inline posts only their ids).
    response = staff_client.post(
        url,
        {
            "company": company.pk,
            "kind": "graph",
            "name": "Renamed",
            "active": "on",
            "days_ahead": 14,
            "rules-TOTAL_FORMS": 0,
            "rules-INITIAL_FORMS": 0,
            "groups-TOTAL_FORMS": 1,
            "groups-INITIAL_FORMS": 1,
            "groups-0-id": group.pk,
            "groups-0-integration": integration.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    group.refresh_from_db()
    assert group.name == "Kalenderkoppling" and len(group.members) == 2
