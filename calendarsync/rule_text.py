"""A sync rule read back as one plain sentence: "Upptagen, vardagar 07–18 → Hänvisning: Möte".

Every word goes through gettext (English msgids); Swedish comes from the catalogue.
"""

from datetime import time

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from .items import ShowAs

SHOW_AS_LABELS = {
    ShowAs.BUSY: gettext_lazy("Busy"),
    ShowAs.OOF: gettext_lazy("Out of office"),
    ShowAs.TENTATIVE: gettext_lazy("Tentative"),
    ShowAs.FREE: gettext_lazy("Free"),
    ShowAs.WORKING_ELSEWHERE: gettext_lazy("Working elsewhere"),
    ShowAs.UNKNOWN: gettext_lazy("Unknown"),
}
SHOW_AS_CHOICES = [(value.value, label) for value, label in SHOW_AS_LABELS.items()]

# Python's weekday numbers: Monday is 0.
WEEKDAY_CHOICES = [
    (0, gettext_lazy("Monday")),
    (1, gettext_lazy("Tuesday")),
    (2, gettext_lazy("Wednesday")),
    (3, gettext_lazy("Thursday")),
    (4, gettext_lazy("Friday")),
    (5, gettext_lazy("Saturday")),
    (6, gettext_lazy("Sunday")),
]
WEEKDAY_SHORT = [
    gettext_lazy("Mon"),
    gettext_lazy("Tue"),
    gettext_lazy("Wed"),
    gettext_lazy("Thu"),
    gettext_lazy("Fri"),
    gettext_lazy("Sat"),
    gettext_lazy("Sun"),
]


def _or(words) -> str:
    words = [str(word) for word in words]
    if len(words) <= 1:
        return "".join(words)
    or_word = _("or")
    return f"{', '.join(words[:-1])} {or_word} {words[-1]}"


def _clock(value) -> str:
    return f"{value:%H}" if value.minute == 0 else f"{value:%H:%M}"


def _span(time_from, time_to) -> str:
    """ "07–18"; "18–24" until midnight; "18–07 (overnight)" into the next morning."""
    if time_to == time.min:
        return f"{_clock(time_from)}–24"
    span = f"{_clock(time_from)}–{_clock(time_to)}"
    if time_to < time_from:
        return _("%(span)s (overnight)") % {"span": span}
    return span


def _weekdays(days) -> str:
    days = sorted(set(days))
    if days == [0, 1, 2, 3, 4]:
        # Not the model field's "weekdays" (veckodagar): Monday to Friday (vardagar).
        return pgettext("Monday to Friday", "weekdays")
    if days == [5, 6]:
        return _("weekends")
    if days == list(range(7)):
        return _("every day")
    return ", ".join(str(WEEKDAY_SHORT[day]) for day in days if 0 <= day <= 6)


def conditions(rule) -> list[str]:
    """The rule's conditions as short phrases, in reading order."""
    parts = []
    if rule.show_as:
        parts.append(_or(SHOW_AS_LABELS.get(value, value) for value in rule.show_as))
    if rule.all_day is True:
        parts.append(_("all-day"))
    elif rule.all_day is False:
        parts.append(_("not all-day"))
    if rule.weekdays or rule.time_from or rule.time_to:
        when = _weekdays(rule.weekdays) if rule.weekdays else ""
        if rule.time_from and rule.time_to:
            span = _span(rule.time_from, rule.time_to)
        elif rule.time_from:
            span = _("from %(time)s") % {"time": _clock(rule.time_from)}
        elif rule.time_to:
            span = _("until %(time)s") % {"time": _clock(rule.time_to)}
        else:
            span = ""
        parts.append(" ".join(part for part in (when, span) if part))
    if rule.min_duration_minutes:
        parts.append(_("at least %(minutes)d min") % {"minutes": rule.min_duration_minutes})
    if rule.categories:
        parts.append(
            ngettext("category %(names)s", "categories %(names)s", len(rule.categories))
            % {"names": _or(f"”{name}”" for name in rule.categories)}
        )
    if rule.subject_keywords:
        parts.append(
            _("subject contains %(words)s")
            % {"words": _or(f"”{word}”" for word in rule.subject_keywords)}
        )
    return parts


def action(rule) -> str:
    """The rule's outcome: "Hänvisning: Möte", "Öppen hänvisning: Möte", "Synkas inte"."""
    if rule.action == rule.Action.SKIP:
        return _("Do not sync")
    label = (
        _("Open diversion")
        if rule.action == rule.Action.DIVERT and rule.open_diversion
        else str(rule.Action(rule.action).label)
    )
    reason = rule.reason.label if rule.reason_id else "?"
    return f"{label}: {reason}"


def describe(rule) -> str:
    """The whole rule as one sentence, e.g. "Busy, weekdays 07–18 → Diversion: Möte"."""
    parts = conditions(rule)
    text = ", ".join(parts) if parts else _("All bookings")
    return f"{text[:1].upper()}{text[1:]} → {action(rule)}"


def never_reached(number: int, earlier_number: int, earlier) -> str:
    """ "Rule 3 is never reached – rule 1 already catches Busy" (rules numbered from 1)."""
    what = ", ".join(conditions(earlier)) or _("all bookings")
    return _("Rule %(rule)s is never reached – rule %(earlier)s already catches %(what)s") % {
        "rule": number,
        "earlier": earlier_number,
        "what": what,
    }
