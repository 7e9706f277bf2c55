"""The One X client against the One X sandbox over real HTTP: the contract of onex-api.md."""

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from onex.client import OneXClient, OneXError, get_client
from onex.operations import AbsenceEntry, DeleteAbsence, PutAbsence
from tests.onex_sandbox import CLIENT_ID, CLIENT_SECRET

COMPANY = "demo-ab"
WITH_DIVERSION, WITHOUT_DIVERSION = "sub-bjorn", "sub-eva"
SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


def entry(**changes):
    base = AbsenceEntry(
        reason_code="MOTE",
        start=SOON,
        end=SOON + timedelta(hours=1),
        return_at=SOON + timedelta(hours=1),
        divert=False,
        open_diversion=False,
        note=None,
    )
    if "end" in changes and "return_at" not in changes:
        changes["return_at"] = changes["end"]
    return replace(base, **changes)


def put(external_id, subscription=WITH_DIVERSION, **changes):
    return PutAbsence(subscription, external_id, entry(**changes))


# Tokens -----------------------------------------------------------------------------------


def test_it_reuses_one_token_for_many_calls(onex_sandbox, onex_client):
    for number in range(5):
        onex_client.put_absence(COMPANY, WITH_DIVERSION, f"e{number}", entry())
    assert len(onex_sandbox.requests(path_contains="/oauth2/token")) == 1


def test_it_fetches_a_new_token_once_on_token_expired(onex_sandbox, onex_client):
    onex_client.put_absence(COMPANY, WITH_DIVERSION, "e1", entry())
    onex_sandbox.expire_tokens()
    onex_sandbox.clear_requests()
    onex_client.put_absence(COMPANY, WITH_DIVERSION, "e2", entry())
    log = [
        (r["method"], r["path"].rsplit("/", 1)[-1], r["status"]) for r in onex_sandbox.requests()
    ]
    assert log == [("PUT", "e2", 401), ("POST", "token", 200), ("PUT", "e2", 201)]


def test_it_renews_the_token_at_80_percent_of_its_life(onex_sandbox, onex_client):
    onex_sandbox.knobs(token_lifetime=1)
    onex_client.list_absence_reasons(COMPANY)
    onex_client.list_absence_reasons(COMPANY)
    time.sleep(0.85)
    onex_client.list_absence_reasons(COMPANY)
    log = [(r["path"].rsplit("/", 1)[-1], r["status"]) for r in onex_sandbox.requests()]
    assert log == [
        ("token", 200),
        ("absence-reasons", 200),
        ("absence-reasons", 200),
        ("token", 200),  # renewed before it ran out: no 401 on the way
        ("absence-reasons", 200),
    ]


def test_it_reports_wrong_credentials_as_permanent(onex_sandbox):
    client = OneXClient(onex_sandbox.url, CLIENT_ID, "wrong-secret")
    with pytest.raises(OneXError) as caught:
        client.list_absence_reasons(COMPANY)
    assert (caught.value.status, caught.value.code, caught.value.permanent) == (
        401,
        "invalid_client",
        True,
    )


# Directory and paging ---------------------------------------------------------------------


def test_it_pages_through_the_directory(onex_sandbox, onex_client):
    people = [
        {"subscriptionId": f"s{n:03}", "email": f"p{n}@stor.se", "displayName": f"P {n}"}
        for n in range(450)
    ]
    onex_sandbox.put_company("stor-ab", "Stor AB", subscriptions=people)
    listed = list(onex_client.list_subscriptions("stor-ab", page_size=200))
    assert sorted(s["subscriptionId"] for s in listed) == [p["subscriptionId"] for p in people]
    pages = onex_sandbox.requests(path_contains="/stor-ab/subscriptions")
    assert [bool(r["query"].get("cursor")) for r in pages] == [False, True, True]


def test_it_lists_only_subscriptions_updated_since(onex_sandbox, onex_client):
    since = datetime.now(UTC)
    time.sleep(0.01)
    onex_sandbox.put_subscription(COMPANY, "sub-new", email="ny@demo.se", displayName="Ny")
    listed = list(onex_client.list_subscriptions(COMPANY, updated_since=since))
    assert [s["subscriptionId"] for s in listed] == ["sub-new"]


def test_it_lists_absence_reasons_with_both_labels(onex_client):
    reasons = {r["code"]: r for r in onex_client.list_absence_reasons(COMPANY)}
    assert reasons["MOTE"]["label"] == {"sv": "Möte", "en": "Meeting"}
    assert len(reasons) == 10


def test_it_pages_through_absences_in_a_window(onex_sandbox, onex_client):
    for day in range(25):
        start = SOON + timedelta(days=day)
        onex_client.put_absence(
            COMPANY, WITH_DIVERSION, f"d{day}", entry(start=start, end=start + timedelta(hours=1))
        )
    listed = list(
        onex_client.list_absences(
            COMPANY,
            start=SOON + timedelta(days=5),
            end=SOON + timedelta(days=15),
            subscription_id=WITH_DIVERSION,
            page_size=4,
        )
    )
    assert sorted(int(e["externalId"][1:]) for e in listed) == list(range(5, 15))
    assert len(onex_sandbox.requests(path_contains="/absences")) - 25 == 3  # 4 + 4 + 2


# Absences ---------------------------------------------------------------------------------


def test_it_creates_then_replaces_an_absence(onex_client):
    created = onex_client.put_absence(COMPANY, WITH_DIVERSION, "x1", entry())
    replaced = onex_client.put_absence(COMPANY, WITH_DIVERSION, "x1", entry(reason_code="LUNCH"))
    same = onex_client.put_absence(COMPANY, WITH_DIVERSION, "x1", entry(reason_code="LUNCH"))
    assert (created["revision"], replaced["revision"], same["revision"]) == (1, 2, 2)
    assert created["absenceId"] == replaced["absenceId"]
    assert created["origin"] == "integration" and created["status"] == "scheduled"


def test_it_deletes_and_counts_a_missing_absence_as_done(onex_sandbox, onex_client):
    onex_client.put_absence(COMPANY, WITH_DIVERSION, "x1", entry())
    onex_client.delete_absence(COMPANY, WITH_DIVERSION, "x1")
    onex_client.delete_absence(COMPANY, WITH_DIVERSION, "x1")  # 404: no exception
    assert onex_sandbox.absences(COMPANY) == []
    statuses = [r["status"] for r in onex_sandbox.requests() if r["method"] == "DELETE"]
    assert statuses == [204, 404]


@pytest.mark.parametrize(
    ("subscription", "external_id", "changes", "status", "code"),
    [
        (WITHOUT_DIVERSION, "v1", {"divert": True}, 422, "feature_not_enabled"),
        (
            WITH_DIVERSION,
            "v1",
            {"divert": True, "open_diversion": True},
            422,
            "feature_not_enabled",
        ),
        (WITH_DIVERSION, "v1", {"open_diversion": True}, 422, "validation_error"),
        (WITH_DIVERSION, "v1", {"reason_code": "KAFFE"}, 422, "reason_unknown"),
        (WITH_DIVERSION, "v1", {"end": SOON, "return_at": SOON}, 422, "validation_error"),
        (
            WITH_DIVERSION,
            "v1",
            {"end": SOON - timedelta(hours=1), "return_at": SOON},
            422,
            "validation_error",
        ),
        (WITH_DIVERSION, "v1", {"return_at": SOON - timedelta(hours=1)}, 422, "validation_error"),
        (WITH_DIVERSION, "v1", {"note": "x" * 101}, 422, "validation_error"),
        (WITH_DIVERSION, "not valid!", {}, 422, "validation_error"),
        (WITH_DIVERSION, "x" * 65, {}, 422, "validation_error"),
        ("sub-nobody", "v1", {}, 404, "subscription_not_found"),
    ],
)
def test_it_raises_a_permanent_error_for_each_validation_failure(
    onex_sandbox, onex_client, subscription, external_id, changes, status, code
):
    with pytest.raises(OneXError) as caught:
        onex_client.put_absence(COMPANY, subscription, external_id, entry(**changes))
    assert (caught.value.status, caught.value.code, caught.value.permanent) == (status, code, True)
    assert len([r for r in onex_sandbox.requests() if r["method"] == "PUT"]) == 1  # not retried
    assert onex_sandbox.absences(COMPANY) == []


def test_it_accepts_open_diversion_where_the_subscription_has_it(onex_client):
    stored = onex_client.put_absence(
        COMPANY, "sub-anna", "o1", entry(divert=True, open_diversion=True, note="Kundmöte")
    )
    assert (stored["divert"], stored["openDiversion"], stored["note"]) == (True, True, "Kundmöte")


def test_it_rejects_an_unknown_company(onex_client):
    with pytest.raises(OneXError) as caught:
        onex_client.list_absence_reasons("no-such-company")
    assert (caught.value.status, caught.value.code, caught.value.permanent) == (
        404,
        "company_not_found",
        True,
    )


# Retries ----------------------------------------------------------------------------------


def test_it_waits_as_long_as_retry_after_says_on_429(onex_sandbox, onex_client):
    onex_client.list_absence_reasons(COMPANY)  # the token is in hand
    onex_sandbox.knobs(fail_next=[429, 429], retry_after=1)
    started = time.monotonic()
    onex_client.put_absence(COMPANY, WITH_DIVERSION, "r1", entry())
    assert onex_client.sleep.waits == [1.0, 1.0]
    assert time.monotonic() - started >= 2.0
    puts = [r["status"] for r in onex_sandbox.requests() if r["method"] == "PUT"]
    assert puts == [429, 429, 201]


def test_it_retries_5xx_with_growing_backoff_then_succeeds(onex_sandbox, onex_client):
    onex_client.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(fail_next=[503, 502, 504])
    onex_client.put_absence(COMPANY, WITH_DIVERSION, "r1", entry())
    waits = onex_client.sleep.waits
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        ceiling = 0.05 * 2**attempt
        assert ceiling / 2 <= wait <= ceiling  # exponential, with jitter in the upper half
    puts = [r["status"] for r in onex_sandbox.requests() if r["method"] == "PUT"]
    assert puts == [503, 502, 504, 201]


def test_it_does_not_retry_a_500(onex_sandbox, onex_client):
    onex_client.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(fail_next=[500])
    with pytest.raises(OneXError) as caught:
        onex_client.put_absence(COMPANY, WITH_DIVERSION, "r1", entry())
    assert (caught.value.status, caught.value.permanent) == (500, False)
    assert onex_client.sleep.waits == []


def test_it_gives_up_after_a_bounded_number_of_attempts(onex_sandbox, onex_client):
    onex_client.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(rate_5xx=1.0)
    with pytest.raises(OneXError) as caught:
        onex_client.put_absence(COMPANY, WITH_DIVERSION, "r1", entry())
    assert caught.value.permanent is False
    assert len([r for r in onex_sandbox.requests() if r["method"] == "PUT"]) == 6


def test_it_gives_up_at_once_when_retry_after_exceeds_its_time_budget(onex_sandbox):
    client = OneXClient(onex_sandbox.url, CLIENT_ID, CLIENT_SECRET, max_retry_seconds=5)
    client.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(fail_next=[429], retry_after=120)
    started = time.monotonic()
    with pytest.raises(OneXError) as caught:
        client.put_absence(COMPANY, WITH_DIVERSION, "r1", entry())
    assert (caught.value.status, caught.value.permanent) == (429, False)
    assert time.monotonic() - started < 2


def test_it_rides_out_an_outage(onex_sandbox, onex_client):
    onex_client.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(outage_seconds=0.5)
    onex_client.put_absence(COMPANY, WITH_DIVERSION, "r1", entry())
    puts = [(r["status"], r["injected"]) for r in onex_sandbox.requests() if r["method"] == "PUT"]
    assert puts[-1] == (201, False)
    assert len(puts) >= 3 and all(p == (503, True) for p in puts[:-1])
    assert [e["externalId"] for e in onex_sandbox.absences(COMPANY)] == ["r1"]


def test_it_rides_out_dropped_connections(onex_sandbox, onex_client):
    onex_client.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(outage_seconds=0.3, outage_mode="drop")
    onex_client.put_absence(COMPANY, WITH_DIVERSION, "r1", entry())
    puts = [r["status"] for r in onex_sandbox.requests() if r["method"] == "PUT"]
    assert puts[-1] == 201 and set(puts[:-1]) == {0} and len(puts) >= 2


# Batches and the AbsenceWriter interface --------------------------------------------------


def test_it_applies_a_batch_with_mixed_results(onex_sandbox, onex_client):
    operations = [
        put("ok-1"),
        put("bad-reason", reason_code="KAFFE"),
        DeleteAbsence(WITH_DIVERSION, "never-existed"),
        put("no-sub", subscription="sub-nobody"),
        put("no-diversion", subscription=WITHOUT_DIVERSION, divert=True),
        put("ok-2", subscription=WITHOUT_DIVERSION),
    ]
    results = onex_client.apply(COMPANY, operations)
    assert [r.operation for r in results] == operations
    assert [(r.ok, r.code, r.permanent) for r in results] == [
        (True, "", False),
        (False, "reason_unknown", True),
        (True, "", False),
        (False, "subscription_not_found", True),
        (False, "feature_not_enabled", True),
        (True, "", False),
    ]
    assert sorted(e["externalId"] for e in onex_sandbox.absences(COMPANY)) == ["ok-1", "ok-2"]
    batches = onex_sandbox.requests(path_contains="absences:batch")
    assert [b["ops"] for b in batches] == [6]


def test_it_splits_many_operations_into_batches_of_100(onex_sandbox, onex_client):
    operations = [put(f"b{n}") for n in range(250)]
    results = onex_client.apply(COMPANY, operations)
    assert all(r.ok for r in results) and len(results) == 250
    assert [b["ops"] for b in onex_sandbox.requests(path_contains="absences:batch")] == [
        100,
        100,
        50,
    ]
    assert len(onex_sandbox.absences(COMPANY)) == 250


def test_it_retries_a_batch_after_503(onex_sandbox, onex_client):
    onex_client.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(fail_next=[503])
    results = onex_client.apply(COMPANY, [put("b1"), put("b2")])
    assert all(r.ok for r in results)
    statuses = [b["status"] for b in onex_sandbox.requests(path_contains="absences:batch")]
    assert statuses == [503, 200]


def test_it_resends_only_the_operations_of_a_batch_that_failed_transiently(
    onex_sandbox, onex_client
):
    onex_sandbox.knobs(rate_batch_op_5xx=0.3, seed=3)
    operations = [put(f"b{n}") for n in range(40)] + [put("bad", reason_code="KAFFE")]
    results = onex_client.apply(COMPANY, operations)
    assert all(r.ok for r in results[:40])
    assert (results[40].ok, results[40].code) == (False, "reason_unknown")
    sizes = [b["ops"] for b in onex_sandbox.requests(path_contains="absences:batch")]
    assert sizes[0] == 41 and len(sizes) >= 2
    assert all(later < earlier for earlier, later in zip(sizes, sizes[1:], strict=False))
    assert len(onex_sandbox.absences(COMPANY)) == 40


def test_it_reports_every_operation_failed_when_a_batch_cannot_get_through(
    onex_sandbox, onex_client
):
    onex_client.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(rate_5xx=1.0)
    results = onex_client.apply(COMPANY, [put("b1"), DeleteAbsence(WITH_DIVERSION, "b2")])
    assert [(r.ok, r.permanent) for r in results] == [(False, False), (False, False)]


def test_it_sends_a_single_operation_as_a_plain_call(onex_sandbox, onex_client):
    [result] = onex_client.apply(COMPANY, [put("single")])
    assert result.ok
    assert onex_sandbox.requests(path_contains="absences:batch") == []
    assert [r["method"] for r in onex_sandbox.requests(path_contains="/single")] == ["PUT"]


def test_it_reports_a_single_failed_operation_as_a_result(onex_client):
    [result] = onex_client.apply(COMPANY, [put("bad", reason_code="KAFFE")])
    assert (result.ok, result.code, result.permanent) == (False, "reason_unknown", True)


def test_it_does_nothing_for_no_operations(onex_sandbox, onex_client):
    assert onex_client.apply(COMPANY, []) == []
    assert onex_sandbox.requests() == []


def test_get_client_is_built_from_settings_and_shared(onex_sandbox, settings):
    client = get_client()
    assert client is get_client()
    assert client.base_url == onex_sandbox.url
    assert [r.ok for r in client.apply(COMPANY, [put("g1"), put("g2")])] == [True, True]
    settings.ONEX_API_URL = "http://127.0.0.1:9"
    assert get_client() is not client
