"""One X's rate budget (onex/budget.py): shared through Redis by every client of one client id,
fed by the answers' RateLimit-* headers and 429s, with a lane kept free for interactive work;
and the sandbox's default limit it is measured against."""

import os
import threading
import time

import pytest
import redis
import requests

from onex.budget import Lane, LocalBudget, OverBudget, RedisBudget, budget_for
from onex.client import OneXClient, OneXError, get_client
from sandbox.onex import Knobs
from tests.onex_sandbox import CLIENT_ID, CLIENT_SECRET, RecordingSleep

COMPANY = "demo-ab"
REASONS = f"/v1/companies/{COMPANY}/absence-reasons"


def _redis_url():
    url = os.environ.get("CACHE_URL", "")
    return (
        url.replace("rediscache://", "redis://")
        if url.startswith("rediscache")
        else ("redis://127.0.0.1:6379/9")
    )


@pytest.fixture
def redis_cache(settings):
    """The default cache on the real Redis, as in production; the budgets are removed after."""
    url = _redis_url()
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    }
    made = []
    yield made
    for budget in made:
        budget.clear()


def shared_budget(sandbox, settings, made, *, limit, window, share=0.2):
    """The sandbox limited to `limit` per `window` seconds, and the budget settings to match."""
    sandbox.knobs(rate_limit=limit, rate_window_seconds=window)
    settings.ONEX_RATE_LIMIT_PER_MINUTE = limit
    settings.ONEX_RATE_WINDOW_SECONDS = window
    settings.ONEX_RATE_INTERACTIVE_SHARE = share
    budget = budget_for(sandbox.url, CLIENT_ID)
    budget.clear()
    made.append(budget)
    return budget


def client(sandbox, budget, **options):
    return OneXClient(
        sandbox.url, CLIENT_ID, CLIENT_SECRET, budget=budget, sleep=RecordingSleep(), **options
    )


def statuses(sandbox):
    return [r["status"] for r in sandbox.requests(path_contains=REASONS)]


def wait_for_window_start(window):
    """Sleep until a fresh server window (aligned to the clock), so one test stays in one."""
    time.sleep(window - time.time() % window + 0.05)


# Shared by processes ------------------------------------------------------------------------


def test_two_workers_sharing_one_budget_never_exceed_the_limit(onex_sandbox, settings, redis_cache):
    shared_budget(onex_sandbox, settings, redis_cache, limit=20, window=1)
    url = _redis_url()
    # Two workers: each its own HTTP session, its own Redis connection, one budget key.
    workers = [
        client(onex_sandbox, RedisBudget(redis.Redis.from_url(url), key, 20, window_seconds=1))
        for key in ("onex:budget:test-two-workers",) * 2
    ]
    redis_cache.append(workers[0].budget)
    for worker in workers:
        worker.list_absence_reasons(COMPANY)  # the token in hand
    onex_sandbox.clear_requests()
    errors = []

    def work(worker):
        try:
            for _ in range(30):
                worker.list_absence_reasons(COMPANY)
        except OneXError as error:  # pragma: no cover - shown by the assertion below
            errors.append(error)

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = statuses(onex_sandbox)
    assert errors == []
    assert seen.count(200) == 60 and 429 not in seen  # 0 × 429: the budget held for both
    # 62 requests at 20 per second need at least three full windows after the first.
    assert time.monotonic() - started >= 2.0
    assert all(w.sleep.waits for w in workers)  # both workers waited for room


def test_without_a_budget_the_same_load_meets_the_sandbox_limit(onex_sandbox):
    onex_sandbox.knobs(rate_limit=20, rate_window_seconds=60)
    unbudgeted = client(onex_sandbox, None, max_attempts=1)
    with pytest.raises(OneXError) as caught:
        for _ in range(30):
            unbudgeted.list_absence_reasons(COMPANY)
    assert (caught.value.status, caught.value.permanent) == (429, False)
    assert statuses(onex_sandbox) == [200] * 20 + [429]


# Fed by the answers -------------------------------------------------------------------------


def test_the_servers_remaining_corrects_the_budget(onex_sandbox, settings, redis_cache):
    budget = shared_budget(onex_sandbox, settings, redis_cache, limit=30, window=4, share=0)
    worker = client(onex_sandbox, budget)
    worker.list_absence_reasons(COMPANY)  # the token in hand
    wait_for_window_start(4)
    # Someone else with the same client id (another deployment, a script) spends 20.
    token = worker._token_value()
    for _ in range(20):
        requests.get(
            onex_sandbox.url + REASONS, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
    worker.list_absence_reasons(COMPANY)  # One X answers: 9 remain (our log counts 2)
    for _ in range(9):
        budget.acquire(Lane.INTERACTIVE, max_wait=0)
    with pytest.raises(OverBudget) as caught:
        budget.acquire(Lane.INTERACTIVE, max_wait=0)
    assert 0 < caught.value.wait <= 4.2  # believed until the server's reset, not longer


def test_a_remaining_above_the_log_changes_nothing():
    budget = LocalBudget(10, window_seconds=60, interactive_share=0)
    used = budget.acquire(Lane.BULK, max_wait=0)
    budget.observe({"RateLimit-Remaining": "9", "RateLimit-Reset": "30"}, used=used)
    budget.observe({"RateLimit-Remaining": "10", "RateLimit-Reset": "30"})
    for _ in range(9):
        budget.acquire(Lane.BULK, max_wait=0)
    with pytest.raises(OverBudget):
        budget.acquire(Lane.BULK, max_wait=0)


def test_a_429s_retry_after_pauses_every_worker(onex_sandbox, settings, redis_cache):
    budget = shared_budget(onex_sandbox, settings, redis_cache, limit=600, window=60)
    first = client(onex_sandbox, budget, max_attempts=1)
    second = client(onex_sandbox, budget)
    first.list_absence_reasons(COMPANY)
    second.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(fail_next=[429], retry_after=2)
    with pytest.raises(OneXError):
        first.list_absence_reasons(COMPANY)  # 429, Retry-After: 2; this one gives up
    started = time.monotonic()
    second.list_absence_reasons(COMPANY)  # the other worker holds back until then
    assert time.monotonic() - started >= 1.8
    assert 1.5 <= sum(second.sleep.waits) <= 2.2
    assert statuses(onex_sandbox) == [200, 200, 429, 200]  # it never met the 429 itself


def test_a_wait_longer_than_the_retry_time_fails_as_transient(onex_sandbox, settings, redis_cache):
    budget = shared_budget(onex_sandbox, settings, redis_cache, limit=600, window=60)
    worker = client(onex_sandbox, budget, max_retry_seconds=2)
    worker.list_absence_reasons(COMPANY)
    onex_sandbox.knobs(fail_next=[429], retry_after=30)
    with pytest.raises(OneXError):
        worker.list_absence_reasons(COMPANY)
    started = time.monotonic()
    with pytest.raises(OneXError) as caught:
        worker.list_absence_reasons(COMPANY)  # paused for 30 s: not worth holding a worker
    assert (caught.value.code, caught.value.permanent) == ("rate_budget", False)
    assert time.monotonic() - started < 1
    assert statuses(onex_sandbox) == [200, 429]


# Lanes --------------------------------------------------------------------------------------


def test_interactive_work_gets_through_when_bulk_has_spent_its_share(
    onex_sandbox, settings, redis_cache
):
    budget = shared_budget(onex_sandbox, settings, redis_cache, limit=20, window=60, share=0.2)
    bulk = client(onex_sandbox, budget, max_retry_seconds=0.5)
    interactive = bulk.in_lane(Lane.INTERACTIVE)
    interactive.list_absence_reasons(COMPANY)  # a person's change earlier in the window
    for _ in range(17):  # bulk leaves 1 + the window's 1 interactive unit: 18 of 20 in all
        bulk.list_absence_reasons(COMPANY)
    with pytest.raises(OneXError) as caught:
        bulk.list_absence_reasons(COMPANY)
    assert (caught.value.code, caught.value.permanent) == ("rate_budget", False)
    interactive.list_absence_reasons(COMPANY)  # the next change finds room at once
    interactive.list_absence_reasons(COMPANY)
    with pytest.raises(OneXError):
        interactive.list_absence_reasons(COMPANY)  # the whole limit is spent
    assert statuses(onex_sandbox) == [200] * 20  # and One X never had to refuse


@pytest.fixture(params=["redis", "local"])
def budget_kind(request, redis_cache):
    def make(limit, *, window=60, share=0.2):
        if request.param == "local":
            return LocalBudget(limit, window_seconds=window, interactive_share=share)
        connection = redis.Redis.from_url(_redis_url())
        budget = RedisBudget(
            connection,
            "onex:budget:test-arithmetic",
            limit,
            window_seconds=window,
            interactive_share=share,
        )
        budget.clear()
        redis_cache.append(budget)
        return budget

    return make


def taken(budget, lane, at_most=100):
    """How many units `lane` gets at once."""
    for count in range(at_most):
        try:
            budget.acquire(lane, max_wait=0)
        except OverBudget:
            return count
    return at_most


def test_the_reserve_grows_with_interactive_use_up_to_its_share(budget_kind):
    idle = budget_kind(100)
    assert taken(idle, Lane.BULK) == 95  # no person waiting: bulk leaves 5 %
    assert taken(idle, Lane.INTERACTIVE) == 5
    busy = budget_kind(100)
    assert taken(busy, Lane.INTERACTIVE, at_most=8) == 8
    assert taken(busy, Lane.BULK) == 100 - 8 - (5 + 8)  # 5 % plus the 8 used
    crowded = budget_kind(100)
    assert taken(crowded, Lane.INTERACTIVE, at_most=40) == 40
    assert taken(crowded, Lane.BULK) == 100 - 40 - 20  # never more than the 20 % share


def test_both_stores_take_the_servers_word_and_pause(budget_kind):
    budget = budget_kind(50, share=0)
    budget.observe({"RateLimit-Remaining": "10", "RateLimit-Reset": "30"})
    assert taken(budget, Lane.BULK) == 10
    paused = budget_kind(50)
    paused.observe({}, retry_after=5)
    assert taken(paused, Lane.INTERACTIVE) == 0


def test_get_client_hands_out_lanes_of_one_client(onex_sandbox, settings, redis_cache):
    shared_budget(onex_sandbox, settings, redis_cache, limit=600, window=60)
    bulk, interactive = get_client(), get_client(Lane.INTERACTIVE)
    assert (bulk.lane, interactive.lane) == (Lane.BULK, Lane.INTERACTIVE)
    assert bulk is get_client(Lane.BULK)
    assert interactive.session is bulk.session and interactive.budget is bulk.budget
    assert isinstance(bulk.budget, RedisBudget)
    bulk.list_absence_reasons(COMPANY)
    interactive.list_absence_reasons(COMPANY)
    assert len(onex_sandbox.requests(path_contains="/oauth2/token")) == 1  # one token


# Without Redis ------------------------------------------------------------------------------


def test_without_redis_the_process_shares_a_local_budget(onex_sandbox, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.ONEX_RATE_LIMIT_PER_MINUTE = 5
    settings.ONEX_RATE_INTERACTIVE_SHARE = 0.2
    onex_sandbox.knobs(rate_limit=5)
    budget = budget_for(onex_sandbox.url, CLIENT_ID)
    assert isinstance(budget, LocalBudget)
    assert budget_for(onex_sandbox.url, CLIENT_ID) is budget  # every client of the process
    budget.clear()
    first, second = (client(onex_sandbox, budget, max_retry_seconds=0.2) for _ in range(2))
    for worker in (first, second, first, second):
        worker.list_absence_reasons(COMPANY)
    with pytest.raises(OneXError) as caught:
        second.list_absence_reasons(COMPANY)  # bulk's 4 of 5 are spent, by both together
    assert caught.value.code == "rate_budget"
    first.in_lane(Lane.INTERACTIVE).list_absence_reasons(COMPANY)
    assert statuses(onex_sandbox) == [200] * 5


def test_the_local_budget_waits_for_the_oldest_to_expire():
    budget = LocalBudget(3, window_seconds=0.5, interactive_share=0)
    waits = []
    for _ in range(3):
        budget.acquire(Lane.BULK, max_wait=0)
    started = time.monotonic()
    budget.acquire(Lane.BULK, max_wait=2, sleep=lambda s: (waits.append(s), time.sleep(s)))
    assert 0.4 <= time.monotonic() - started <= 1.0 and waits


def test_the_local_budget_pauses_on_retry_after():
    budget = LocalBudget(100, window_seconds=60)
    budget.observe({}, retry_after=0.3)
    with pytest.raises(OverBudget) as caught:
        budget.acquire(Lane.INTERACTIVE, max_wait=0.1)
    assert 0.2 <= caught.value.wait <= 0.32


def test_no_limit_means_no_budget(settings):
    settings.ONEX_RATE_LIMIT_PER_MINUTE = 0
    assert budget_for("http://one-x.example", CLIENT_ID) is None


# The sandbox's limit ------------------------------------------------------------------------


def test_the_sandbox_limits_600_a_minute_by_default_with_headers_on_every_answer(onex_sandbox):
    assert (Knobs().rate_limit, Knobs().rate_window_seconds) == (600, 60.0)
    token = OneXClient(onex_sandbox.url, CLIENT_ID, CLIENT_SECRET, budget=None)._token_value()
    bearer = {"Authorization": f"Bearer {token}"}
    ok = requests.get(onex_sandbox.url + REASONS, headers=bearer, timeout=5)
    missing = requests.get(
        f"{onex_sandbox.url}/v1/companies/nobody/absence-reasons", headers=bearer, timeout=5
    )
    onex_sandbox.knobs(fail_next=[503])
    injected = requests.get(onex_sandbox.url + REASONS, headers=bearer, timeout=5)
    assert [a.status_code for a in (ok, missing, injected)] == [200, 404, 503]
    for number, answer in enumerate((ok, missing, injected), start=1):
        assert answer.headers["RateLimit-Limit"] == "600"
        assert answer.headers["RateLimit-Remaining"] == str(600 - number)
        assert 1 <= int(answer.headers["RateLimit-Reset"]) <= 60


def test_the_sandbox_limit_is_the_client_ids_across_its_tokens(onex_sandbox):
    onex_sandbox.knobs(rate_limit=3)
    tokens = [
        OneXClient(onex_sandbox.url, CLIENT_ID, CLIENT_SECRET, budget=None)._token_value()
        for _ in range(2)
    ]
    assert tokens[0] != tokens[1]
    answers = [
        requests.get(
            onex_sandbox.url + REASONS, headers={"Authorization": f"Bearer {t}"}, timeout=5
        )
        for t in tokens * 2
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]


def test_the_sandbox_window_ends_when_its_reset_says(onex_sandbox):
    onex_sandbox.knobs(rate_limit=2, rate_window_seconds=2)
    wait_for_window_start(2)
    token = OneXClient(onex_sandbox.url, CLIENT_ID, CLIENT_SECRET, budget=None)._token_value()
    bearer = {"Authorization": f"Bearer {token}"}
    answers = [requests.get(onex_sandbox.url + REASONS, headers=bearer, timeout=5) for _ in "abc"]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[-1].headers
    assert limited["Retry-After"] == limited["RateLimit-Reset"] == "2"
    time.sleep(int(limited["Retry-After"]))
    again = requests.get(onex_sandbox.url + REASONS, headers=bearer, timeout=5)
    assert (again.status_code, again.headers["RateLimit-Remaining"]) == (200, "1")
