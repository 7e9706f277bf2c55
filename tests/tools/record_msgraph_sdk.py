"""Record Microsoft's msgraph-sdk against the Microsoft 365 sandbox (not run by CI).

    python3 -m venv /tmp/msgraph-venv && /tmp/msgraph-venv/bin/pip install msgraph-sdk
    .venv/bin/python tests/tools/record_msgraph_sdk.py [--venv /tmp/msgraph-venv]

Starts the sandbox (Demo AB) and an https notification endpoint it trusts, gives Anna one
meeting carrying the add-in's extended property, runs tests/tools/msgraph_sdk_client.py in the
SDK's virtualenv, and writes the Graph requests the SDK made, as the sandbox's request log saw
them, to tests/data/msgraph-sdk-requests.json: method, path and query exactly as sent, the
headers that matter, the body, and the answer's status. Ids and times that change from run to
run become placeholders ({eventId}, {subscriptionId}, {notificationUrl}, {expiry+N}) that
tests/test_msgraph_sdk_replay.py fills in when it replays the recording with plain requests.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sandbox.m365 import demo  # noqa: E402
from sandbox.m365.server import M365Server  # noqa: E402
from tests.m365_sandbox import NotificationEndpoint  # noqa: E402

RECORDING = REPO / "tests" / "data" / "msgraph-sdk-requests.json"
CLIENT = Path(__file__).with_name("msgraph_sdk_client.py")
MAILBOX = demo.ANNA
PROPERTY_ID = demo.addin_property_id(demo.DEFAULT_ADDIN_ID)
# The SDK reads a fortnight from WINDOW_START holding these meetings (more than one page of
# ten); the first carries the add-in's extended property. The replay makes the same ones.
WINDOW_START = "2030-01-01T00:00:00+00:00"
MEETINGS = [
    {
        "subject": "msgraph-sdk",
        "showAs": "busy",
        "start": {"dateTime": "2030-01-02T10:00:00", "timeZone": "Pacific Standard Time"},
        "end": {"dateTime": "2030-01-02T11:00:00", "timeZone": "Pacific Standard Time"},
        "singleValueExtendedProperties": [{"id": PROPERTY_ID, "value": '{"forwarding": "divert"}'}],
    },
    *(
        {
            "subject": f"Möte {day}",
            "showAs": "busy",
            "start": {
                "dateTime": f"2030-01-{day:02}T09:00:00",
                "timeZone": "W. Europe Standard Time",
            },
            "end": {
                "dateTime": f"2030-01-{day:02}T10:00:00",
                "timeZone": "W. Europe Standard Time",
            },
        }
        for day in range(3, 14)
    ),
]


def shape(entry) -> str:
    """What the SDK needs of the answer: a collection, one entity, a subscription, nothing."""
    path, method = entry["path"], entry["method"]
    if "/subscriptions" in path:
        return "empty" if method == "DELETE" or path.endswith("/reauthorize") else "subscription"
    if method == "GET" and path.rstrip("/").rsplit("/", 1)[-1] in (
        "users",
        "calendarView",
        "events",
    ):
        return "collection"
    return "entity"


def templated(text: str, ids: dict) -> str:
    for value, placeholder in ids.items():
        text = text.replace(value, placeholder)
    return text


def body_template(body, ids, now):
    if not isinstance(body, dict):
        return body
    out = {}
    for key, value in body.items():
        if key in ("notificationUrl", "lifecycleNotificationUrl"):
            out[key] = "{notificationUrl}"
        elif key == "expirationDateTime":
            expiry = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            minutes = round((expiry - now).total_seconds() / 60)
            out[key] = f"{{expiry+{minutes}}}"
        else:
            out[key] = json.loads(templated(json.dumps(value), ids))
    return out


def record(venv: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        server = M365Server(port=0, ca_file=Path(tmp) / "ca.pem").start()
        endpoint = NotificationEndpoint(server.ca)
        try:
            sandbox = server.sandbox
            tenant = sandbox.tenants[demo.DEMO_TENANT_ID]
            user = sandbox.find_user(tenant, MAILBOX)
            meeting = None
            for body in MEETINGS:
                _status, _headers, made = sandbox.create_event(tenant, user, dict(body))
                meeting = meeting or made
            with sandbox.lock:
                sandbox.log.clear()
            started = datetime.now(UTC)
            run = subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    str(CLIENT),
                    "--graph",
                    server.base_url,
                    "--ca",
                    str(server.ca_file),
                    "--tenant",
                    demo.DEMO_TENANT_ID,
                    "--mailbox",
                    MAILBOX,
                    "--notification-url",
                    endpoint.url,
                    "--property-id",
                    PROPERTY_ID,
                    "--event-id",
                    meeting["id"],
                    "--start",
                    WINDOW_START,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if run.returncode != 0:
                raise SystemExit(f"msgraph-sdk failed:\n{run.stdout}\n{run.stderr}")
            with sandbox.lock:
                log = list(sandbox.log)
            if sandbox.crashes:
                raise SystemExit(f"the sandbox crashed: {sandbox.crashes}")
        finally:
            endpoint.stop()
            server.stop()
    graph = [entry for entry in log if entry["path"].startswith("/v1.0")]
    subscription_ids = {
        entry["path"].split("/")[3]
        for entry in graph
        if entry["path"].count("/") >= 3 and entry["path"].startswith("/v1.0/subscriptions/")
    }
    ids = {meeting["id"]: "{eventId}", **{s: "{subscriptionId}" for s in subscription_ids}}
    requests_ = [
        {
            "method": entry["method"],
            "path": templated(entry["raw_path"], ids),
            "headers": entry.get("headers", {}),
            **({"body": body_template(entry["body"], ids, started)} if entry.get("body") else {}),
            "expect": {"status": entry["status"], "shape": shape(entry)},
        }
        for entry in graph
    ]
    return {
        "client": "msgraph-sdk (Python), tests/tools/msgraph_sdk_client.py",
        "recorded": started.strftime("%Y-%m-%d"),
        "sdk": json.loads(run.stdout.strip().splitlines()[-1]),
        "mailbox": MAILBOX,
        "meetings": MEETINGS,
        "signin": [
            {"method": entry["method"], "path": entry["path"]}
            for entry in log
            if entry.get("login")
        ],
        "requests": requests_,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/msgraph-venv"))
    args = parser.parse_args()
    recording = record(args.venv)
    RECORDING.write_text(json.dumps(recording, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(recording['requests'])} Graph requests recorded in {RECORDING}")


if __name__ == "__main__":
    main()
