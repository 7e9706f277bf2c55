"""The One X client's Prometheus metrics (served at /metrics by mss.metrics).

Labels are fixed words only: never a company, a subscription or an entry's id.
"""

from prometheus_client import Counter

from .operations import DeleteAbsence, OperationResult

OPERATIONS = Counter(
    "mss_onex_operations",
    "One X absence operations applied, by operation (put/delete) and result.",
    ["op", "result"],
)
THROTTLED = Counter("mss_onex_429", "One X answers with status 429 (Too Many Requests).")


class Result:
    OK = "ok"
    REFUSED = "refused"  # One X said no for good (a 4xx other than 429)
    FAILED = "failed"  # a passing failure: retried by a later run
    RATE_BUDGET = "rate_budget"  # our own budget held it back: nothing was sent


def count_results(results: list[OperationResult], rate_budget_code: str) -> None:
    for result in results:
        if result.ok:
            outcome = Result.OK
        elif result.code == rate_budget_code:
            outcome = Result.RATE_BUDGET
        elif result.permanent:
            outcome = Result.REFUSED
        else:
            outcome = Result.FAILED
        op = "delete" if isinstance(result.operation, DeleteAbsence) else "put"
        OPERATIONS.labels(op, outcome).inc()
