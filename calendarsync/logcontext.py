"""What each log line says about where it comes from: the web request or Celery task it belongs
to and the integration it works on.

The values live in context variables: `mss.request_id` sets the request's,
`mss.tasklog` the Celery task's, and the sync core `integration(...)` around the work
on one integration. `ContextFilter` (on the console handler, mss/settings.py LOGGING) copies
them onto every record, with `event`: the call's `extra={"event": ...}` or else its message
template, so one kind of line can be counted without parsing messages.

It lives in calendarsync, not mss, because the sync core sets the integration and may not
import mss; it imports nothing of the project.
"""

import contextlib
import contextvars
import logging
import re
import uuid
from datetime import UTC, datetime

from pythonjsonlogger import json as jsonlogger

request_id = contextvars.ContextVar("request_id", default=None)
task_id = contextvars.ContextVar("task_id", default=None)
# The Integration's `code` (a UUID): never its name, the company's or the tenant's.
integration_code = contextvars.ContextVar("integration", default=None)

CONTEXT_FIELDS = ("request_id", "task_id", "integration")
# An incoming X-Request-ID is kept only when it is this harmless (a proxy's or a client's id).
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# An address in a traceback (also URL-encoded): exception texts of libraries (a URL of a
# mailbox, a server's answer) are not ours to word, so a traceback loses its addresses. Our
# own messages are not rewritten: they name ids, and tests/test_log_privacy.py checks it.
EMAIL_PATTERN = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)


def without_addresses(text: str) -> str:
    return EMAIL_PATTERN.sub("<address>", text)


def request_id_from(incoming: str | None) -> str:
    """The incoming id when it is sane, else a new one."""
    if incoming and REQUEST_ID_PATTERN.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


@contextlib.contextmanager
def integration(code):
    """Log lines inside carry this integration's code (an Integration or its code)."""
    code = getattr(code, "code", code)
    token = integration_code.set(str(code) if code else None)
    try:
        yield
    finally:
        integration_code.reset(token)


def carried(function):
    """`function` for a worker thread (ThreadPoolExecutor), seeing the log context of the thread
    that made this wrapper: threads do not inherit context variables."""
    context = contextvars.copy_context()

    def run(*args, **kwargs):
        return context.copy().run(function, *args, **kwargs)  # one copy per call: threads overlap

    return run


class ContextFilter(logging.Filter):
    """Puts request_id, task_id, integration and event on every record (an `extra` given by
    the call wins)."""

    def filter(self, record):
        values = record.__dict__
        values.setdefault("request_id", request_id.get())
        values.setdefault("task_id", task_id.get())
        values.setdefault("integration", integration_code.get())
        if not values.get("event"):
            values["event"] = (
                record.msg if isinstance(record.msg, str) else type(record.msg).__name__
            )
        return True


class JsonFormatter(jsonlogger.JsonFormatter):
    """python-json-logger's formatter limited to the fields named in its format: an `extra`
    a library adds stays out of the line (Celery puts a task's arguments in `data`)."""

    def add_fields(self, log_data, record, message_dict):
        if self.timestamp:
            key = self.timestamp if isinstance(self.timestamp, str) else "timestamp"
            moment = datetime.fromtimestamp(record.created, tz=UTC)
            log_data[self._get_rename(key)] = moment.isoformat(timespec="milliseconds")
        for field in self._required_fields:
            log_data[self._get_rename(field)] = record.__dict__.get(field)
        log_data.update(message_dict)  # exc_info, stack_info

    def formatException(self, ei):
        return without_addresses(super().formatException(ei))


class PlainFormatter(logging.Formatter):
    """Development's lines: `%(context)s` is the request, task and integration, shortened
    (" [r=1a2b3c4d t=5e6f7a8b i=9c0d1e2f]"), or nothing."""

    def formatException(self, ei):
        return without_addresses(super().formatException(ei))

    def formatMessage(self, record):
        parts = [
            f"{key[0]}={str(value)[:8]}"
            for key in CONTEXT_FIELDS
            if (value := record.__dict__.get(key))
        ]
        context = f" [{' '.join(parts)}]" if parts else ""
        return self._style._fmt % {**record.__dict__, "context": context}
