"""Aktiv off and on again (calendarsync/lifecycle.py, what the settings form calls): off, the
integration's entries leave One X (no stale Hänvisning diverts calls) and nothing of a change
made meanwhile arrives; on, every mailbox resyncs and later changes arrive again."""

import time

import pytest

from calendarsync import lifecycle
from calendarsync.actors import Actor, ActorKind
from calendarsync.models import Integration

pytestmark = pytest.mark.faults

ADMIN = Actor(ActorKind.ADMIN, None, "admin@kund1.example.se")


def test_aktiv_off_clears_one_x_and_aktiv_on_brings_everything_back(fault_stack):
    stack = fault_stack(8, "aktiv-off-on", graph=(2, 40))
    stack.probe()
    integration = stack.population.integrations[0]
    paused_mailboxes = stack.mailboxes(integration)

    assert lifecycle.set_active(integration, False, actor=ADMIN)
    paused_at = time.monotonic()
    stack.outlook.add(stack.rng.choice(paused_mailboxes))  # made while paused
    paused = stack.finish(paused_at, change_after=False, phase="off")
    stack.assert_recovered(paused)

    integration.refresh_from_db()
    assert lifecycle.set_active(integration, True, actor=ADMIN)
    assert Integration.objects.get(pk=integration.pk).syncing
    resumed_at = time.monotonic()
    resumed = stack.finish(resumed_at, phase="on")  # a change after reactivation, too
    stack.assert_recovered(resumed)
    stack.probe("a change after reactivation", mailbox=stack.rng.choice(paused_mailboxes))
