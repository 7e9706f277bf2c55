"""manage.py preview_absences: Graph calendarView JSON → the planned absences, as JSON."""

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

EVENTS = Path(__file__).parent / "data" / "graph_calendar_view.json"
NOW = "2026-03-23T08:00"  # Monday of the week before the spring DST change


def preview(*args):
    out = StringIO()
    call_command("preview_absences", "--events", str(EVENTS), "--now", NOW, *args, stdout=out)
    return json.loads(out.getvalue())


def default(start, end, reason, return_at=None):
    return {
        "start": start,
        "end": end,
        "reason": reason,
        "forwarding": "info",
        "open_diversion": False,
        "return_at": return_at or end,
        "note": None,
        "decided_by": "default_template",
        "why": [],
    }


# The fixture holds busy, oof, tentative, free, workingElsewhere, private, confidential,
# cancelled, declined, all-day (one crossing the DST night), a series master with occurrences
# (one moved past the DST change, one deleted) and bookings at and beyond the window's edges.
DEFAULT_TEMPLATE_PLAN = [
    default("2026-03-23T07:30:00+01:00", "2026-03-23T08:30:00+01:00", "MOTE"),  # crosses now
    default("2026-03-23T10:00:00+01:00", "2026-03-23T11:00:00+01:00", "MOTE"),
    default(
        "2026-03-24T12:00:00+01:00",
        "2026-03-24T13:00:00+01:00",
        "MOTE",
        return_at="2026-03-24T17:00:00+01:00",  # straight into out of office
    ),
    default("2026-03-24T13:00:00+01:00", "2026-03-24T17:00:00+01:00", "FRANVARANDE"),
    default("2026-03-25T09:00:00+01:00", "2026-03-25T09:15:00+01:00", "MOTE"),
    default("2026-03-26T09:00:00+01:00", "2026-03-26T09:15:00+01:00", "MOTE"),
    default(
        "2026-03-27T00:00:00+01:00",
        "2026-03-28T00:00:00+01:00",
        "FRANVARANDE",
        return_at="2026-03-30T00:00:00+02:00",  # the weekend follows
    ),
    default("2026-03-28T00:00:00+01:00", "2026-03-30T00:00:00+02:00", "FRANVARANDE"),
    default("2026-03-31T09:30:00+02:00", "2026-03-31T09:45:00+02:00", "MOTE"),  # moved
    default("2026-04-01T09:00:00+02:00", "2026-04-01T09:15:00+02:00", "MOTE"),
]


def test_it_prints_exactly_the_absences_the_default_template_calls_for():
    assert preview() == DEFAULT_TEMPLATE_PLAN


def test_it_reads_settings_and_rules_given_as_settings_on_the_command_line(tmp_path):
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(
        json.dumps(
            {
                "days_ahead": 2,
                "all_meetings_private": False,
                "has_open_diversion": False,
                "rules": [
                    {
                        "id": 12,
                        "show_as": ["tentative", "busy"],
                        "weekdays": [0, 1, 2, 3, 4],
                        "time_from": "07:00",
                        "time_to": "12:00",
                        "action": "divert",
                        "reason": "MOTE",
                        "open_diversion": True,
                    }
                ],
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "preview_absences", "--events", str(EVENTS)]
        + ["--settings", str(settings_file), "--now", NOW],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    planned = json.loads(result.stdout)
    summary = [(a["start"][:16], a["forwarding"], a["decided_by"], a["note"]) for a in planned]
    assert summary == [
        ("2026-03-23T07:30", "divert", "rule:12", None),
        ("2026-03-23T10:00", "divert", "rule:12", "Kundmöte Volvo"),
        ("2026-03-24T09:00", "divert", "rule:12", None),  # tentative, in office hours
        ("2026-03-24T12:00", "info", "default_template", None),  # busy after 12:00
        ("2026-03-24T13:00", "info", "default_template", None),
    ]
    assert planned[0]["open_diversion"] is False
    assert planned[0]["why"] == ["no_open_diversion_service"]


def test_it_accepts_a_bare_list_of_events(tmp_path):
    events = json.loads(EVENTS.read_text())["value"]
    bare = tmp_path / "events.json"
    bare.write_text(json.dumps(events[:2]))
    out = StringIO()
    call_command("preview_absences", "--events", str(bare), "--now", NOW, stdout=out)
    assert json.loads(out.getvalue()) == DEFAULT_TEMPLATE_PLAN[:2]


def test_it_downgrades_diversions_without_the_service(tmp_path):
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(
        json.dumps(
            {
                "has_diversion": False,
                "rules": [{"show_as": ["busy"], "action": "divert", "reason": "MOTE"}],
            }
        )
    )
    planned = preview("--settings-file", str(settings_file))
    assert planned[1]["forwarding"] == "info"
    assert planned[1]["why"] == ["no_diversion_service"]
    assert planned[1]["decided_by"] == "rule:new-1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"days_ahead": 99}', "days_ahead"),
        ('{"colour": "red"}', "unknown settings: colour"),
        ('{"rules": [{"action": "divert"}]}', '"reason" is required'),
        ('{"rules": [{"action": "divert", "reason": "M", "time_from": "7"}]}', "HH:MM"),
        ('{"rules": [{"action": "skip", "show_as": ["bored"]}]}', "bored"),
    ],
)
def test_it_explains_bad_settings(tmp_path, content, message):
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(content)
    with pytest.raises(CommandError, match=message):
        preview("--settings-file", str(settings_file))


def test_it_explains_a_missing_events_file(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("preview_absences", "--events", str(tmp_path / "nope.json"))
