"""Which admin rules can never decide anything, because an earlier rule always matches first.

`covers(earlier, later)` is deliberately simple and sound: it says yes only when each of the
earlier rule's conditions is implied by one of the later rule's, so every booking the later
rule could match, the earlier one matches too. Rules that only together catch everything (a
Busy rule and an Out of office rule before a "Busy or Out of office" one) are not flagged:
when unsure, say nothing. Pure functions over the engine's `Rule`, no I/O.
"""

from collections.abc import Sequence

from .rules import Rule, day_window

DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES


def unreachable(rules: Sequence[Rule]) -> dict[int, int]:
    """Index of each rule that is never reached → index of the first earlier rule covering it."""
    found = {}
    for later_index, later in enumerate(rules):
        for earlier_index in range(later_index):
            if covers(rules[earlier_index], later):
                found[later_index] = earlier_index
                break
    return found


def covers(earlier: Rule, later: Rule) -> bool:
    """Whether `earlier` matches every booking `later` could match."""
    return (
        _subset(later.show_as, earlier.show_as)
        and (earlier.all_day is None or later.all_day == earlier.all_day)
        # A booking matches a category condition with any one of its categories.
        and _subset(later.categories, earlier.categories)
        and (
            earlier.min_duration is None
            or (later.min_duration is not None and later.min_duration >= earlier.min_duration)
        )
        and _keywords_implied(later.subject_keywords, earlier.subject_keywords)
        and _hours_inside(later, earlier)
    )


def _subset(later: frozenset, earlier: frozenset) -> bool:
    """An empty condition allows anything, so it is implied only by itself being empty."""
    return not earlier or (bool(later) and later <= earlier)


def _keywords_implied(later: tuple[str, ...], earlier: tuple[str, ...]) -> bool:
    # A subject holding a later word holds every part of it: "lunchmöte" implies "lunch".
    if not earlier:
        return True
    return bool(later) and all(any(word in long for word in earlier) for long in later)


def _hours_inside(later: Rule, earlier: Rule) -> bool:
    """Whether every moment of the later rule's office hours lies in the earlier rule's.

    Rules match a booking that overlaps their hours, so a window inside another one can only
    be overlapped by bookings that overlap the larger one too. Hours are compared on a local
    week of minutes (Monday 00:00 = 0), the way the engine reads them.
    """
    earlier_week = _week(earlier)
    if earlier_week is None:
        return True
    later_week = _week(later)
    if later_week is None:
        later_week = [(0, WEEK_MINUTES)]
    return all(
        any(lo <= start and end <= hi for lo, hi in earlier_week) for start, end in later_week
    )


def _week(rule: Rule) -> list[tuple[int, int]] | None:
    """The rule's office hours as merged (start, end) minutes of one week; None: any time."""
    if not rule.weekdays and rule.time_from is None and rule.time_to is None:
        return None
    lo, hi, overnight = day_window(rule.time_from, rule.time_to)
    start = lo.hour * 60 + lo.minute
    end = DAY_MINUTES if hi is None else hi.hour * 60 + hi.minute
    if overnight:
        end += DAY_MINUTES
    spans = []
    for day in sorted(rule.weekdays) if rule.weekdays else range(7):
        first, last = day * DAY_MINUTES + start, day * DAY_MINUTES + end
        if last > WEEK_MINUTES:  # Sunday night runs into Monday morning
            spans.append((0, last - WEEK_MINUTES))
            last = WEEK_MINUTES
        spans.append((first, last))
    merged: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
