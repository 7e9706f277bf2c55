"""Log lines: the JSON and plain formatters, the request id, the task id and the integration
on each line (calendarsync/logcontext.py, mss/request_id.py, mss/tasklog.py)."""

import json
import logging
import threading

import pytest
from celery import shared_task
from django.conf import settings
from django.urls import reverse

from calendarsync import logcontext
from tests.test_settings import manage

CODE = "5f3c6d2a-8b1e-4c7a-9d0f-3e2b1a4c5d6e"


def formatter(name):
    config = dict(settings.LOGGING["formatters"][name])
    factory = config.pop("()")
    assert factory == f"calendarsync.logcontext.{name.title()}Formatter"
    if name == "plain":
        config["fmt"] = config.pop("format")
    return getattr(logcontext, f"{name.title()}Formatter")(**config)


def record(msg, *args, exc_info=None, **extra):
    made = logging.getLogger("calendarsync.test").makeRecord(
        "calendarsync.test", logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra
    )
    logcontext.ContextFilter().filter(made)
    return made


def test_it_writes_one_json_object_with_the_context_fields():
    token = logcontext.request_id.set("req-1")
    try:
        with logcontext.integration(CODE):
            line = formatter("json").format(record("Synced user %s", 7, data={"args": "x"}))
    finally:
        logcontext.request_id.reset(token)
    assert "\n" not in line
    fields = json.loads(line)
    assert list(fields) == [
        "time", "level", "logger", "event", "message", "request_id", "task_id", "integration",
    ]  # fmt: skip
    assert fields["level"] == "WARNING" and fields["logger"] == "calendarsync.test"
    assert fields["message"] == "Synced user 7"
    assert fields["event"] == "Synced user %s"  # the template: one event, whatever the ids
    assert (fields["request_id"], fields["task_id"], fields["integration"]) == ("req-1", None, CODE)
    assert fields["time"].endswith("+00:00")


def test_an_extra_event_wins_and_a_library_extra_stays_out():
    fields = json.loads(formatter("json").format(record("x %s", 1, event="sync.failed")))
    assert fields["event"] == "sync.failed"
    # Celery passes a task's arguments as `data`: never on the line.
    fields = json.loads(formatter("json").format(record("Task received", data={"args": "[1]"})))
    assert "data" not in fields


def test_a_traceback_loses_its_addresses_but_a_message_keeps_its_words():
    try:
        raise ValueError("GET /users/anna.andersson%40demo.se failed for Anna@Demo.se")
    except ValueError as error:
        exc_info = (type(error), error, error.__traceback__)
    fields = json.loads(
        formatter("json").format(record("Sync of synced user %s", 3, exc_info=exc_info))
    )
    assert "ValueError: GET /users/<address> failed for <address>" in fields["exc_info"]
    assert "demo.se" not in fields["exc_info"].lower()


def test_plain_lines_show_the_context_shortened():
    assert (
        formatter("plain")
        .format(record("Hello %s", "there"))
        .endswith("WARNING calendarsync.test Hello there")
    )
    with logcontext.integration(CODE):
        token = logcontext.task_id.set("0123456789abcdef")
        try:
            line = formatter("plain").format(record("Hello"))
        finally:
            logcontext.task_id.reset(token)
    assert line.endswith("WARNING calendarsync.test [t=01234567 i=5f3c6d2a] Hello")


def test_the_integration_is_reset_after_its_block_also_after_an_error():
    with pytest.raises(RuntimeError), logcontext.integration(CODE):
        assert logcontext.integration_code.get() == CODE
        raise RuntimeError
    assert logcontext.integration_code.get() is None


def test_a_worker_thread_sees_the_context_it_was_handed():
    seen = []
    with logcontext.integration(CODE):
        carried = logcontext.carried(lambda: seen.append(logcontext.integration_code.get()))
    threads = [threading.Thread(target=carried) for _ in range(2)]
    threads.append(threading.Thread(target=lambda: seen.append(logcontext.integration_code.get())))
    for thread in threads:
        thread.start()
        thread.join()
    assert seen == [CODE, CODE, None]


@pytest.mark.parametrize(
    "incoming",
    ["", "x" * 65, "has space", "semi;colon", "ünicode", "a\nb", "<script>"],
)
def test_it_replaces_an_unusable_request_id(client, db, incoming):
    response = client.get(reverse("login"), headers={"X-Request-ID": incoming} if incoming else {})
    given = response["X-Request-ID"]
    assert given != incoming and len(given) == 32 and int(given, 16) >= 0


def test_it_keeps_a_sane_request_id_and_logs_it_until_the_request_ends(client, db, caplog):
    incoming = "proxy-1.2_3-" + "a" * 52
    assert len(incoming) == 64
    with caplog.at_level(logging.WARNING, "django.request"):
        response = client.get("/no/such/page/", headers={"X-Request-ID": incoming})
    assert response.status_code == 404 and response["X-Request-ID"] == incoming
    # Django logs "Not Found" after the middleware chain: the id is still set then.
    (line,) = [r for r in caplog.records if r.name == "django.request"]
    assert line.request_id == incoming
    assert logcontext.request_id.get() is None  # cleared when the request finished


@shared_task
def _task_ids():
    return logcontext.task_id.get()


def test_a_task_knows_its_id_and_it_is_cleared_after(eager_celery):
    result = _task_ids.apply_async(task_id="task-abc")
    assert result.get() == "task-abc"
    assert logcontext.task_id.get() is None


def test_celery_does_not_take_over_the_root_logger():
    from mss.celery import app

    assert app.conf.worker_hijack_root_logger is False


def test_it_refuses_an_unknown_log_format():
    result = manage("check", LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT must be 'json' or 'plain'" in result.stderr


def test_production_defaults_to_json_lines(tmp_path):
    result = manage(
        "shell",
        "-c",
        "import logging; logging.getLogger('calendarsync.x').warning('hello %s', 1)",
        MSS_ENV="production",
        MSS_VAR_DIR=str(tmp_path),
        SECRET_KEY="k" * 50,
        ALLOWED_HOSTS="mss.example.se",
        MSS_ENCRYPTION_KEYS="Lx6hMHe5nZ0jzJp0hP3Z4b9Y0c0Q2Yq2lQm5q1m5Yb0=",
        TELENOR_ID_URL="https://signin.telenorid.example",
        TELENOR_ID_CLIENT_ID="mss",
        TELENOR_ID_CLIENT_SECRET="s",
        PUBLIC_BASE_URL="https://mss.example.se",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    hello = [line for line in lines if line["event"] == "hello %s"]
    assert hello and hello[0]["message"] == "hello 1" and "request_id" in hello[0]
