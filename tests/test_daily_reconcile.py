"""The daily reconcile (calendarsync/daily.py) and when subscriptions renew: each mailbox is
read once a day as its window's leading day moves in (by the audit at midnight, else by the
reconcile's steps after it); a missed read is caught
within the hour; subscriptions renew late and quiet ones only once per quiet time."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from calendarsync import daily, subscriptions, tasks
from calendarsync.models import Integration, MailboxSubscription, SyncedUser
from calendarsync.providers.graph.provider import SUBSCRIPTION_MINUTES
from calendarsync.rules import STOCKHOLM
from mss.schedules import PERIODIC_TASKS, RETIRED_ENTRIES
from tests.test_bulk_sync import make_users

DAY = datetime(2026, 3, 10, tzinfo=STOCKHOLM)  # a Tuesday; local midnight
LIFETIME = timedelta(minutes=SUBSCRIPTION_MINUTES)


def at(hours=0, minutes=0, day=DAY):
    return day + timedelta(hours=hours, minutes=minutes)


@pytest.fixture
def users(integration):
    made = make_users(integration, 30)
    SyncedUser.objects.update(last_synced_at=at(-20), created_at=at(-72))
    return made


def read(selected, now):
    """What the runs would do: every selected mailbox is read (synced) at `now`."""
    ids = sorted(selected.values_list("pk", flat=True))
    SyncedUser.objects.filter(pk__in=ids).update(last_synced_at=now, state="ok")
    return ids


def play_midnight_steps(day=DAY):
    return [
        read(daily.leading_day_users(at(1, 5 * k + 1, day)), at(1, 5 * k + 1, day))
        for k in range(6)
    ]


def test_the_midnight_steps_read_every_mailbox_exactly_once_a_sixth_at_a_time(users):
    steps = play_midnight_steps()
    everyone = sorted(u.pk for u in users)
    assert sorted(pk for step in steps for pk in step) == everyone
    assert all(len(step) == 5 for step in steps)  # 30 mailboxes, six slots
    assert list(daily.leading_day_users(at(1, 26))) == []  # the last step fired again: nothing
    # The next night reads them all again: the leading day moved once more.
    assert sorted(pk for step in play_midnight_steps(DAY + timedelta(days=1)) for pk in step) == (
        everyone
    )


def test_a_mailbox_read_since_midnight_is_left_out_of_its_step(users):
    fresh = users[0]
    slot = fresh.pk % daily.MIDNIGHT_STEPS
    SyncedUser.objects.filter(pk=fresh.pk).update(last_synced_at=at(0, 2))  # a change came in
    step = daily.leading_day_users(at(1, 5 * slot + 1))
    assert fresh.pk not in set(step.values_list("pk", flat=True))
    assert step.count() == 4


def test_outside_the_midnight_steps_a_manual_run_reads_who_was_not_read_since_midnight(users):
    SyncedUser.objects.filter(pk=users[0].pk).update(last_synced_at=at(9))
    assert daily.midnight_step(at(14)) is None
    assert daily.leading_day_users(at(14)).count() == 29


def test_a_day_of_beat_firings_reads_each_mailbox_once(users):
    """Midnight steps, the hourly catch-up and an idle day: one read per mailbox."""
    reads = []
    for minute in range(0, 24 * 60, 5):
        now = at(0, minute)
        if daily.midnight_step(now) is not None:
            reads += read(daily.leading_day_users(now), now)
        if minute % 60 == 40:
            reads += read(daily.overdue_users(now), now)
    assert sorted(reads) == sorted(u.pk for u in users)


def test_a_missed_midnight_is_caught_up_within_the_hour_after_25_hours(users):
    SyncedUser.objects.update(last_synced_at=at(0, 10))
    # The next midnight's steps never ran (beat was down); hourly runs from 00:40 on.
    next_day = DAY + timedelta(days=1)
    assert list(daily.overdue_users(at(0, 40, next_day))) == []  # 24.5 h: not yet
    caught = read(daily.overdue_users(at(1, 40, next_day)), at(1, 40, next_day))
    assert caught == sorted(u.pk for u in users)
    assert list(daily.overdue_users(at(2, 40, next_day))) == []  # once


def test_a_failing_mailbox_is_tried_once_a_day_in_its_hour_slot(users):
    SyncedUser.objects.update(last_synced_at=at(-48), state="error")
    tried = []
    for hour in range(24):
        now = at(hour, 40)
        tried += daily.overdue_users(now).values_list("pk", flat=True)  # its reads keep failing
    assert sorted(tried) == sorted(u.pk for u in users)
    ok = users[0]
    SyncedUser.objects.filter(pk=ok.pk).update(state="ok")
    wrong_hour = (ok.pk % daily.HOUR_SLOTS + 1) % 24
    assert ok.pk in set(daily.overdue_users(at(wrong_hour, 40)).values_list("pk", flat=True))


def test_a_new_mailbox_counts_from_when_it_was_added(users):
    SyncedUser.objects.update(last_synced_at=None, created_at=at(-2))
    assert list(daily.overdue_users(at(20))) == []
    assert daily.overdue_users(at(23, 40)).count() == 30  # added 25 h 40 min ago, never read


def test_paused_integrations_are_not_read(users, integration):
    Integration.objects.filter(pk=integration.pk).update(active=False)
    assert list(daily.leading_day_users(at(1, 1))) == []
    assert list(daily.overdue_users(at(12, 40) + timedelta(days=3))) == []


def test_the_midnight_task_requests_its_step_in_bulk_chunks(
    users, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(
        tasks.sync_mailboxes, "apply_async", lambda args, countdown: enqueued.append(args[0])
    )
    monkeypatch.setattr(timezone, "now", lambda: at(1, 11))  # step 2
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reconcile_all_mailboxes() == 5
    assert sorted(pk for chunk in enqueued for pk in chunk) == sorted(
        u.pk for u in users if u.pk % 6 == 2
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reconcile_overdue_mailboxes() == 0  # read 20 h ago: not overdue


def test_the_schedule_reads_daily_and_catches_up_hourly(db):
    by_task = {spec["task"]: spec["schedule"] for spec in PERIODIC_TASKS.values()}
    midnight = by_task["calendarsync.tasks.reconcile_all_mailboxes"]
    assert midnight.hour == {1} and sorted(midnight.minute) == [0, 5, 10, 15, 20, 25]
    assert len(midnight.minute) == daily.MIDNIGHT_STEPS
    assert by_task["calendarsync.tasks.reconcile_overdue_mailboxes"].hour == set(range(24))


def test_install_schedules_removes_the_hourly_reconcile_of_everything(db):
    every_hour = CrontabSchedule.objects.create(minute="40", timezone="Europe/Stockholm")
    PeriodicTask.objects.create(
        name=RETIRED_ENTRIES[0],
        task="calendarsync.tasks.reconcile_all_mailboxes",
        crontab=every_hour,
    )
    call_command("install_schedules")
    assert not PeriodicTask.objects.filter(name=RETIRED_ENTRIES[0]).exists()
    assert (
        PeriodicTask.objects.filter(task="calendarsync.tasks.reconcile_all_mailboxes").count() == 1
    )


# ----- renewal timing


def subscribed(user, *, expires_in, notified_ago=None):
    return MailboxSubscription.objects.create(
        synced_user=user,
        provider_subscription_id=f"sub-{user.pk}",
        expires_at=timezone.now() + expires_in,
        last_notification_at=timezone.now() - notified_ago if notified_ago else None,
    )


def ids(users):
    return set(users.values_list("pk", flat=True))


def test_subscriptions_renew_when_less_than_six_hours_are_left(users):
    soon, later = users[0], users[1]
    subscribed(soon, expires_in=timedelta(hours=5, minutes=50))
    subscribed(later, expires_in=timedelta(hours=6, minutes=10))
    due = ids(subscriptions.due_users())
    assert soon.pk in due and later.pk not in due
    assert subscriptions.RENEW_BEFORE == timedelta(hours=6)


def test_an_idle_graph_subscription_is_checked_once_per_quiet_time(users, integration, settings):
    settings.MSS_QUIET_MAILBOX_HOURS = 48
    quiet = timedelta(hours=48)
    renewed_long_ago, renewed_lately, lively = users[:3]
    # Renewed 49 h ago (its expiry says so) and no notification since: checked now.
    subscribed(renewed_long_ago, expires_in=LIFETIME - quiet - timedelta(hours=1))
    # Renewed an hour ago: that renewal was the check.
    subscribed(renewed_lately, expires_in=LIFETIME - timedelta(hours=1))
    subscribed(
        lively, expires_in=LIFETIME - quiet - timedelta(hours=1), notified_ago=timedelta(hours=2)
    )
    assert ids(subscriptions.quiet_users()) == {renewed_long_ago.pk}
    # Once renewed, its expiry moves a lifetime ahead: not again before another quiet time.
    MailboxSubscription.objects.filter(synced_user=renewed_long_ago).update(
        expires_at=timezone.now() + LIFETIME
    )
    assert ids(subscriptions.quiet_users()) == set()
    Integration.objects.filter(pk=integration.pk).update(kind=Integration.Kind.EWS)
    MailboxSubscription.objects.filter(synced_user=renewed_long_ago).update(
        expires_at=timezone.now() + LIFETIME - quiet - timedelta(hours=1)
    )
    assert ids(subscriptions.quiet_users()) == set()  # EWS reports in by itself


def test_an_idle_graph_mailbox_costs_under_two_graph_requests_a_day(settings):
    """The arithmetic bench_idle measures: a read a day, renewals once per quiet time (or per
    lifetime less RENEW_BEFORE, when that is sooner)."""
    renewals_a_day = 24 / min(
        settings.MSS_QUIET_MAILBOX_HOURS,
        (LIFETIME - subscriptions.RENEW_BEFORE).total_seconds() / 3600,
    )
    assert 1 + renewals_a_day <= 1.5


def test_midnight_is_stockholms():
    just_after = datetime(2026, 6, 30, 22, 7, tzinfo=UTC)  # 00:07 in Stockholm (summer time)
    assert daily.local_midnight(just_after) == datetime(2026, 7, 1, tzinfo=STOCKHOLM)
    assert daily.midnight_step(just_after) is None  # the audit's hour
    assert daily.midnight_step(datetime(2026, 6, 30, 23, 7, tzinfo=UTC)) == 1  # 01:07
    assert daily.midnight_step(datetime(2026, 6, 30, 23, 37, tzinfo=UTC)) is None  # 01:37


def test_make_runs_reconcile_reads_everyone_however_lately_read(
    users, monkeypatch, django_capture_on_commit_callbacks
):
    SyncedUser.objects.update(last_synced_at=timezone.now())
    monkeypatch.setattr(tasks.sync_mailboxes, "apply_async", lambda args, countdown: None)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reconcile_all_mailboxes() == 0  # all read lately
        assert tasks.reconcile_all_mailboxes(everyone=True) == 30
