"""Database rows → the rules engine's inputs, and the plan for one synced user.

`plan_for_synced_user` is what the sync and the UI's rule preview call; `settings_from_json` is
what `manage.py preview_absences --settings` reads (format in the README).
"""

from dataclasses import replace
from datetime import datetime, time, timedelta

from django.conf import settings as django_settings
from django.utils import timezone

from onex.models import AbsenceReason

from . import personal_rules, rules
from .items import CalendarItem, ShowAs

PREVIEW_SUBSCRIPTION_ID = "preview"


def return_gap() -> timedelta:
    """Gaps up to this long still chain return times (setting MSS_RETURN_GAP_MINUTES, 0)."""
    return timedelta(minutes=django_settings.MSS_RETURN_GAP_MINUTES)


def rule_from_model(row, index: int = 0) -> rules.Rule:
    """A SyncRule row (saved or not) → engine rule. Unsaved rules are named `new-<n>`."""
    return rules.Rule(
        id=row.pk if row.pk is not None else f"new-{index + 1}",
        action=rules.Action(row.action),
        reason_code=row.reason.code if row.reason_id else None,
        open_diversion=row.open_diversion,
        show_as=frozenset(row.show_as or ()),
        all_day=row.all_day,
        categories=frozenset(row.categories or ()),
        min_duration=(
            timedelta(minutes=row.min_duration_minutes)
            if row.min_duration_minutes is not None
            else None
        ),
        weekdays=frozenset(int(day) for day in row.weekdays or ()),
        time_from=row.time_from,
        time_to=row.time_to,
        subject_keywords=tuple(row.subject_keywords or ()),
    )


def integration_settings(integration, *, rules_override=None) -> rules.PlanSettings:
    """The engine settings all mailboxes of `integration` share: its options, rules and the
    company's reasons. `settings_for` adds one mailbox's own; a bulk sync reads these once."""
    if rules_override is None:
        rows = integration.rules.select_related("reason").order_by("position", "id")
    else:
        rows = rules_override
    engine_rules = tuple(
        row if isinstance(row, rules.Rule) else rule_from_model(row, index)
        for index, row in enumerate(rows)
    )
    reasons = dict(
        AbsenceReason.objects.filter(company_id=integration.company_id, active=True).values_list(
            "code", "diversion_allowed"
        )
    )
    return rules.PlanSettings(
        subscription_id="",  # per mailbox: settings_for
        days_ahead=integration.days_ahead,
        plugin_enabled=integration.plugin_enabled,
        plugin_defaults_only=integration.plugin_defaults_only,
        all_meetings_private=integration.all_meetings_private,
        rules=engine_rules,
        # Before the first directory import a company has no reasons: trust the codes then.
        reasons=reasons or None,
        return_gap=return_gap(),
    )


def settings_for(synced_user, *, rules_override=None, shared=None) -> rules.PlanSettings:
    """The engine settings of one mailbox: its integration, rules, profile and subscription.
    `shared` (integration_settings of its integration) saves reading those again."""
    if shared is None:
        shared = integration_settings(synced_user.integration, rules_override=rules_override)
    subscription = synced_user.subscription
    return replace(
        shared,
        subscription_id=subscription.onex_id,
        personal_profile=personal_rules.parse(synced_user.personal_profile) or None,
        has_diversion=subscription.has_diversion,
        has_open_diversion=subscription.has_open_diversion,
    )


def plan_for_synced_user(
    synced_user,
    items: list[CalendarItem],
    *,
    rules=None,
    now: datetime | None = None,
    shared: rules.PlanSettings | None = None,
) -> rules.Plan:
    """The absences `items` call for. `rules` (SyncRule rows, saved or not, in order) replaces
    the integration's saved rules, so the UI can preview an unsaved edit; `shared` is
    settings_for's."""
    return plan_with(settings_for(synced_user, rules_override=rules, shared=shared), items, now)


def plan_with(settings: rules.PlanSettings, items, now: datetime | None = None) -> rules.Plan:
    return rules.plan(items, settings, now or timezone.now())


class SettingsError(ValueError):
    """The preview settings JSON is not in the documented format."""


SETTINGS_KEYS = {
    "days_ahead",
    "plugin_enabled",
    "plugin_defaults_only",
    "all_meetings_private",
    "has_diversion",
    "has_open_diversion",
    "return_gap_minutes",
    "personal_profile",
    "reasons",
    "rules",
}
RULE_KEYS = {
    "id",
    "show_as",
    "all_day",
    "categories",
    "min_duration_minutes",
    "weekdays",
    "time_from",
    "time_to",
    "subject_keywords",
    "action",
    "reason",
    "open_diversion",
}


def settings_from_json(data) -> rules.PlanSettings:
    """Preview settings (README "Dry run: preview_absences") → engine settings.

    Defaults: 14 days, plugin enabled, all meetings private, the diversion services present,
    no rules (the default template decides), reasons unknown (every code trusted).
    """
    if not isinstance(data, dict):
        raise SettingsError("settings must be a JSON object")
    unknown = set(data) - SETTINGS_KEYS
    if unknown:
        raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
    days_ahead = data.get("days_ahead", 14)
    if not isinstance(days_ahead, int) or not 1 <= days_ahead <= 60:
        raise SettingsError("days_ahead must be a whole number from 1 to 60")
    reasons = data.get("reasons")
    if reasons is not None:
        if not isinstance(reasons, dict):
            raise SettingsError('reasons must be an object: {"MOTE": {"diversion_allowed": true}}')
        reasons = {
            str(code): bool((value or {}).get("diversion_allowed", True))
            if isinstance(value, dict)
            else bool(value)
            for code, value in reasons.items()
        }
    profile = data.get("personal_profile")
    if profile and not personal_rules.parse(profile):
        raise SettingsError(
            'personal_profile needs "forwarding": "info", "divert" or "skip"'
            ' (for both, or under "busy" and "oof")'
        )
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise SettingsError("rules must be a list")
    return rules.PlanSettings(
        subscription_id=PREVIEW_SUBSCRIPTION_ID,
        days_ahead=days_ahead,
        plugin_enabled=bool(data.get("plugin_enabled", True)),
        plugin_defaults_only=bool(data.get("plugin_defaults_only", False)),
        all_meetings_private=bool(data.get("all_meetings_private", True)),
        rules=tuple(_rule_from_json(raw, index) for index, raw in enumerate(raw_rules)),
        personal_profile=personal_rules.parse(profile) or None,
        has_diversion=bool(data.get("has_diversion", True)),
        has_open_diversion=bool(data.get("has_open_diversion", True)),
        reasons=reasons,
        return_gap=timedelta(minutes=_number(data, "return_gap_minutes", 0)),
    )


def _rule_from_json(raw, index: int) -> rules.Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise SettingsError(f"{where} must be an object")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise SettingsError(f"{where}: unknown keys: {', '.join(sorted(unknown))}")
    try:
        action = rules.Action(raw.get("action", "info"))
        show_as = frozenset(ShowAs(value) for value in raw.get("show_as") or ())
    except ValueError as exc:
        raise SettingsError(f"{where}: {exc}") from None
    if action != rules.Action.SKIP and not raw.get("reason"):
        raise SettingsError(f'{where}: "reason" is required unless the action is "skip"')
    weekdays = raw.get("weekdays") or []
    if not all(isinstance(day, int) and 0 <= day <= 6 for day in weekdays):
        raise SettingsError(f"{where}: weekdays are numbers 0 (Monday) to 6 (Sunday)")
    minutes = raw.get("min_duration_minutes")
    return rules.Rule(
        id=raw.get("id", f"new-{index + 1}"),
        action=action,
        reason_code=raw.get("reason"),
        open_diversion=bool(raw.get("open_diversion", False)),
        show_as=show_as,
        all_day=raw.get("all_day"),
        categories=frozenset(raw.get("categories") or ()),
        min_duration=timedelta(minutes=_number(raw, "min_duration_minutes", 0))
        if minutes is not None
        else None,
        weekdays=frozenset(weekdays),
        time_from=_clock(raw.get("time_from"), where),
        time_to=_clock(raw.get("time_to"), where),
        subject_keywords=tuple(raw.get("subject_keywords") or ()),
    )


def _number(data: dict, key: str, default: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SettingsError(f"{key} must be a whole number of minutes, 0 or more")
    return value


def _clock(value, where: str) -> time | None:
    if value in (None, ""):
        return None
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise SettingsError(f'{where}: times are "HH:MM", not {value!r}') from None


def absence_as_dict(absence: rules.PlannedAbsence) -> dict:
    """A planned absence as the dry run prints it (times in Europe/Stockholm)."""
    return {
        "start": absence.start.astimezone(rules.STOCKHOLM).isoformat(),
        "end": absence.end.astimezone(rules.STOCKHOLM).isoformat(),
        "reason": absence.reason_code,
        "forwarding": absence.forwarding,
        "open_diversion": absence.open_diversion,
        "return_at": absence.return_at.astimezone(rules.STOCKHOLM).isoformat(),
        "note": absence.note,
        "decided_by": absence.decided_by,
        "why": list(absence.why),
    }
