"""Which mailboxes the periodic reconcile reads, and when: one full read a day each.

Change notifications carry every change, so the periodic read is only the safety net, and it
costs a Graph request per mailbox. Every sync reads the mailbox's whole window, so
`last_synced_at` is when it was last read in full, whatever triggered it.

- **The leading day** (`leading_day_users`): at midnight Stockholm time a new day moves into
  every window, which only a read brings in (no notification says so). That read is the One X
  audit at 00:00 (calendarsync/audit.py): it reads every mailbox, writes the new day's
  absences, repairs drift, and marks each mailbox it brought in step as read. The reconcile
  then reads the mailboxes the audit did not: beat fires six times, 01:00 … 01:25, and step k
  takes those whose slot (pk % 6) is k; a mailbox read since midnight (by the audit, or a
  change came in) is left out. A second read staggered over the day would add nothing the
  midnight one does not, and would put an idle Graph mailbox above two requests a day.
- **Overdue** (`overdue_users`, hourly): a mailbox not read in full for OVERDUE_AFTER — its
  midnight step did not run (beat was down) or its read failed — is read in the next hour. A
  mailbox whose reads keep failing is tried once a day in its hour slot (pk % 24), besides the
  retries of its own runs, so a broken mailbox does not cost a read every hour.

Lost notifications need no schedule: a `missed` lifecycle event, a subscription Graph removed,
and an EWS subscription resumed without a watermark each resync their mailbox at once
(tasks.act_on_notices, tasks.resubscribe, subscriptions.ensure's `resync`).
"""

from datetime import datetime, time, timedelta

from django.db.models import F, Q
from django.db.models.functions import Coalesce, Mod

from .models import SyncedUser
from .rules import STOCKHOLM

MIDNIGHT_STEPS = 6  # beat: crontab(minute="0-25/5", hour=1), Stockholm time (mss/schedules.py)
MIDNIGHT_STEP_MINUTES = 5
# The steps start an hour after midnight: the audit (00:00) reads every mailbox first, and
# marks those it brought in step read.
MIDNIGHT_STEPS_START = timedelta(hours=1)
OVERDUE_AFTER = timedelta(hours=25)  # a day and the hour of slack a missed midnight step needs
HOUR_SLOTS = 24


def local_midnight(now: datetime) -> datetime:
    """The start of `now`'s day in Stockholm (the day the window's leading edge moved)."""
    return datetime.combine(now.astimezone(STOCKHOLM).date(), time.min, tzinfo=STOCKHOLM)


def midnight_step(now: datetime) -> int | None:
    """Which of the midnight run's steps `now` is in; None outside the run (an operator's
    "run now" then reads every mailbox not read since midnight)."""
    minutes = int((now - local_midnight(now) - MIDNIGHT_STEPS_START).total_seconds() // 60)
    step = minutes // MIDNIGHT_STEP_MINUTES
    return step if 0 <= step < MIDNIGHT_STEPS else None


def _last_read():
    return Coalesce("last_synced_at", "created_at")


def leading_day_users(now: datetime):
    """The mailboxes this step of the midnight run reads: not read since midnight, in the
    step's slot (every slot outside the run)."""
    users = SyncedUser.objects.may_sync().alias(last_read=_last_read())
    users = users.filter(last_read__lt=local_midnight(now))
    step = midnight_step(now)
    if step is not None:
        users = users.alias(slot=Mod(F("pk"), MIDNIGHT_STEPS)).filter(slot=step)
    return users


def overdue_users(now: datetime):
    """The mailboxes not read in full for OVERDUE_AFTER (new ones count from when they were
    added); failing ones only in their hour slot."""
    hour = now.astimezone(STOCKHOLM).hour
    return (
        SyncedUser.objects.may_sync()
        .alias(last_read=_last_read(), slot=Mod(F("pk"), HOUR_SLOTS))
        .filter(last_read__lt=now - OVERDUE_AFTER)
        .filter(~Q(state=SyncedUser.State.ERROR) | Q(slot=hour))
    )
