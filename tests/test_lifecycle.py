"""An integration's life: the state machine's transitions, Aktiv off and on, removal (the UI's
page and Django admin), and no clutter from failed consents."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from calendarsync import claims, lifecycle, providers, removal, subscriptions, sync, tasks
from calendarsync.actors import SYSTEM
from calendarsync.models import Activity, Booking, Integration, MailboxSubscription, SyncedUser
from calendarsync.providers.base import ConsentRevoked, CredentialsRejected
from calendarsync.providers.memory import InMemoryCalendar
from onex.models import Subscription
from onex.operations import InMemoryAbsences
from tests.calendar_factory import item

PEOPLE = ["anna@demo.se", "bo@demo.se", "cia@demo.se"]


@pytest.fixture
def calendar(monkeypatch):
    calendar = InMemoryCalendar(mailboxes={email: [] for email in PEOPLE})
    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    return calendar


@pytest.fixture
def onex(monkeypatch):
    onex = InMemoryAbsences()
    monkeypatch.setattr(sync, "default_writer", lambda lane=None: onex)
    return onex


@pytest.fixture
def users(integration, company):
    made = []
    for n, email in enumerate(PEOPLE):
        subscription = Subscription.objects.create(
            company=company, onex_id=f"sub-{n}", email=email, has_diversion=True
        )
        made.append(
            SyncedUser.objects.create(
                integration=integration, subscription=subscription, email=email
            )
        )
    return made


@pytest.fixture
def synced(integration, users, calendar, onex):
    """Every user subscribed and synced with one meeting in One X."""
    tomorrow = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    for n, user in enumerate(users):
        calendar.put(user.email, item(f"m-{n}", tomorrow + timedelta(hours=n)))
    subscriptions.ensure(SyncedUser.objects.select_related("integration"))
    sync.sync_mailboxes([user.pk for user in users], provider=calendar, writer=onex)
    assert len(onex.entries) == 3 and len(calendar.subscriptions) == 3
    return users


@pytest.fixture
def staff(django_user_model):
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("s@telenor.se", password="x-1"))
    return staff


# ----- transitions


def test_each_transition_records_one_activity_and_only_once(integration):
    assert integration.pause(actor=SYSTEM) and not integration.pause(actor=SYSTEM)
    assert (integration.status, integration.active) == ("paused", False)
    assert integration.resume(actor=SYSTEM) and not integration.resume(actor=SYSTEM)
    assert (integration.status, integration.active) == ("connected", True)
    error = CredentialsRejected("app credentials rejected", code="invalid_client (AADSTS7000215)")
    assert integration.needs_attention(error) and not integration.needs_attention(error)
    assert integration.status == "needs_attention"
    assert integration.attention == Integration.Attention.CREDENTIALS_REJECTED
    assert integration.connect(actor=SYSTEM) and integration.status == "connected"
    assert integration.attention == "" and integration.last_error == ""
    assert integration.mark_error("Graph unreachable") and not integration.mark_error("again")
    assert integration.clear_error() and integration.status == "connected"
    assert integration.start_removal(actor=SYSTEM) and not integration.start_removal(actor=SYSTEM)
    events = list(Activity.objects.order_by("id").values_list("event", flat=True))
    assert events == [
        "paused",
        "resumed",
        "credentials_rejected",
        "connected",
        "error",
        "recovered",
        "removing",
    ]


def test_a_paused_integration_stays_paused_when_its_consent_comes(company):
    pending = Integration.objects.create(company=company, kind="graph", name="Ny")
    pending.pause(actor=SYSTEM)
    assert pending.status == "pending_consent" and not pending.active
    pending.connect(actor=SYSTEM)
    assert pending.status == "paused" and not pending.syncing


def test_the_dashboard_says_what_to_do_for_each_reason(en_client, integration):
    for error, words in [
        (ConsentRevoked(), "Enterprise Applications"),
        (CredentialsRejected(), "Telenor support"),
    ]:
        Integration.objects.filter(pk=integration.pk).update(status="connected")
        integration.refresh_from_db()
        integration.needs_attention(error)
        body = en_client.get(
            reverse("calendarsync:dashboard", args=[integration.code])
        ).content.decode()
        assert words in body and 'id="needs-attention"' in body


# ----- Aktiv off and on


def _settings(integration, **changes):
    data = {"name": integration.name, "days_ahead": "14", "plugin_enabled": "on"}
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_aktiv_off_removes_entries_and_subscriptions_and_on_brings_them_back(
    en_client, integration, synced, calendar, onex, eager_celery, django_capture_on_commit_callbacks
):
    url = reverse("calendarsync:integration", args=[integration.code])
    with django_capture_on_commit_callbacks(execute=True):
        page = en_client.post(url, _settings(integration), follow=True).content.decode()
    assert "change notifications are being removed" in page
    integration.refresh_from_db()
    assert (integration.status, integration.active) == ("paused", False)
    assert onex.entries == {} and calendar.subscriptions == {}
    assert not Booking.objects.exists() and not MailboxSubscription.objects.exists()
    assert SyncedUser.objects.count() == 3  # the users stay

    # While paused, a change triggers nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.request_sync(synced[0].pk) is False

    with django_capture_on_commit_callbacks(execute=True):
        en_client.post(url, _settings(integration, active="on"))
    integration.refresh_from_db()
    assert (integration.status, integration.active) == ("connected", True)
    assert len(calendar.subscriptions) == 3
    assert MailboxSubscription.objects.filter(status="active").count() == 3
    assert len(onex.entries) == 3


def test_aktiv_off_twice_or_on_again_before_the_task_ran_removes_nothing(
    integration, synced, calendar, onex
):
    lifecycle.set_active(integration, False, actor=SYSTEM)
    lifecycle.set_active(integration, True, actor=SYSTEM)  # the admin changed their mind at once
    assert tasks.clear_integration.run(integration.pk) == "skipped"
    assert len(onex.entries) == 3 and len(calendar.subscriptions) == 3


def test_a_busy_mailbox_makes_the_clearing_retry_and_loses_nothing(
    integration, synced, calendar, onex
):
    integration.pause(actor=SYSTEM)
    claims.claim(synced[1], synced[1].created_at)  # a run still holds Bo's mailbox
    with pytest.raises(removal.RemovalIncomplete):
        removal.clear_integration(integration)
    assert list(Booking.objects.values_list("synced_user", flat=True)) == [synced[1].pk]
    assert len(onex.entries) == 1
    SyncedUser.objects.update(sync_started_at=None)
    removal.clear_integration(integration)
    assert onex.entries == {} and not Booking.objects.exists()


# ----- removing an integration


def test_the_removal_page_says_what_goes_and_the_task_removes_it_all(
    en_client, integration, synced, calendar, onex, eager_celery, django_capture_on_commit_callbacks
):
    url = reverse("calendarsync:integration_remove", args=[integration.code])
    page = en_client.get(url).content.decode()
    for text in [
        "3 users and their email addresses",
        "3 entries in One X",
        "3 change-notification subscriptions",
        "The settings and 0 sync rules",
    ]:
        assert text in page
    assert integration.pk and Integration.objects.filter(pk=integration.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = en_client.post(url)
    assert response["Location"] == reverse("calendarsync:overview")
    assert not Integration.objects.exists() and not SyncedUser.objects.exists()
    assert onex.entries == {} and calendar.subscriptions == {}
    assert not SyncedUser.objects.filter(email__in=PEOPLE).exists()
    removed = Activity.objects.get(event="integration_removed")
    assert removed.integration is None and removed.company_id == integration.company_id
    assert "3 users" in removed.message and "anna@demo.se" not in removed.message


def test_the_overview_shows_a_removal_in_progress(en_client, integration):
    integration.start_removal(actor=SYSTEM)
    body = en_client.get(reverse("calendarsync:overview")).content.decode()
    assert "badge-removing" in body and "being removed" in body


def test_django_admin_deletes_through_the_removal_path(
    integration,
    synced,
    calendar,
    onex,
    eager_celery,
    staff,
    django_capture_on_commit_callbacks,
):
    user_url = reverse("admin:calendarsync_synceduser_delete", args=[synced[0].pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert staff.post(user_url, {"post": "yes"}).status_code == 302
    assert not SyncedUser.objects.filter(pk=synced[0].pk).exists()
    assert len(onex.entries) == 2 and len(calendar.subscriptions) == 2

    url = reverse("admin:calendarsync_integration_delete", args=[integration.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert staff.post(url, {"post": "yes"}).status_code == 302
    assert not Integration.objects.exists() and not SyncedUser.objects.exists()
    assert onex.entries == {} and calendar.subscriptions == {}


def test_django_admin_aktiv_goes_through_the_state_machine(
    integration,
    synced,
    calendar,
    onex,
    eager_celery,
    staff,
    django_capture_on_commit_callbacks,
):
    url = reverse("admin:calendarsync_integration_change", args=[integration.pk])
    form = {
        "company": integration.company_id,
        "kind": "graph",
        "name": integration.name,
        "days_ahead": "14",
        "plugin_enabled": "on",
        "tenant_id": "",
        "ews_url": "",
        "ews_username": "",
        "ews_password": "",
        "rules-TOTAL_FORMS": "0",
        "rules-INITIAL_FORMS": "0",
        "groups-TOTAL_FORMS": "0",  # the followed groups (read only)
        "groups-INITIAL_FORMS": "0",
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert staff.post(url, form).status_code == 302
    integration.refresh_from_db()
    assert (integration.status, integration.active) == ("paused", False)
    assert onex.entries == {}


# ----- no clutter from consent


def test_adding_exchange_online_again_reuses_the_unconsented_one(en_client, company):
    for _ in range(3):
        en_client.post(reverse("calendarsync:integration_add"), {"kind": "graph"})
    assert Integration.objects.filter(company=company).count() == 1


def test_a_second_exchange_online_gets_a_name_of_its_own(en_client, company, integration):
    Integration.objects.filter(pk=integration.pk).update(tenant_id="t-1")
    en_client.post(reverse("calendarsync:integration_add"), {"kind": "graph"})
    names = set(Integration.objects.filter(company=company).values_list("name", flat=True))
    assert names == {"Exchange Online", "Exchange Online 2"}


def test_a_failed_first_consent_offers_try_again_and_remove(en_client, company):
    en_client.post(reverse("calendarsync:integration_add"), {"kind": "graph"})
    pending = Integration.objects.get(company=company)
    body = en_client.get(reverse("calendarsync:integration", args=[pending.code])).content
    body = body.decode()
    assert 'id="consent-retry"' in body and 'id="consent-remove"' in body
    assert reverse("calendarsync:graph_consent_start", args=[pending.code]) in body
    assert reverse("calendarsync:integration_remove", args=[pending.code]) in body


def test_names_are_unique_per_company(en_client, company, integration):
    Integration.objects.create(company=company, kind="ews", name="Lokal")
    url = reverse("calendarsync:integration", args=[integration.code])
    body = en_client.post(url, _settings(integration, name="lokal", active="on")).content
    assert "Another integration is already called lokal. Try lokal 2." in body.decode()
    integration.refresh_from_db()
    assert integration.name == "Exchange Online"
    body = en_client.post(
        reverse("calendarsync:integration_add_ews"),
        {
            "name": "Exchange Online",
            "ews_url": "https://mail.demo.se/EWS/Exchange.asmx",
            "ews_username": "svc",
            "ews_password": "pw",
        },
    ).content.decode()
    assert "Another integration is already called Exchange Online." in body
    assert Integration.objects.filter(company=company).count() == 2


def test_names_refuse_control_characters(en_client, integration):
    url = reverse("calendarsync:integration", args=[integration.code])
    for name in ["Evil\r\nX", "Tab\there", "Bell\x07"]:
        body = en_client.post(url, _settings(integration, name=name, active="on")).content
        assert "no line breaks or tabs" in body.decode(), repr(name)
    integration.refresh_from_db()
    assert integration.name == "Exchange Online"
