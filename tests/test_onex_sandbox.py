"""The One X sandbox itself: persistence, the directory page, limits and knobs."""

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import requests
from django.conf import settings

from sandbox.onex import Knobs
from sandbox.onex.faults import Faults
from tests.onex_sandbox import CLIENT_ID, CLIENT_SECRET

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def token(url, key=CLIENT_ID, secret=CLIENT_SECRET):
    response = requests.post(
        f"{url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=(key, secret)
    )
    return response.json()["access_token"]


def absence_url(url, sub, ext):
    return f"{url}/v1/companies/demo-ab/subscriptions/{sub}/absences/{ext}"


def body(start, end, reason="MOTE", **extra):
    return {"reasonCode": reason, "start": start.isoformat(), "end": end.isoformat(), **extra}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(port, state):
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.onex", "--port", str(port), "--state", str(state)],
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "ONEX_SANDBOX_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET}"},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("sandbox did not start")


def test_it_keeps_its_state_across_a_restart(tmp_path):
    state = tmp_path / "onex.json"
    port = free_port()
    process, url = start_process(port, state)
    try:
        bearer = {"Authorization": f"Bearer {token(url)}"}
        start = datetime.now(UTC) + timedelta(days=1)
        put = requests.put(
            absence_url(url, "sub-anna", "keep-me"),
            json=body(start, start + timedelta(hours=1)),
            headers=bearer,
        )
        assert put.status_code == 201
    finally:
        process.terminate()
        process.wait(timeout=10)
    process, url = start_process(port, state)
    try:
        listed = requests.get(f"{url}/v1/companies/demo-ab/absences", headers=bearer)
        assert listed.status_code == 200  # the token survived the restart too
        assert [e["externalId"] for e in listed.json()["items"]] == ["keep-me"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_directory_page_shows_status_return_time_and_what_is_coming(onex_sandbox):
    url = onex_sandbox.url
    bearer = {"Authorization": f"Bearer {token(url)}"}
    now = datetime.now(UTC)
    back = (now + timedelta(minutes=50)).replace(second=0, microsecond=0)
    requests.put(
        absence_url(url, "sub-bjorn", "now"),
        json=body(now - timedelta(minutes=10), back, divert=True),
        headers=bearer,
    ).raise_for_status()
    later = (now + timedelta(days=2)).astimezone(STOCKHOLM).replace(hour=8, minute=0)
    requests.put(
        absence_url(url, "sub-eva", "later"),
        json=body(later, later + timedelta(hours=9), reason="SEMESTER"),
        headers=bearer,
    ).raise_for_status()
    page = onex_sandbox.page("demo-ab")
    rows = {row.split('"', 1)[0]: row for row in page.split('data-subscription="')[1:]}
    assert len(rows) == 6
    bjorn = rows["sub-bjorn"]
    local_back = back.astimezone(STOCKHOLM)
    expected_back = (
        f"åter {local_back:%H:%M}"
        if local_back.date() == now.astimezone(STOCKHOLM).date()
        else f"{local_back.day}/{local_back.month} {local_back:%H:%M}"
    )
    assert "Möte, " in bjorn and expected_back in bjorn and "Hänvisad" in bjorn
    assert "Tillgänglig" in rows["sub-eva"] and "Semester" in rows["sub-eva"]
    assert f"{later.day}/{later.month} 08:00" in rows["sub-eva"]
    assert "Tillgänglig" in rows["sub-anna"] and "Admin" in rows["sub-anna"]


def test_it_rejects_a_batch_over_100_operations(onex_sandbox):
    url = onex_sandbox.url
    bearer = {"Authorization": f"Bearer {token(url)}"}
    ops = [
        {"op": "delete", "subscriptionId": "sub-anna", "externalId": f"x{n}"} for n in range(101)
    ]
    answer = requests.post(
        f"{url}/v1/companies/demo-ab/absences:batch", json={"operations": ops}, headers=bearer
    )
    assert answer.status_code == 422
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["code"] == "validation_error"


def test_batch_results_have_exactly_the_contracts_shape(onex_sandbox):
    """One result per operation, in order: `status`, and `error` (a Problem) only on failure."""
    url = onex_sandbox.url
    bearer = {"Authorization": f"Bearer {token(url)}"}
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    ops = [
        {
            "op": "put",
            "subscriptionId": "sub-anna",
            "externalId": "shape-1",
            "body": body(start, start + timedelta(hours=1)),
        },
        {"op": "delete", "subscriptionId": "sub-anna", "externalId": "shape-1"},
        {
            "op": "put",
            "subscriptionId": "sub-anna",
            "externalId": "shape-2",
            "body": body(start, start + timedelta(hours=1), reason="NO-SUCH-REASON"),
        },
    ]
    answer = requests.post(
        f"{url}/v1/companies/demo-ab/absences:batch", json={"operations": ops}, headers=bearer
    )
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [sorted(result) for result in results] == [["status"], ["status"], ["error", "status"]]
    assert [result["status"] for result in results] == [201, 204, 422]
    assert results[2]["error"]["code"] == "reason_unknown"


def test_it_rate_limits_per_token_with_the_documented_headers(onex_sandbox):
    url = onex_sandbox.url
    onex_sandbox.knobs(rate_limit=3)
    bearer = {"Authorization": f"Bearer {token(url)}"}
    answers = [
        requests.get(f"{url}/v1/companies/demo-ab/absence-reasons", headers=bearer)
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[2].headers["RateLimit-Remaining"] == "0"
    limited = answers[3].headers
    assert limited["RateLimit-Limit"] == "3" and 0 < int(limited["Retry-After"]) <= 60


def test_it_refuses_calls_without_a_valid_token(onex_sandbox):
    url = f"{onex_sandbox.url}/v1/companies/demo-ab/absence-reasons"
    assert requests.get(url).json()["code"] == "invalid_token"
    bad = requests.get(url, headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json()["code"]) == (401, "invalid_token")


def test_knobs_come_from_the_environment():
    knobs = Knobs.from_env({"ONEX_SANDBOX_LATENCY_MS": "20", "ONEX_SANDBOX_RATE_429": "0.1"})
    assert (knobs.latency_ms, knobs.rate_429, knobs.rate_5xx) == (20.0, 0.1, 0.0)


def test_the_random_shares_are_roughly_what_was_asked():
    faults = Faults(Knobs(rate_429=0.1, rate_5xx=0.1, seed=1))
    answers = [faults.injected() for _ in range(5000)]
    statuses = [a[0] for a in answers if a]
    assert 0.17 < len(statuses) / 5000 < 0.23
    assert {429, 502, 503, 504} == set(statuses)
