"""Drift: entries changed and deleted in One X behind the product's back (another system, or
someone at Telenor), and Booking rows that no longer say what One X holds (a record that failed
after One X accepted). No Outlook change follows, so no sync would notice: the One X audit
(calendarsync/audit.py) must find and repair both, in both directions."""

import time
from dataclasses import replace

import pytest
from django.conf import settings

from calendarsync import tasks
from calendarsync.models import Booking
from onex.client import OneXClient
from onex.operations import AbsenceEntry

from .oracle import parse

pytestmark = pytest.mark.faults


def entry_of(found: dict) -> AbsenceEntry:
    return AbsenceEntry(
        reason_code=found["reasonCode"],
        start=parse(found["start"]),
        end=parse(found["end"]),
        return_at=parse(found["returnAt"]),
        divert=found["divert"],
        open_diversion=found["openDiversion"],
        note=found["note"],
    )


def test_drift_in_one_x_and_in_booking_rows_is_repaired_by_the_audit(fault_stack):
    stack = fault_stack(10, "drift-audit", graph=(2, 40))
    stack.probe()
    plan = stack.plan()
    keys = sorted(plan.absences)
    picked = stack.rng.sample(keys, 12)
    onex = OneXClient(settings.ONEX_API_URL, settings.ONEX_CLIENT_ID, settings.ONEX_CLIENT_SECRET)
    try:
        entries = {
            (company, e["subscriptionId"], e["externalId"]): e
            for company in plan.companies
            for e in stack.onex.absences(company)
        }
        for company, subscription, external_id in picked[:4]:  # changed in One X
            changed = replace(
                entry_of(entries[(company, subscription, external_id)]),
                reason_code="LUNCH",
                divert=False,
                open_diversion=False,
                note="Ändrad i One X",
            )
            onex.put_absence(company, subscription, external_id, changed)
        for company, subscription, external_id in picked[4:8]:  # deleted in One X
            onex.delete_absence(company, subscription, external_id)
    finally:
        onex.close()
    rows = Booking.objects.filter(external_id__in=[external_id for *_, external_id in picked[8:12]])
    assert rows.count() == 4
    drifted = rows.filter(external_id__in=[k[2] for k in picked[8:10]]).update(
        fingerprint="0" * 32  # the row says One X holds something else
    )
    drifted += rows.filter(external_id__in=[k[2] for k in picked[10:12]]).delete()[0]
    assert drifted == 4
    before = stack.tally(plan)
    assert before.stale == 4 and before.missing == 4 and before.rows_behind >= 4, before
    fault_ended = time.monotonic()
    for integration in stack.population.integrations:  # each one's slot of the daily audit
        tasks.request_audit(integration.pk)
    result = stack.finish(fault_ended, change_after=False, notes=f" drift={before.describe()}")
    stack.assert_recovered(result)
