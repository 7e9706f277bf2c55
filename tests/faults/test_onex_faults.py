"""One X misbehaving: down for 90 s while Outlook changes arrive, and a storm of 429s and 5xx
answers while 300 mailboxes resync."""

import time

import pytest

pytestmark = pytest.mark.faults


def test_a_one_x_outage_of_90_s_during_30_outlook_changes(fault_stack):
    stack = fault_stack(4, "onex-outage-90s", graph=(2, 40))
    stack.probe()
    stack.onex.knobs(outage_seconds=90)  # every API request is answered 503 for 90 s
    began = time.monotonic()
    for n in range(30):  # one change every 3 s, in a mailbox picked at random
        stack.outlook.change(stack.rng.choice(stack.mailboxes()), n)
        time.sleep(max(0.0, began + 3 * (n + 1) - time.monotonic()))
    fault_ended = began + 90
    time.sleep(max(0.0, fault_ended - time.monotonic()))
    refused = stack.onex_failures()
    assert refused, "One X refused nothing during its outage"
    stack.assert_recovered(stack.finish(fault_ended, notes=f" onex_refused={refused}"))


def test_a_one_x_429_and_5xx_storm_during_a_300_mailbox_resync(fault_stack):
    stack = fault_stack(5, "onex-storm-300", graph=(3, 100))
    stack.probe()
    stack.onex.knobs(latency_ms=30, seed=5)
    stack.resync_with_new_rule()
    began = time.monotonic()
    stack.onex.knobs(rate_429=0.2, rate_5xx=0.2, retry_after=1)  # the storm
    time.sleep(60)
    stack.onex.knobs(rate_429=0.0, rate_5xx=0.0)
    fault_ended = time.monotonic()
    refused = stack.onex_failures()
    assert refused, "the storm failed no One X request"
    stack.say(f"onex-storm-300: storm of {fault_ended - began:.0f} s")
    stack.assert_recovered(stack.finish(fault_ended, notes=f" onex_refused={refused}"))
