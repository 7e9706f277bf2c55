"""The One X API client: the whole contract of onex-api.md behind one module.

All HTTP goes through `OneXClient._send` on one pooled `requests.Session` with explicit
timeouts. Tokens are reused until ~80 % of their life. Only 429/502/503/504 and connection
errors are retried (every call of the contract is idempotent), honouring Retry-After, else
exponential backoff with jitter, bounded in attempts and in total time. Every failure surfaces
as `OneXError`, which says whether retrying later could help.

Every API request takes a unit of the client id's rate budget (`onex.budget`) in the client's
lane first, and every answer's rate-limit headers feed it back.
"""

import copy
import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from . import metrics
from .budget import Lane, OverBudget, RateBudget, budget_for
from .operations import AbsenceEntry, DeleteAbsence, Operation, OperationResult, PutAbsence

logger = logging.getLogger(__name__)

RATE_BUDGET_CODE = "rate_budget"  # our own budget is spent: nothing was sent
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
BATCH_MAX = 100
TOKEN_REUSE_SHARE = 0.8


class OneXError(Exception):
    """A One X call that failed. `permanent`: the same call cannot succeed by retrying."""

    def __init__(self, detail, *, permanent, code="", status=None):
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.code = code
        self.status = status

    def __str__(self):
        where = f"{self.status} " if self.status else ""
        return f"One X {where}{self.code or 'error'}: {self.detail}"

    @classmethod
    def from_response(cls, response):
        problem = {}
        if "json" in response.headers.get("Content-Type", ""):
            try:
                problem = response.json()
            except ValueError:
                problem = {}
        if not isinstance(problem, dict):
            problem = {}
        return cls.from_problem(problem, response.status_code)

    @classmethod
    def from_problem(cls, problem, status):
        status = problem.get("status") or status
        detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        errors = problem.get("errors") or []
        if errors:
            detail += " (" + ", ".join(f"{e.get('field')}: {e.get('code')}" for e in errors) + ")"
        return cls(
            detail, permanent=is_permanent(status), code=problem.get("code", ""), status=status
        )


def is_permanent(status):
    """Client errors other than 429 cannot succeed on retry; server errors might."""
    return 400 <= status < 500 and status != 429


def entry_body(entry: AbsenceEntry) -> dict:
    return {
        "reasonCode": entry.reason_code,
        "start": _rfc3339(entry.start),
        "end": _rfc3339(entry.end),
        "returnAt": _rfc3339(entry.return_at),
        "divert": entry.divert,
        "openDiversion": entry.open_diversion,
        "note": entry.note,
    }


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("One X needs times with an offset")
    return moment.isoformat()


def _retry_after_seconds(response):
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# Build the budget from settings (a test or benchmark passes None for none, or its own).
FROM_SETTINGS = object()


class _Tokens:
    """The access token, shared by a client and its lane views."""

    def __init__(self):
        self.value = None
        self.renew_at = 0.0
        self.lock = threading.Lock()


class OneXClient:
    def __init__(
        self,
        base_url,
        client_id,
        client_secret,
        *,
        timeout=(3.05, 20),
        max_attempts=6,
        max_retry_seconds=60.0,
        backoff_base=0.5,
        backoff_cap=10.0,
        sleep=time.sleep,
        pool_size=10,
        budget: RateBudget | None = FROM_SETTINGS,
        lane: Lane = Lane.BULK,
    ):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._tokens = _Tokens()
        self.budget = budget_for(self.base_url, client_id) if budget is FROM_SETTINGS else budget
        self.lane = lane

    def in_lane(self, lane: Lane) -> "OneXClient":
        """This client (same session, token and budget) taking its units in `lane`."""
        if lane == self.lane:
            return self
        view = copy.copy(self)
        view.lane = lane
        return view

    def close(self):
        self.session.close()

    # Transport ----------------------------------------------------------------------------

    def _send(self, method, url, *, budgeted=True, **kwargs):
        """One HTTP exchange with retries of transient failures; returns the final response
        (any status) or raises OneXError when the retry budget is spent on transient ones.
        `budgeted`: each attempt takes a unit of the rate budget (API calls; not the token)."""
        deadline = time.monotonic() + self.max_retry_seconds
        attempt = 0
        while True:
            attempt += 1
            used = self._take_unit(deadline) if budgeted else None
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as error:
                # A read timeout on an idempotent call is as safe to retry as a refused connect.
                failure, wait = OneXError(str(error), permanent=False, code="connection"), None
            else:
                wait = _retry_after_seconds(response)
                if response.status_code == 429:
                    metrics.THROTTLED.inc()
                if budgeted and self.budget is not None:
                    # A 429 is the token's: its Retry-After holds back every worker.
                    pause = wait if response.status_code == 429 else None
                    self.budget.observe(response.headers, used=used, retry_after=pause)
                if response.status_code not in RETRYABLE_STATUSES:
                    return response
                failure = OneXError.from_response(response)
            if wait is None:
                wait = self._backoff(attempt)
            # Status and code only: One X's free-text detail may echo what we sent (a subject).
            failed = (failure.status or "-", failure.code or "error")
            if attempt >= self.max_attempts or time.monotonic() + wait > deadline:
                logger.warning(
                    "One X %s %s gave up after %d attempts: %s %s", method, url, attempt, *failed
                )
                raise failure
            logger.info("One X %s %s: %s %s; retry in %.2fs", method, url, *failed, wait)
            self.sleep(wait)

    def _take_unit(self, deadline):
        """One unit of the rate budget, waiting at most until `deadline` (monotonic); past
        that the call fails as transient, so a task retries later instead of holding a worker."""
        if self.budget is None:
            return None
        try:
            return self.budget.acquire(
                self.lane, max_wait=max(0.0, deadline - time.monotonic()), sleep=self.sleep
            )
        except OverBudget as over:
            logger.info("One X rate budget (%s): %s", self.lane, over)
            raise OneXError(str(over), permanent=False, code=RATE_BUDGET_CODE) from None

    def _backoff(self, attempt):
        """Exponential backoff with equal jitter, capped."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _token_value(self, *, renew=False):
        tokens = self._tokens
        with tokens.lock:
            if renew or tokens.value is None or time.monotonic() >= tokens.renew_at:
                # The limit is per token on API calls: fetching the token is outside it.
                response = self._send(
                    "POST",
                    f"{self.base_url}/oauth2/token",
                    budgeted=False,
                    data={"grant_type": "client_credentials"},
                    auth=(self.client_id, self.client_secret),
                )
                if response.status_code != 200:
                    raise OneXError.from_response(response)
                payload = response.json()
                tokens.value = payload["access_token"]
                lifetime = float(payload.get("expires_in", 3600))
                tokens.renew_at = time.monotonic() + lifetime * TOKEN_REUSE_SHARE
            return tokens.value

    def fetch_token(self) -> None:
        """Ask for a new access token (the readiness probe: One X reachable, we are let in)."""
        self._token_value(renew=True)

    def _call(self, method, path, *, params=None, json=None, ok=(200, 201, 204)):
        """An authenticated API call; returns the response for a status in `ok`."""
        url = f"{self.base_url}/v1{path}"
        token = self._token_value()
        response = self._send(
            method, url, params=params, json=json, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 401 and self._problem_code(response) in (
            "token_expired",
            "invalid_token",
        ):
            # The token died before we expected (clock skew, revocation, a restarted server):
            # fetch a new one and try once more.
            token = self._token_value(renew=True)
            response = self._send(
                method, url, params=params, json=json, headers={"Authorization": f"Bearer {token}"}
            )
        if response.status_code not in ok:
            raise OneXError.from_response(response)
        return response

    @staticmethod
    def _problem_code(response):
        try:
            return response.json().get("code", "")
        except (ValueError, AttributeError):
            return ""

    def _pages(self, path, params) -> Iterator[dict]:
        params = {k: v for k, v in params.items() if v is not None}
        while True:
            payload = self._call("GET", path, params=params).json()
            yield from payload["items"]
            if not payload.get("nextCursor"):
                return
            params["cursor"] = payload["nextCursor"]

    # Directory ----------------------------------------------------------------------------

    def list_subscriptions(self, company_id, *, updated_since=None, page_size=200):
        since = _rfc3339(updated_since) if updated_since else None
        return self._pages(
            f"/companies/{quote(company_id, safe='')}/subscriptions",
            {"limit": page_size, "updatedSince": since},
        )

    def list_absence_reasons(self, company_id) -> list[dict]:
        path = f"/companies/{quote(company_id, safe='')}/absence-reasons"
        return self._call("GET", path).json()["items"]

    # Absences -----------------------------------------------------------------------------

    @staticmethod
    def _absence_path(company_id, subscription_id, external_id):
        return (
            f"/companies/{quote(company_id, safe='')}/subscriptions/"
            f"{quote(subscription_id, safe='')}/absences/{quote(external_id, safe='')}"
        )

    def put_absence(self, company_id, subscription_id, external_id, entry: AbsenceEntry) -> dict:
        path = self._absence_path(company_id, subscription_id, external_id)
        return self._call("PUT", path, json=entry_body(entry), ok=(200, 201)).json()

    def delete_absence(self, company_id, subscription_id, external_id) -> None:
        path = self._absence_path(company_id, subscription_id, external_id)
        try:
            self._call("DELETE", path, ok=(204, 200))
        except OneXError as error:
            if error.status != 404:  # 404: already gone, which is what we wanted
                raise

    def list_absences(
        self, company_id, *, start=None, end=None, subscription_id=None, page_size=500
    ) -> Iterator[dict]:
        return self._pages(
            f"/companies/{quote(company_id, safe='')}/absences",
            {
                "from": _rfc3339(start) if start else None,
                "to": _rfc3339(end) if end else None,
                "subscriptionId": subscription_id,
                "limit": page_size,
            },
        )

    def batch(self, company_id, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply up to 100 operations in one request; one result per operation, in order.

        Operations that come back 429/502/503/504 are sent again (only those), within the same
        attempt and time bounds as whole requests.
        """
        if len(operations) > BATCH_MAX:
            raise ValueError(f"at most {BATCH_MAX} operations per batch")
        path = f"/companies/{quote(company_id, safe='')}/absences:batch"
        results: list[OperationResult | None] = [None] * len(operations)
        pending = list(range(len(operations)))
        deadline = time.monotonic() + self.max_retry_seconds
        for attempt in range(1, self.max_attempts + 1):
            payload = {"operations": [_batch_op(operations[i]) for i in pending]}
            try:
                answers = self._call("POST", path, json=payload, ok=(200,)).json()["results"]
            except OneXError as error:
                if attempt == 1:
                    raise
                # Keep what the earlier rounds achieved; only the re-sent ones failed.
                for index in pending:
                    results[index] = _failed(operations[index], error)
                break
            retry = []
            for index, answer in zip(pending, answers, strict=True):
                result = _batch_result(operations[index], answer)
                results[index] = result
                if not result.ok and answer.get("status") in RETRYABLE_STATUSES:
                    retry.append(index)
            pending = retry
            wait = self._backoff(attempt)
            if not pending or attempt == self.max_attempts or time.monotonic() + wait > deadline:
                break
            self.sleep(wait)
        return results

    # The AbsenceWriter interface ----------------------------------------------------------

    def apply(self, company_id, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply each operation on its own: one call for one, batches of 100 for several."""
        operations = list(operations)
        if len(operations) == 1:
            results = [self._apply_one(company_id, operations[0])]
        else:
            results = []
            for offset in range(0, len(operations), BATCH_MAX):
                chunk = operations[offset : offset + BATCH_MAX]
                try:
                    results.extend(self.batch(company_id, chunk))
                except OneXError as error:
                    results.extend(_failed(op, error) for op in chunk)
        metrics.count_results(results, RATE_BUDGET_CODE)
        return results

    def _apply_one(self, company_id, operation):
        try:
            if isinstance(operation, PutAbsence):
                self.put_absence(
                    company_id, operation.subscription_id, operation.external_id, operation.entry
                )
            else:
                self.delete_absence(company_id, operation.subscription_id, operation.external_id)
        except OneXError as error:
            return _failed(operation, error)
        return OperationResult(operation, ok=True)


def _batch_op(operation):
    if isinstance(operation, PutAbsence):
        return {
            "op": "put",
            "subscriptionId": operation.subscription_id,
            "externalId": operation.external_id,
            "body": entry_body(operation.entry),
        }
    if isinstance(operation, DeleteAbsence):
        return {
            "op": "delete",
            "subscriptionId": operation.subscription_id,
            "externalId": operation.external_id,
        }
    raise TypeError(f"not a One X operation: {operation!r}")


def _batch_result(operation, answer):
    status = answer.get("status", 0)
    if 200 <= status < 300 or (status == 404 and isinstance(operation, DeleteAbsence)):
        return OperationResult(operation, ok=True)
    error = OneXError.from_problem(answer.get("error") or {}, status)
    return _failed(operation, error)


def _failed(operation, error):
    return OperationResult(
        operation, ok=False, code=error.code, permanent=error.permanent, detail=error.detail
    )


# The process-wide client ------------------------------------------------------------------

_client = None
_client_key = None
_client_lock = threading.Lock()


def get_client(lane: Lane = Lane.BULK) -> OneXClient:
    """The process's client, built from settings (rebuilt if the settings change, e.g. in
    tests), taking its rate-budget units in `lane`: INTERACTIVE when a person waits for this
    call (one mailbox's change), BULK (the default) for everything else."""
    global _client, _client_key
    key = (
        settings.ONEX_API_URL,
        settings.ONEX_CLIENT_ID,
        settings.ONEX_CLIENT_SECRET,
        settings.ONEX_RATE_LIMIT_PER_MINUTE,
        settings.ONEX_RATE_WINDOW_SECONDS,
        settings.ONEX_RATE_INTERACTIVE_SHARE,
        str(settings.CACHES["default"].get("LOCATION", "")),
    )
    with _client_lock:
        if _client is None or _client_key != key:
            if _client is not None:
                _client.close()
            _client, _client_key = OneXClient(*key[:3]), key
        return _client.in_lane(lane)
