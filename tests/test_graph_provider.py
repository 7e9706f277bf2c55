"""The Graph provider against the M365 sandbox: window reads, $batch, throttling, errors."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from calendarsync.items import Sensitivity
from calendarsync.providers import provider_for
from calendarsync.providers.base import (
    ConsentRevoked,
    CredentialsRejected,
    MailboxNotFound,
    PermissionsRemoved,
    ProviderError,
)
from calendarsync.providers.graph.client import GraphClient, classify_token_error
from calendarsync.providers.graph.provider import GraphProvider
from tests.m365_sandbox import ANNA, DEMO_TENANT, body_requests, selected_fields

PEOPLE = [
    "anna.andersson@demo.se",
    "bjorn.berg@demo.se",
    "cecilia.carlsson@demo.se",
    "david.dahl@demo.se",
    "eva.ek@demo.se",
    "fredrik.forsberg@demo.se",
]


class RecordingSleep:
    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)


def provider(sleep=None):
    return GraphProvider(
        DEMO_TENANT, client=GraphClient(DEMO_TENANT, sleep=sleep or (lambda s: None))
    )


def window(days=14):
    now = timezone.now()
    return now, now + timedelta(days=days)


def test_it_is_the_registered_provider_for_graph_integrations(m365, integration):
    integration.tenant_id = DEMO_TENANT
    assert isinstance(provider_for(integration), GraphProvider)


def test_it_reads_a_window_without_private_events_or_bodies(m365):
    start, end = window()
    items = provider().fetch(ANNA, start, end, include_subject=True)
    assert len(items) > 10
    assert all(
        item.sensitivity not in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL) for item in items
    )
    assert "Tandläkare" not in {item.subject for item in items}  # the private appointment
    assert all(item.end > start and item.start < end for item in items)
    reads = [r for r in m365.graph_requests() if "calendarView" in r["path"]]
    assert reads and not body_requests(m365.requests())
    assert all('outlook.timezone="UTC"' in r["prefer"] for r in reads)
    assert all("singleValueExtendedProperties" in r["query"]["$expand"] for r in reads)


def test_it_never_selects_the_subject_when_meetings_are_private(m365):
    start, end = window()
    items = provider().fetch(ANNA, start, end, include_subject=False)
    assert items and all(item.subject is None for item in items)
    reads = [r for r in m365.graph_requests() if "calendarView" in r["path"]]
    assert reads and all("subject" not in selected_fields(r) for r in reads)


def test_it_follows_pages(m365, settings, monkeypatch):
    monkeypatch.setattr("calendarsync.providers.graph.client.PAGE_SIZE", 3)
    monkeypatch.setattr(
        GraphProvider, "HEADERS", {"Prefer": 'outlook.timezone="UTC", odata.maxpagesize=3'}
    )
    start, end = window()
    paged = provider().fetch(ANNA, start, end, include_subject=True)
    reads = [r for r in m365.graph_requests() if "calendarView" in r["path"]]
    assert len(reads) > 3
    assert len({item.provider_item_id for item in paged}) == len(paged) > 10


def test_it_packs_up_to_20_mailboxes_per_batch_and_isolates_an_unknown_one(m365):
    mailboxes = PEOPLE + ["nobody@demo.se"]
    m365.control("POST", f"tenants/{DEMO_TENANT}/users", {"mail": "x@demo.se"})
    many = [*mailboxes, *[f"x{n}@demo.se" for n in range(40)]]  # 47: three batches
    m365.clear_requests()
    start, end = window()
    results = provider().fetch_many(many, start, end, include_subject=False)
    assert isinstance(results["nobody@demo.se"], MailboxNotFound)
    assert isinstance(results["x0@demo.se"], MailboxNotFound)
    assert all(isinstance(results[m], list) and results[m] for m in PEOPLE)
    batches = [r for r in m365.graph_requests() if r["path"] == "/v1.0/$batch"]
    assert len(batches) == 3 and max(b["steps"] for b in batches) == 20
    assert not body_requests(m365.requests())


def test_it_waits_for_retry_after_on_a_throttled_request(m365):
    m365.throttle("calendarView", count=2, retry_after=7)
    sleep = RecordingSleep()
    start, end = window()
    items = provider(sleep).fetch(ANNA, start, end, include_subject=True)
    assert items
    assert sleep.waits == [7.0, 7.0]


def test_it_waits_for_retry_after_inside_a_batch(m365):
    m365.throttle("calendarView", count=1, retry_after=4)
    sleep = RecordingSleep()
    start, end = window()
    results = provider(sleep).fetch_many(PEOPLE, start, end, include_subject=True)
    assert sleep.waits == [4.0]
    assert all(isinstance(results[m], list) and results[m] for m in PEOPLE)
    inner = [r for r in m365.requests() if r.get("batch")]
    assert [r["status"] for r in inner].count(429) == 1
    assert len(inner) == len(PEOPLE) + 1  # the throttled step was sent again


def test_it_sends_at_most_four_concurrent_requests_per_mailbox(m365):
    m365.knobs(latency_ms=60)
    start, end = window()
    client = GraphClient(DEMO_TENANT)
    errors = []

    def read():
        try:
            GraphProvider(DEMO_TENANT, client=client).fetch(ANNA, start, end, include_subject=True)
        except ProviderError as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert m365.sandbox.peak_in_flight[ANNA] == 4
    assert not [r for r in m365.graph_requests() if r["status"] == 429]


@pytest.mark.parametrize("code", ["700016", "7000229", "7000112"])
def test_it_reports_a_revoked_consent(m365, code):
    m365.revoke(code=code)
    start, end = window()
    with pytest.raises(ConsentRevoked) as caught:
        provider().fetch(ANNA, start, end, include_subject=True)
    assert f"AADSTS{code}" in caught.value.code
    with pytest.raises(ConsentRevoked):
        provider().fetch_many(PEOPLE, start, end, include_subject=True)


def test_it_reports_removed_permissions(m365):
    m365.remove_permissions()
    start, end = window()
    with pytest.raises(PermissionsRemoved) as caught:
        provider().fetch(ANNA, start, end, include_subject=True)
    assert "403" in caught.value.code


def test_it_tells_app_credential_errors_from_revoked_consent():
    wrong_secret = {
        "error": "invalid_client",
        "error_codes": [7000215],
        "error_description": "AADSTS7000215: Invalid client secret provided.",
    }
    error = classify_token_error(wrong_secret)
    assert isinstance(error, CredentialsRejected) and error.permanent
    missing = {"error": "invalid_client", "error_description": "AADSTS7000229: missing SP"}
    assert isinstance(classify_token_error(missing), ConsentRevoked)
    busy = {"error": "temporarily_unavailable", "error_codes": [50001]}
    assert not classify_token_error(busy).permanent


def test_it_reuses_the_tenants_token(m365):
    start, end = window()
    one = provider()
    one.fetch(ANNA, start, end, include_subject=False)
    one.fetch(ANNA, start, end, include_subject=False)
    provider().fetch(ANNA, start, end, include_subject=False)
    tokens = [r for r in m365.requests() if r["path"].endswith("/oauth2/v2.0/token")]
    assert len(tokens) == 1


def test_a_consent_given_again_works_at_the_next_read(m365):
    start, end = window()
    assert provider().fetch(ANNA, start, end, include_subject=False)
    m365.revoke()
    for _ in range(2):
        with pytest.raises(ConsentRevoked):
            provider().fetch(ANNA, start, end, include_subject=False)
    m365.consent()
    assert provider().fetch(ANNA, start, end, include_subject=False)  # no stale msal memory


def test_an_unknown_mailbox_is_that_users_error(m365):
    start, end = window()
    with pytest.raises(MailboxNotFound):
        provider().fetch("nobody@demo.se", start, end, include_subject=False)
    assert provider().fetch(ANNA, start, end, include_subject=False)  # nothing else is affected
