"""A chunk run costs a bounded number of SQL statements, not a few per mailbox: one claim, one
read of the stored bookings, one bulk write of them, one update of the users' states, one
insert of activities and one release, whatever the chunk's size."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calendarsync import sync
from calendarsync.models import Activity, Booking, SyncedUser
from calendarsync.providers.memory import InMemoryCalendar
from onex.operations import InMemoryAbsences
from tests.calendar_factory import NOW, at, item
from tests.test_bulk_sync import make_users

ABSENCES = 3  # per mailbox


def calendar_for(users):
    calendar = InMemoryCalendar()
    for user in users:
        calendar.put(
            user.email, *(item(f"{user.email}-{n}", at(2 + n, 9)) for n in range(ABSENCES))
        )
    return calendar


def run_chunks(users, calendar, onex, now):
    """Run `users` in chunks of 20 as the tasks do; the statements of each chunk run."""
    counts, outcomes = [], {}
    for start in range(0, len(users), 20):
        ids = [user.pk for user in users[start : start + 20]]
        with CaptureQueriesContext(connection) as queries:
            outcomes.update(sync.sync_mailboxes(ids, provider=calendar, writer=onex, now=now))
        counts.append(len(queries))
    return counts, outcomes


def statements(counts):
    return ", ".join(str(count) for count in counts)


@pytest.mark.parametrize("mailboxes", [20, 40])
def test_a_chunk_costs_at_most_one_query_per_mailbox_whatever_its_history(
    integration, mailboxes, capsys
):
    users = make_users(integration, mailboxes)
    calendar, onex = calendar_for(users), InMemoryAbsences()

    first, outcomes = run_chunks(users, calendar, onex, NOW)
    assert {o.status for o in outcomes.values()} == {"ok"}
    assert {o.written for o in outcomes.values()} == {ABSENCES}
    assert Booking.objects.count() == mailboxes * ABSENCES == len(onex.entries)
    assert Activity.objects.filter(event="synced").count() == mailboxes

    unchanged, outcomes = run_chunks(users, calendar, onex, NOW + timedelta(minutes=1))
    assert {(o.status, o.written, o.deleted) for o in outcomes.values()} == {("ok", 0, 0)}
    assert set(SyncedUser.objects.values_list("last_synced_at", flat=True)) == {
        NOW + timedelta(minutes=1)
    }

    # One mailbox per chunk changed: a booking moved, another gone.
    for chunk_start in range(0, mailboxes, 20):
        email = users[chunk_start].email
        calendar.put(email, item(f"{email}-0", at(2, 14)))
        calendar.remove(email, f"{email}-1")
    changed, outcomes = run_chunks(users, calendar, onex, NOW + timedelta(minutes=2))
    moved = {users[n].pk for n in range(0, mailboxes, 20)}
    assert {pk: (o.written, o.deleted) for pk, o in outcomes.items() if pk in moved} == {
        pk: (1, 1) for pk in moved
    }
    assert Booking.objects.count() == mailboxes * ABSENCES - len(moved) == len(onex.entries)
    assert not SyncedUser.objects.filter(sync_started_at__isnull=False).exists()

    with capsys.disabled():
        print(
            f"\n{mailboxes} mailboxes, statements per 20-mailbox chunk: first sync "
            f"{statements(first)}; unchanged {statements(unchanged)}; one changed "
            f"{statements(changed)}"
        )
    for counts in (first, unchanged, changed):
        assert max(counts) <= 20  # ≤ 1 query per mailbox
        # Bounded per chunk: every chunk of a larger run costs what the one chunk costs.
        assert len(set(counts)) == 1


def test_a_larger_chunk_costs_the_same_statements(integration):
    """A resync in chunks of several bulk reads (sync.chunks_of(reads=…)) fills One X's
    batches better and still costs one statement per step."""
    users = make_users(integration, 80)
    calendar, onex = calendar_for(users), InMemoryAbsences()
    small, _ = run_chunks(users[:20], calendar, onex, NOW)
    with CaptureQueriesContext(connection) as queries:
        outcomes = sync.sync_mailboxes(
            [u.pk for u in users[20:]], provider=calendar, writer=onex, now=NOW
        )
    assert {(o.status, o.written) for o in outcomes.values()} == {("ok", ABSENCES)}
    assert len(queries) == small[0]
