"""The EWS provider against the EWS sandbox, through the product's own exchangelib set-up
(its Configuration, its CA adapter, the outbound check): window reads, privacy, errors."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from calendarsync.items import ItemKind, ShowAs
from calendarsync.models import Integration
from calendarsync.providers import provider_for
from calendarsync.providers.base import (
    CredentialsRejected,
    MailboxNotFound,
    PermissionsRemoved,
    ProviderError,
    ServerUntrusted,
)
from calendarsync.providers.ews import client
from calendarsync.sync import sync_mailbox

PERSON = "kalle@kommun.example.se"
START, END = datetime(2030, 3, 4, tzinfo=UTC), datetime(2030, 3, 9, tzinfo=UTC)
BODY_URIS = {"item:Body", "item:TextBody", "item:UniqueBody", "item:MimeContent"}


@pytest.fixture
def integration(on_prem, company):
    return on_prem(company, PERSON, name="Kalle Kommun")


def week(ews):
    ews.create_event(PERSON, subject="Styrgrupp", start="2030-03-04T09:00:00Z",
                     end="2030-03-04T10:00:00Z", categories=["Projekt"])  # fmt: skip
    ews.create_event(PERSON, subject="Läkarbesök", start="2030-03-05T12:00:00Z",
                     end="2030-03-05T13:00:00Z", sensitivity="Private",
                     legacy_free_busy_status="OOF")  # fmt: skip
    ews.create_event(PERSON, subject="Semester", start="2030-03-06", end="2030-03-07",
                     is_all_day=True, legacy_free_busy_status="OOF")  # fmt: skip
    ews.create_event(PERSON, subject="Daglig avstämning", start="2030-03-04T07:00:00Z",
                     end="2030-03-04T07:15:00Z",
                     recurrence={"pattern": "weekdays", "count": 3})  # fmt: skip


def test_a_window_read_returns_bookings_and_drops_private_ones(ews, integration):
    week(ews)
    ews.clear_requests()
    items = provider_for(integration).fetch(PERSON, START, END, include_subject=True)
    by_subject = {item.subject: item for item in items}
    assert "Läkarbesök" not in by_subject  # private: never leaves the provider package
    assert by_subject["Styrgrupp"].start == datetime(2030, 3, 4, 9, tzinfo=UTC)
    assert by_subject["Styrgrupp"].categories == ("Projekt",)
    assert by_subject["Semester"].all_day and by_subject["Semester"].show_as == ShowAs.OOF
    daily = [item for item in items if item.subject == "Daglig avstämning"]
    assert len(daily) == 3 and {item.kind for item in daily} == {ItemKind.OCCURRENCE}
    assert len({item.series_master_id for item in daily}) == 1
    mailboxes = {entry.get("mailbox") for entry in ews.requests() if entry.get("mailbox")}
    assert mailboxes == {PERSON}  # impersonated as the mailbox itself


def test_no_request_asks_for_the_body_nor_without_permission_the_subject(ews, integration):
    week(ews)
    ews.clear_requests()
    items = provider_for(integration).fetch(PERSON, START, END, include_subject=False)
    assert items and all(item.subject is None for item in items)
    asked = ews.asked_fields()
    assert "calendar:Start" in asked and "calendar:LegacyFreeBusyStatus" in asked
    assert not asked & BODY_URIS
    assert "item:Subject" not in asked
    ews.clear_requests()
    provider_for(integration).fetch(PERSON, START, END, include_subject=True)
    assert "item:Subject" in ews.asked_fields() and not ews.asked_fields() & BODY_URIS


def test_many_mailboxes_are_read_and_one_unknown_is_that_users_error(ews, integration):
    ews.add_mailbox("lisa@kommun.example.se", "Lisa")
    results = provider_for(integration).fetch_many(
        [PERSON, "lisa@kommun.example.se", "ingen@kommun.example.se"],
        START,
        END,
        include_subject=False,
    )
    assert results[PERSON] == [] and results["lisa@kommun.example.se"] == []
    assert isinstance(results["ingen@kommun.example.se"], MailboxNotFound)


def test_impersonation_denied_means_the_integration_needs_its_admin(ews, integration):
    ews.knobs(impersonation=False)
    with pytest.raises(PermissionsRemoved) as caught:
        provider_for(integration).fetch(PERSON, START, END, include_subject=False)
    assert caught.value.code == "impersonation_denied"


def test_a_wrong_password_is_the_credentials(ews, integration):
    ews.knobs(password="Ett-annat-lösen-2")
    with pytest.raises(CredentialsRejected):
        provider_for(integration).fetch(PERSON, START, END, include_subject=False)


def test_server_busy_is_waited_out(ews, integration):
    week(ews)
    ews.knobs(server_busy={"count": 2, "back_off_ms": 200})
    assert provider_for(integration).fetch(PERSON, START, END, include_subject=True)


def test_an_untrusted_certificate_is_refused_not_ignored(ews, integration, settings, tmp_path):
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    settings.EWS_CA_BUNDLE = str(other)
    client.forget(integration)
    with pytest.raises(ServerUntrusted) as caught:  # the whole integration needs its admin
        provider_for(integration).fetch(PERSON, START, END, include_subject=False)
    assert caught.value.code == "tls"


def test_an_internal_address_is_refused_before_any_connection(ews, integration, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    client.forget(integration)
    ews.clear_requests()
    with pytest.raises(ProviderError) as caught:
        provider_for(integration).fetch(PERSON, START, END, include_subject=False)
    assert caught.value.code == "url_refused"
    assert ews.requests() == []


def test_verify_probes_the_server_and_impersonates_the_first_user(ews, integration, subscription):
    subscription.email = PERSON
    subscription.save()
    integration.users.create(subscription=subscription, email=PERSON)
    ews.clear_requests()
    provider_for(integration).verify()
    assert any(entry.get("mailbox") == PERSON for entry in ews.requests())
    ews.knobs(impersonation=False)
    with pytest.raises(PermissionsRemoved):
        provider_for(integration).verify()


def test_a_lost_impersonation_pauses_the_integration_with_the_exchange_fix(
    ews, integration, subscription, onex_sandbox, en_client
):
    subscription.email = PERSON
    subscription.save()
    user = integration.users.create(subscription=subscription, email=PERSON)
    ews.knobs(impersonation=False)
    sync_mailbox(user)
    integration.refresh_from_db()
    assert integration.status == Integration.Status.NEEDS_ATTENTION
    assert integration.attention == Integration.Attention.PERMISSIONS_REMOVED
    body = en_client.get(reverse("calendarsync:integration", args=[integration.code])).content
    assert b"New-ManagementRoleAssignment -Role:ApplicationImpersonation" in body
