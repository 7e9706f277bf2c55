"""Dry run: which One X absences would these Graph events become? Nothing is written."""

import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from calendarsync import planning
from calendarsync.providers.graph.mapping import items_from_graph
from calendarsync.rules import STOCKHOLM


class Command(BaseCommand):
    help = (
        "Print, as JSON, the One X absences a Graph calendar-view response (JSON) would become. "
        "Settings and rules: see the README, 'Dry run: preview_absences'."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--events", required=True, help="a Graph calendar-view response or a list of events"
        )
        # `manage.py` passes `--settings FILE` on as --settings-file (see manage.py).
        parser.add_argument(
            "--settings-file",
            metavar="FILE",
            help="integration settings and rules as JSON; on the command line: --settings FILE",
        )
        parser.add_argument(
            "--now", help="the sync's 'now', ISO 8601 (without offset: Stockholm time)"
        )

    def handle(self, *args, events, settings_file=None, now=None, **options):
        raw_events = _read_json(events, "--events")
        if isinstance(raw_events, dict):
            raw_events = raw_events.get("value")
        if not isinstance(raw_events, list):
            raise CommandError('--events must hold a list of events or {"value": [...]}')
        try:
            plan_settings = planning.settings_from_json(
                _read_json(settings_file, "--settings") if settings_file else {}
            )
        except planning.SettingsError as exc:
            raise CommandError(f"--settings: {exc}") from None
        items = items_from_graph(
            [event for event in raw_events if isinstance(event, dict)],
            include_subject=not plan_settings.all_meetings_private,
        )
        plan = planning.plan_with(plan_settings, items, _parse_now(now))
        output = [planning.absence_as_dict(absence) for absence in plan.absences]
        self.stdout.write(json.dumps(output, indent=2, ensure_ascii=False))


def _read_json(path: str, option: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise CommandError(f"{option}: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CommandError(f"{option}: {path} is not valid JSON: {exc}") from None


def _parse_now(value: str | None) -> datetime:
    if not value:
        return timezone.now()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--now: not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=STOCKHOLM)
