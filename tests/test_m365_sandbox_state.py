"""The M365 sandbox's state file (make run's var/sandbox/m365.json) under concurrent requests."""

import json
import threading

from sandbox.m365.server import Sandbox


def test_concurrent_saves_neither_fail_nor_lose_the_last_state(tmp_path):
    state = tmp_path / "m365.json"
    sandbox = Sandbox(state_file=state)
    errors = []
    start = threading.Barrier(8)

    def save_many(n):
        start.wait()
        for i in range(25):
            try:
                with sandbox.lock:
                    sandbox.subscriptions[f"s{n}"] = {"id": f"s{n}", "i": i}
                sandbox.save()
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=save_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    saved = json.loads(state.read_text())["subscriptions"]
    assert {key: value["i"] for key, value in saved.items()} == {f"s{n}": 24 for n in range(8)}
