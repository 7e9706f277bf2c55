"""An Activity as the log shows it, in the viewer's language: who, what, what it concerns and
what changed ("antal dagar 14 → 20", field names as the models' labels)."""

from dataclasses import dataclass

from django.core.exceptions import FieldDoesNotExist
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from .actors import ActorKind
from .models import Activity, Integration, SyncRule
from .rule_text import SHOW_AS_LABELS, WEEKDAY_SHORT

EMPTY = "—"
# Whose labels a change's field names are.
FIELD_MODELS = {
    Activity.Subject.SETTING: Integration,
    Activity.Subject.INTEGRATION: Integration,
    Activity.Subject.RULE: SyncRule,
}


@dataclass(frozen=True)
class Entry:
    activity: Activity
    actor: str
    text: str
    concerns: str
    changes: list[str]


def present(activity: Activity) -> Entry:
    return Entry(
        activity=activity,
        actor=actor_text(activity),
        text=activity.message,
        concerns=concerns_text(activity),
        changes=change_lines(activity),
    )


def actor_text(activity: Activity) -> str:
    kind = activity.actor_kind
    if not kind:  # written before the log said who
        return ""
    if kind == ActorKind.ADMIN:
        return activity.actor_label or str(ActorKind.ADMIN.label)
    if kind == ActorKind.STAFF:
        if activity.actor_label:
            return _("Telenor support (%(email)s)") % {"email": activity.actor_label}
        return str(ActorKind.STAFF.label)
    try:
        return str(ActorKind(kind).label)
    except ValueError:
        return kind


def concerns_text(activity: Activity) -> str:
    """'user anna@demo.se', 'rule Busy → Absence info: Meeting'; empty when the text says it."""
    label = activity.subject_label
    if not label and activity.synced_user_id and activity.synced_user:
        label = activity.synced_user.email
    if not label or not activity.subject:
        return label
    return f"{activity.get_subject_display()} {label}"


def field_label(activity: Activity, field: str) -> str:
    model = FIELD_MODELS.get(activity.subject, Integration)
    try:
        return str(model._meta.get_field(field).verbose_name)
    except FieldDoesNotExist:
        return field


def value_text(field: str, value) -> str:
    if value is None or value == "" or value == []:
        return EMPTY
    if field == "show_as":
        return ", ".join(str(SHOW_AS_LABELS.get(v, v)) for v in value)
    if field == "weekdays":
        return ", ".join(str(WEEKDAY_SHORT[v]) if 0 <= v <= 6 else str(v) for v in value)
    if field == "action":
        try:
            return str(SyncRule.Action(value).label)
        except ValueError:
            return str(value)
    if field == "all_day":
        return _("all-day") if value else _("not all-day")
    if isinstance(value, bool):
        return pgettext("switch", "on") if value else pgettext("switch", "off")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def change_lines(activity: Activity) -> list[str]:
    lines = []
    for change in activity.changes or []:
        if not isinstance(change, dict) or "field" not in change:
            continue
        field = change["field"]
        label = field_label(activity, field)
        if change.get("changed"):
            lines.append(_("%(field)s changed") % {"field": label})
            continue
        before, after = (
            value_text(field, change.get("before")),
            value_text(field, change.get("after")),
        )
        lines.append(f"{label} {before} → {after}")
    return lines
