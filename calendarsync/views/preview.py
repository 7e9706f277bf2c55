"""The rule preview's logic: fetch one user's coming bookings, plan them twice, line them up.

It calls the same code the sync runs — the integration's provider and the sync core's
planning — so what the admin sees is what the sync would write.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from onex.models import AbsenceReason

from .. import rule_text
from ..providers.base import ProviderError

log = logging.getLogger(__name__)


@dataclass
class Row:
    item: object
    saved: list = field(default_factory=list)
    edited: list = field(default_factory=list)

    @property
    def show_as(self):
        return rule_text.SHOW_AS_LABELS.get(self.item.show_as, self.item.show_as)


def fetch_items(integration, synced_user):
    from ..providers import provider_for

    start = timezone.now()
    end = start + timedelta(days=integration.days_ahead)
    provider = provider_for(integration)
    return provider.fetch(
        synced_user.email, start, end, include_subject=not integration.all_meetings_private
    )


def plan(synced_user, items, rules):
    from ..planning import plan_for_synced_user

    return list(plan_for_synced_user(synced_user, items, rules=rules))


def _item_id(planned):
    for name in ("provider_item_id", "item_id"):
        if getattr(planned, name, None):
            return getattr(planned, name)
    item = getattr(planned, "item", None)
    return getattr(item, "provider_item_id", None)


def decided_by_label(decided_by, rules) -> str:
    """ "rule:12" → "Rule 2: Busy → …"; the template, add-in and profile in words."""
    value = str(decided_by or "")
    if value.startswith("rule"):
        ident = value.split(":", 1)[1] if ":" in value else ""
        for number, rule in enumerate(rules or [], start=1):
            if str(rule.pk) == ident or (rule.pk is None and ident in ("", "None", "new")):
                label = _("Rule %(number)d") % {"number": number}
                if rule.pk is None:
                    label = _("Your unsaved rule")
                return f"{label}: {rule_text.describe(rule)}"
        return _("Rule")
    words = {
        "default": _("Default template"),
        "default_template": _("Default template"),
        "template": _("Default template"),
        "addin": _("Outlook plugin, this booking"),
        "add-in": _("Outlook plugin, this booking"),
        "profile": _("The user's own default (Outlook plugin)"),
    }
    return str(words.get(value.split(":", 1)[0], value))


def _entry(planned, rules, reasons):
    divert = getattr(planned, "forwarding", "") == "divert" or getattr(planned, "divert", False)
    code = getattr(planned, "reason_code", "")
    return {
        "start": planned.start,
        "end": planned.end,
        "divert": divert,
        "open_diversion": getattr(planned, "open_diversion", False),
        "reason": reasons.get(code, code),
        "return_at": getattr(planned, "return_at", None),
        "note": getattr(planned, "note", None),
        "decided_by": decided_by_label(getattr(planned, "decided_by", ""), rules),
        "downgraded": getattr(planned, "downgraded_reason", "")
        or getattr(planned, "downgrade_reason", ""),
    }


def compare(integration, synced_user, saved_rules, edited_rules=None) -> dict:
    """Context for the preview fragment: rows of booking → entry (saved, edited)."""
    try:
        items = sorted(fetch_items(integration, synced_user), key=lambda item: item.start)
    except ProviderError as exc:
        return {"preview_error": _("The calendar could not be read: %(error)s") % {"error": exc}}
    except (ImportError, LookupError, NotImplementedError) as exc:
        log.warning("preview unavailable for integration %s: %s", integration.pk, exc)
        return {"preview_error": _("The preview is not available for this integration yet.")}
    reasons = {
        reason.code: reason.label
        for reason in AbsenceReason.objects.filter(company_id=integration.company_id)
    }
    rows = {item.provider_item_id + item.start.isoformat(): Row(item) for item in items}
    by_id = {}
    for key, row in rows.items():
        by_id.setdefault(row.item.provider_item_id, []).append(key)

    def place(planned_list, rules, column):
        for planned in planned_list:
            entry = _entry(planned, rules, reasons)
            keys = by_id.get(_item_id(planned), [])
            key = next(
                (k for k in keys if rows[k].item.start == planned.start), keys[0] if keys else None
            )
            if key is not None:
                getattr(rows[key], column).append(entry)

    place(plan(synced_user, items, saved_rules), saved_rules, "saved")
    result = {"previewed": True, "rows": list(rows.values()), "has_edit": edited_rules is not None}
    if edited_rules is not None:
        place(plan(synced_user, items, edited_rules), edited_rules, "edited")
        result["changed_count"] = sum(
            1
            for row in result["rows"]
            if [e["decided_by"] for e in row.saved] != [e["decided_by"] for e in row.edited]
            or [(e["divert"], e["reason"]) for e in row.saved]
            != [(e["divert"], e["reason"]) for e in row.edited]
        )
    return result
