"""Exchange On Prem: our push endpoint down for 60 s while bookings change. Exchange retries
its delivery, then gives the subscription up (after its status period: one minute here,
EWS_STATUS_FREQUENCY=1, the shortest Exchange allows). Once we are back the product must notice
the silent subscription, subscribe again from its watermark, and receive the changes of the gap
(tests/test_e2e_ews_outage.py shows the resume itself; here nobody asks for it by hand)."""

import time

import pytest

pytestmark = pytest.mark.faults


def test_the_ews_push_endpoint_down_and_the_watermark_resume(fault_stack):
    stack = fault_stack(9, "ews-push-down", graph=None, ews_mailboxes=20)
    stack.probe()
    stack.web.stop()  # the notification service is down: Exchange's POSTs are refused
    began = time.monotonic()
    for n in range(10):
        stack.outlook.change(stack.rng.choice(stack.mailboxes()), n)
        time.sleep(max(0.0, began + 6 * (n + 1) - time.monotonic()))
    time.sleep(max(0.0, began + 60 - time.monotonic()))
    stack.restart_web()
    fault_ended = time.monotonic()
    refused = [d for d in stack.ews.deliveries() if d.get("status") != 200]
    gave_up = sum(1 for d in refused if d.get("gave_up"))
    assert refused, "no push failed while the endpoint was down"
    notes = f" failed_pushes={len(refused)} subscriptions_given_up={gave_up}"
    stack.assert_recovered(stack.finish(fault_ended, notes=notes))
