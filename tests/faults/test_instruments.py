"""The fault matrix's instruments can see what they are there to see: the tally finds each kind
of loss and a duplicate, and beat's schedule is judged by its longest gap. (Quick; part of the
default run, unlike the matrix itself.)"""

from datetime import UTC, datetime, timedelta

from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from .oracle import Expected, Plan, comparable, tally
from .stack import period_seconds

SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)


def entry(external_id, hours=0, subscription="sub-1", note="Möte", ended=False):
    start = SOON + timedelta(hours=hours) - (timedelta(days=3) if ended else timedelta())
    return {
        "subscriptionId": subscription,
        "externalId": external_id,
        "reasonCode": "MOTE",
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "returnAt": (start + timedelta(hours=1)).isoformat(),
        "divert": False,
        "openDiversion": False,
        "note": note,
    }


class OneX:
    def __init__(self, entries):
        self.entries = entries

    def absences(self, company):
        return self.entries if company == "c" else []


def planned(*specs):
    return Plan(
        absences={
            ("c", "sub-1", external_id): Expected(1, comparable(entry(external_id, hours)), "fp")
            for external_id, hours in specs
        },
        subscriptions={("c", "sub-1")},
    )


def test_the_tally_tells_missing_stale_orphaned_and_duplicated_apart():
    plan = planned(("mss-a", 0), ("mss-b", 2), ("mss-c", 4), ("mss-d", 6))
    onex = OneX(
        [
            entry("mss-a", 0),  # as planned
            entry("mss-b", 2, note="Ändrad i One X"),  # stale
            # mss-c missing
            entry("mss-d", 6),
            entry("mss-d-again", 6),  # a second entry for the same absence
            entry("mss-e", 8),  # orphaned: nothing plans it
            entry("mss-f", 0, ended=True),  # history, not drift
            entry("mss-g", 0, subscription="someone-else"),  # not the scenario's
        ]
    )
    found = tally(onex, plan, rows=False)
    assert (found.missing, found.stale, found.orphaned, found.duplicated) == (1, 1, 1, 1)
    assert found.lost == 3 and not found.clean
    assert found.matched == {("c", "sub-1", "mss-a"), ("c", "sub-1", "mss-d")}


def test_the_tally_is_clean_when_one_x_holds_exactly_the_plan():
    plan = planned(("mss-a", 0), ("mss-b", 2))
    found = tally(OneX([entry("mss-a", 0), entry("mss-b", 2)]), plan, rows=False)
    assert found.clean and found.planned == found.entries == 2


def crontab(**fields):
    return PeriodicTask(crontab=CrontabSchedule(**fields))


def test_only_jobs_that_come_round_within_two_minutes_count_as_quick():
    assert period_seconds(crontab(minute="*")) == 60
    assert period_seconds(crontab(minute="*/2")) == 120
    assert period_seconds(crontab(minute="*/30")) == 1800
    assert period_seconds(crontab(minute="40")) == 3600  # the hourly reconcile
    assert period_seconds(crontab(minute="15", hour="3")) == 24 * 3600
    every = IntervalSchedule(every=90, period=IntervalSchedule.SECONDS)
    assert period_seconds(PeriodicTask(interval=every)) == 90
