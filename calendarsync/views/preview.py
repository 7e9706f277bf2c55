"""The rule preview's logic: fetch one user's coming bookings, plan them twice, line them up.

It calls the same code the sync runs — the integration's provider and the sync core's
planning — so what the admin sees is what the sync would write.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from onex.models import AbsenceReason

from .. import planning, providers, return_text, rule_text
from .. import rules as engine
from ..providers.base import ProviderError

log = logging.getLogger(__name__)

WHY_TEXT = {
    engine.Why.NO_DIVERSION_SERVICE: gettext_lazy(
        "Shown as absence info: the subscription has no diversion service."
    ),
    engine.Why.REASON_WITHOUT_DIVERSION: gettext_lazy(
        "Shown as absence info: One X allows no diversion with this reason."
    ),
    engine.Why.NO_OPEN_DIVERSION_SERVICE: gettext_lazy(
        "A plain diversion: the subscription has no open diversion service."
    ),
    engine.Why.REASON_UNKNOWN: gettext_lazy(
        "The chosen reason does not exist in One X; the default reason is used."
    ),
}


@dataclass
class Row:
    item: object
    saved: list = field(default_factory=list)
    edited: list = field(default_factory=list)
    saved_skip: str = ""
    edited_skip: str = ""
    changed: bool = False  # the unsaved edit gives this booking another outcome

    @property
    def show_as(self):
        return rule_text.SHOW_AS_LABELS.get(self.item.show_as, self.item.show_as)


def fetch_items(integration, synced_user):
    start = timezone.now()
    end = start + timedelta(days=integration.days_ahead)
    return providers.provider_for(integration).fetch(
        synced_user.email, start, end, include_subject=not integration.all_meetings_private
    )


def decided_by_label(decided_by, rules) -> str:
    """ "rule:12" → "Rule 2: Busy → …"; the template, add-in and profile in words."""
    value = str(decided_by or "")
    rule_id = engine.DecidedBy.rule_id(value)
    if rule_id is not None:
        for index, rule in enumerate(rules or []):
            ident = str(rule.pk) if rule.pk is not None else f"new-{index + 1}"
            if ident == rule_id:
                label = (
                    _("Your unsaved rule")
                    if rule.pk is None
                    else _("Rule %(number)d") % {"number": index + 1}
                )
                return f"{label}: {rule_text.describe(rule)}"
        return _("Rule")
    words = {
        engine.DecidedBy.DEFAULT_TEMPLATE: _("Default template"),
        engine.DecidedBy.ADDIN: _("Outlook plugin, this booking"),
        engine.DecidedBy.PROFILE: _("The user's own default (Outlook plugin)"),
    }
    return str(words.get(value, value))


def entry(planned, rules, reasons) -> dict:
    """One planned absence in the preview's words (the cell's and the add-in's)."""
    return {
        "start": planned.start,
        "end": planned.end,
        "divert": planned.forwarding == engine.Action.DIVERT,
        "open_diversion": planned.open_diversion,
        "reason": reasons.get(planned.reason_code, planned.reason_code),
        "return_at": planned.return_at,
        "back": return_text.back_text(planned.return_at, planned.start),
        "note": planned.note,
        "decided_by": decided_by_label(planned.decided_by, rules),
        "why": [str(WHY_TEXT.get(why, why)) for why in planned.why],
    }


def kind_text(entry) -> str:
    if not entry["divert"]:
        return _("Absence info")
    return _("Open diversion") if entry["open_diversion"] else _("Diversion")


def one_line(entry) -> str:
    """ "Diversion: Meeting, back 14:00 — Rule 2: …": the preview cell's words on one line
    (the Outlook add-in's pane shows it)."""
    text = f"{kind_text(entry)}: {entry['reason']}"
    if entry["back"]:
        text += f", {entry['back']}"
    return f"{text} — {entry['decided_by']}"


def skip_text(item, settings, rules) -> str:
    """Why a booking becomes no One X entry: the rule that skips it, or the template."""
    decision = engine.decide(item, settings, item.start.astimezone(UTC), item.end.astimezone(UTC))
    if decision is None:
        if engine.never_synced(item):
            return _("Cancelled or declined: never synced.")
        return _("Default template: not synced.")
    return _("Not synced by %(decided_by)s") % {
        "decided_by": decided_by_label(decision.decided_by, rules)
    }


def _place(rows, plan, settings, rules, reasons, column):
    planned_by_item = {}
    for planned in plan.absences:
        planned_by_item.setdefault(planned.provider_item_id, []).append(planned)
    for row in rows:
        entries = [
            entry(p, rules, reasons) for p in planned_by_item.get(row.item.provider_item_id, [])
        ]
        setattr(row, column, entries)
        if not entries:
            setattr(row, f"{column}_skip", skip_text(row.item, settings, rules))


def compare(integration, synced_user, saved_rules, edited_rules=None) -> dict:
    """Context for the preview fragment: rows of booking → entry (saved, edited)."""
    try:
        items = sorted(fetch_items(integration, synced_user), key=lambda item: item.start)
    except ProviderError as exc:
        return {"preview_error": _("The calendar could not be read: %(error)s") % {"error": exc}}
    except LookupError as exc:
        log.warning("preview unavailable for integration %s: %s", integration.pk, exc)
        return {"preview_error": _("The preview is not available for this integration yet.")}
    reasons = {
        reason.code: reason.label
        for reason in AbsenceReason.objects.filter(company_id=integration.company_id)
    }
    now = timezone.now()
    rows = [Row(item) for item in items]
    saved_settings = planning.settings_for(synced_user, rules_override=saved_rules)
    saved_plan = planning.plan_with(saved_settings, items, now)
    _place(rows, saved_plan, saved_settings, saved_rules, reasons, "saved")
    result = {"previewed": True, "rows": rows, "has_edit": edited_rules is not None}
    if edited_rules is not None:
        edited_settings = planning.settings_for(synced_user, rules_override=edited_rules)
        edited_plan = planning.plan_with(edited_settings, items, now)
        _place(rows, edited_plan, edited_settings, edited_rules, reasons, "edited")
        for row in rows:
            row.changed = _outcome(row.saved) != _outcome(row.edited)
        result["changed_count"] = sum(1 for row in rows if row.changed)
    return result


def _outcome(entries):
    return [(e["divert"], e["open_diversion"], e["reason"], e["return_at"]) for e in entries]
