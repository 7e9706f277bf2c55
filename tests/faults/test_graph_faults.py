"""Microsoft's side misbehaving: Graph throttling during a resync and Outlook changes, and our
webhook endpoint down for 60 s while Graph retries its deliveries (with Graph's backoff, in
real time: 10 s, 20 s, 40 s …)."""

import threading
import time

import pytest

pytestmark = pytest.mark.faults


class GraphStorm:
    """Every second, the next `per_second` calendar reads (inner $batch steps too) are
    answered 429 with Retry-After: a share of the reads throttled, the rest answered."""

    def __init__(self, m365, per_second=5, retry_after=2):
        self.m365, self.per_second, self.retry_after = m365, per_second, retry_after
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopped.is_set():
            rule = {"match": "calendarView", "count": self.per_second}
            self.m365.knobs(throttle=[{**rule, "retry_after": self.retry_after}])
            self.stopped.wait(1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=5)
        self.m365.knobs(throttle=[])


def test_a_graph_429_storm_during_a_resync_and_outlook_changes(fault_stack):
    stack = fault_stack(6, "graph-429-storm")
    stack.probe()
    with GraphStorm(stack.m365):
        stack.resync_with_new_rule()
        for n in range(10):
            stack.outlook.change(stack.rng.choice(stack.mailboxes()), n)
            time.sleep(3)
        throttled = sum(1 for r in stack.m365.requests() if r["status"] == 429)
    fault_ended = time.monotonic()
    assert throttled, "the storm throttled nothing"
    stack.assert_recovered(stack.finish(fault_ended, notes=f" throttled={throttled}"))


def test_our_webhook_endpoint_down_for_60_s_during_20_changes(fault_stack):
    stack = fault_stack(7, "webhook-down-60s", graph=(2, 40))
    stack.probe()
    stack.web.stop()  # the TLS front stays: Graph gets 502s, as from a load balancer
    began = time.monotonic()
    for n in range(20):
        stack.outlook.change(stack.rng.choice(stack.mailboxes()), n)
        time.sleep(max(0.0, began + 3 * (n + 1) - time.monotonic()))
    time.sleep(max(0.0, began + 60 - time.monotonic()))
    stack.restart_web()
    fault_ended = time.monotonic()
    failed = [
        post
        for post in stack.m365.deliveries()
        if post["kind"] == "notification" and not 200 <= (post.get("status") or 0) < 300
    ]
    assert failed, "no delivery failed while the endpoint was down"
    stack.assert_recovered(stack.finish(fault_ended, notes=f" failed_posts={len(failed)}"))
