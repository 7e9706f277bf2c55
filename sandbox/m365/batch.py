"""JSON batching (`POST /$batch`) as Graph runs it.

At most 20 steps with unique ids. Steps run in any order, except that a step waits for the
steps its `dependsOn` names; when one of those failed, the step is not run and answers 424.
The answers come back in any order (shuffled here): a client matches them by `id`.
"""

import random
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from .errors import GraphError, graph_error

BATCH_LIMIT = 20
_random = random.SystemRandom()

# One step: (method, path without /v1.0, query, lower-cased headers, body) → (status, headers, body)
RunStep = Callable[[str, str, dict, dict, object], tuple[int, dict, object]]


def check(body) -> list[dict]:
    """The steps of a well-formed batch, or GraphError as Graph refuses a malformed one."""
    steps = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        raise GraphError(400, "BadRequest", "Invalid batch payload.")
    if len(steps) > BATCH_LIMIT:
        raise GraphError(
            400,
            "BadRequest",
            f"Number of batch request steps exceeds the maximum of {BATCH_LIMIT}.",
        )
    ids = [str(step.get("id", "")) for step in steps]
    if any(not step_id for step_id in ids):
        raise GraphError(400, "BadRequest", "Each batch request step needs an id.")
    if len(set(ids)) != len(ids):
        raise GraphError(400, "BadRequest", "Batch request ids must be unique.")
    for step in steps:
        if not step.get("method") or not isinstance(step.get("url"), str):
            raise GraphError(400, "BadRequest", "Each batch request step needs a method and a url.")
        depends = step.get("dependsOn", [])
        if not isinstance(depends, list) or not all(str(d) in ids for d in depends):
            raise GraphError(
                400,
                "BadRequest",
                f"Request '{step['id']}' depends on a request id that is not in the batch.",
            )
    _refuse_cycles(steps)
    return steps


def _refuse_cycles(steps):
    depends = {str(s["id"]): [str(d) for d in s.get("dependsOn", [])] for s in steps}
    done: set[str] = set()
    while len(done) < len(depends):
        ready = [i for i, needs in depends.items() if i not in done and set(needs) <= done]
        if not ready:
            raise GraphError(400, "BadRequest", "The dependsOn of the batch form a cycle.")
        done |= set(ready)


def run(steps: list[dict], run_step: RunStep, record: Callable[[dict], None]) -> list[dict]:
    """Run the steps in an order of our choosing that respects dependsOn; shuffled answers."""
    waiting = {str(step["id"]): step for step in steps}
    answers: dict[str, dict] = {}
    while waiting:
        ready = [
            step_id
            for step_id, step in waiting.items()
            if all(str(d) in answers for d in step.get("dependsOn", []))
        ]
        step_id = _random.choice(ready)
        step = waiting.pop(step_id)
        failed = [
            str(d) for d in step.get("dependsOn", []) if not 200 <= answers[str(d)]["status"] < 300
        ]
        if failed:
            status, headers, body = graph_error(424, "FailedDependency", "Failed dependency.")
        else:
            status, headers, body = _run_one(step, run_step, record)
        answer = {
            "id": step_id,
            "status": status,
            "headers": {"Content-Type": "application/json", **headers},
        }
        if body is not None:
            answer["body"] = body
        answers[step_id] = answer
    shuffled = list(answers.values())
    _random.shuffle(shuffled)
    return shuffled


def _run_one(step, run_step: RunStep, record) -> tuple[int, dict, object]:
    split = urlsplit(step["url"])
    path = split.path if split.path.startswith("/") else "/" + split.path
    if path.startswith("/v1.0/"):
        path = path[5:]
    query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
    headers = {k.lower(): str(v) for k, v in (step.get("headers") or {}).items()}
    method = str(step["method"]).upper()
    if step.get("body") is not None and "content-type" not in headers:
        status, out_headers, body = graph_error(
            400, "BadRequest", "A Content-Type header is required when a request has a body."
        )
    else:
        status, out_headers, body = run_step(method, path, query, headers, step.get("body"))
    record(
        {
            "method": method,
            "path": "/v1.0" + path,
            "query": query,
            "prefer": headers.get("prefer", ""),
            "status": status,
            "batch": True,
        }
    )
    return status, out_headers, body
