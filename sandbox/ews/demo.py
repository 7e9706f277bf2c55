"""Demo Kommun on Exchange on-premises: five people with a realistic fortnight around today,
and the distribution group alla@demokommun.se.

PEOPLE is the list the One X sandbox can use for the same people.
"""

from datetime import UTC, date, datetime, time, timedelta

from .calendar import STOCKHOLM

COMPANY = "Demo Kommun"
DOMAIN = "demokommun.se"
GROUP = ("alla@demokommun.se", "Alla på Demo Kommun")
ADDIN_PROPERTY = "cecp-7a774f0c-7a6f-11e0-85ad-07fb4824019b"

# (email, display name, extension, mobile)
PEOPLE = (
    ("asa.lind@demokommun.se", "Åsa Lind", "4101", "+46701234101"),
    ("bjorn.strom@demokommun.se", "Björn Ström", "4102", "+46701234102"),
    ("marta.oberg@demokommun.se", "Märta Öberg", "4103", "+46701234103"),
    ("jorgen.agren@demokommun.se", "Jörgen Ågren", "4104", "+46701234104"),
    ("lina.hall@demokommun.se", "Lina Häll", "4105", "+46701234105"),
)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), STOCKHOLM).astimezone(UTC)


def _workdays(first: date, count: int):
    day = first
    while count:
        if day.weekday() < 5:
            yield day
            count -= 1
        day += timedelta(days=1)


def fortnight(person: int, now: datetime) -> list[dict]:
    """One person's bookings for the week before and the fortnight after now."""
    today = now.astimezone(STOCKHOLM).date()
    monday = today - timedelta(days=today.weekday()) - timedelta(days=7)
    days = list(_workdays(monday, 15))
    offset = person % 3
    bookings = [
        {
            # going on at start, so a demo dashboard has someone busy at once
            "subject": "Pågående möte",
            "start": now - timedelta(minutes=20 + 5 * person),
            "end": now + timedelta(minutes=40 + 10 * person),
            "legacy_free_busy_status": "Busy",
        },
        {
            "subject": "Morgonmöte",
            "start": _at(days[0], 8, 30),
            "end": _at(days[0], 8, 45),
            "legacy_free_busy_status": "Busy",
            "recurrence": {"pattern": "weekdays", "count": 15},
            # the 8th occurrence moved an hour, the 10th cancelled by the organizer
            "exceptions": {
                "8": {"start": _at(days[7], 9, 30), "end": _at(days[7], 9, 45)},
                "10": {"is_cancelled": True, "legacy_free_busy_status": "Free"},
            },
            "categories": ["Internt"],
        },
    ]
    for number, day in enumerate(days):
        if number % 2 == offset % 2:
            bookings.append(
                {
                    "subject": "Lunch",
                    "start": _at(day, 11, 30),
                    "end": _at(day, 12, 30),
                    "legacy_free_busy_status": "Busy",
                    "categories": ["Lunch"],
                }
            )
        if number % 3 == offset:
            bookings.append(
                {
                    "subject": ["Nämndmöte", "Budgetgenomgång", "Medborgardialog"][number % 3],
                    "start": _at(day, 13 + person % 2),
                    "end": _at(day, 14 + person % 2, 30),
                    "legacy_free_busy_status": "Busy",
                    "location": "Sammanträdesrum Ekbacken",
                    "my_response_type": "Accept",
                    "organizer": PEOPLE[(person + 1) % len(PEOPLE)][0],
                }
            )
    bookings += [
        {
            "subject": "Semester",
            "start": days[8 + person % 3].isoformat(),
            "end": (days[8 + person % 3] + timedelta(days=1)).isoformat(),
            "is_all_day": True,
            "legacy_free_busy_status": "OOF",
        },
        {
            "subject": "Tandläkare",
            "start": _at(days[6], 15),
            "end": _at(days[6], 16),
            "legacy_free_busy_status": "OOF",
            "sensitivity": "Private",
        },
        {
            "subject": "Studiebesök, kanske",
            "start": _at(days[9], 9),
            "end": _at(days[9], 11),
            "legacy_free_busy_status": "Tentative",
            "my_response_type": "Tentative",
            "organizer": PEOPLE[(person + 2) % len(PEOPLE)][0],
        },
        {
            "subject": "Arbetar hemifrån",
            "start": _at(days[11], 8),
            "end": _at(days[11], 17),
            "legacy_free_busy_status": "WorkingElsewhere",
            "extended": {ADDIN_PROPERTY: '{"mss":"hemma"}'},
        },
    ]
    return bookings


def load(sandbox, now: datetime | None = None):
    now = now or datetime.now(UTC)
    for number, (email, name, extension, mobile) in enumerate(PEOPLE):
        sandbox.add_mailbox(email, name, extension, mobile)
        for booking in fortnight(number, now):
            sandbox.add_booking(email, booking)
    sandbox.add_group(GROUP[0], GROUP[1], [email for email, *_ in PEOPLE])


def load_bench(sandbox, count: int, now: datetime | None = None):
    """`count` mailboxes for benchmarks, each with one of the demo people's fortnights."""
    now = now or datetime.now(UTC)
    for number in range(count):
        email = f"bench-{number:04}@bench.example.se"
        sandbox.add_mailbox(email, f"Bench {number:04}")
        for booking in fortnight(number % len(PEOPLE), now):
            sandbox.add_booking(email, booking)
