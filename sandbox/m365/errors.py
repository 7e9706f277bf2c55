"""Graph's error shape and its request ids.

Every Graph answer carries `request-id` (Graph's own) and `client-request-id` (the client's,
echoed; Graph's request id when the client sent none). An error body is
`{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`.
"""

import uuid
from datetime import UTC, datetime


class GraphError(Exception):
    """Raised where a request is refused deep inside; becomes `graph_error(...)`."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def answer(self) -> tuple[int, dict, dict]:
        status, headers, body = graph_error(self.status, self.code, self.message)
        return status, {**headers, **self.headers}, body


def graph_error(status: int, code: str, message: str) -> tuple[int, dict, dict]:
    """(status, headers, body); the innerError's ids are stamped when the answer goes out."""
    return (
        status,
        {},
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": now_stamp()},
            }
        },
    )


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def new_request_id() -> str:
    return str(uuid.uuid4())


def request_ids(client_request_id: str | None) -> tuple[str, str]:
    request_id = new_request_id()
    return request_id, (client_request_id or "").strip() or request_id


def stamp(body, request_id: str, client_request_id: str):
    """Put the request's ids into an error body's innerError (other bodies stay as they are)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        inner = body["error"].setdefault("innerError", {})
        inner.setdefault("date", now_stamp())
        inner["request-id"] = request_id
        inner["client-request-id"] = client_request_id
    return body


def id_headers(request_id: str, client_request_id: str) -> dict:
    return {"request-id": request_id, "client-request-id": client_request_id}
