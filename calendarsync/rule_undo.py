"""Ångra for a deleted rule: a snapshot in the admin's own session, for a few minutes.

The snapshot holds every field of the rule and its place in the list, keyed by a random token.
It lives in the session (not the database), so a token is worth nothing in another browser,
and it is bound to its integration, so it cannot restore a rule somewhere else.
"""

import secrets
from datetime import time

from django.db import transaction
from django.utils import timezone

from .models import SyncRule

SESSION_KEY = "rule_undo"
UNDO_SECONDS = 10 * 60
FIELDS = (
    "show_as",
    "all_day",
    "categories",
    "min_duration_minutes",
    "weekdays",
    "subject_keywords",
    "action",
    "reason_id",
    "open_diversion",
)
TIME_FIELDS = ("time_from", "time_to")


def remember(session, rule: SyncRule, number: int, *, now=None) -> str:
    """Keep `rule` (number `number` in its list, from 1) for Ångra; returns the token."""
    snapshots = _live(session, now)
    token = secrets.token_urlsafe(16)
    fields = {name: getattr(rule, name) for name in FIELDS}
    for name in TIME_FIELDS:
        value = getattr(rule, name)
        fields[name] = value.isoformat() if value is not None else None
    snapshots[token] = {
        "integration": rule.integration_id,
        "number": number,
        "expires": _now(now) + UNDO_SECONDS,
        "fields": fields,
    }
    session[SESSION_KEY] = snapshots
    return token


def pending(session, integration, *, now=None) -> list[tuple[str, SyncRule, int]]:
    """(token, the deleted rule unsaved, its number) of `integration`, newest first."""
    snapshots = _live(session, now)
    found = [
        (token, _unsaved(integration, snapshot), snapshot["number"])
        for token, snapshot in snapshots.items()
        if snapshot["integration"] == integration.pk
    ]
    return list(reversed(found))


def take(session, integration, token: str, *, now=None) -> dict | None:
    """The snapshot behind `token` for `integration`, removed from the session (used once)."""
    snapshots = _live(session, now)
    snapshot = snapshots.get(token)
    if snapshot is None or snapshot["integration"] != integration.pk:
        return None
    del snapshots[token]
    session[SESSION_KEY] = snapshots
    return snapshot


def restore(integration, snapshot: dict) -> SyncRule | None:
    """Recreate the rule at its old number (or last, if the list got shorter). None when its
    absence reason is gone, since a rule that syncs needs one."""
    rule = _unsaved(integration, snapshot)
    if (
        rule.reason_id is not None
        and not integration.company.absence_reasons.filter(pk=rule.reason_id).exists()
    ):
        return None
    with transaction.atomic():
        ordered = list(integration.rules.select_for_update().order_by("position", "id"))
        rule.position = 0
        rule.save()
        ordered.insert(min(snapshot["number"] - 1, len(ordered)), rule)
        for position, row in enumerate(ordered, start=1):
            row.position = position
        SyncRule.objects.bulk_update(ordered, ["position"])
    return rule


def _unsaved(integration, snapshot: dict) -> SyncRule:
    fields = dict(snapshot["fields"])
    for name in TIME_FIELDS:
        fields[name] = time.fromisoformat(fields[name]) if fields[name] else None
    return SyncRule(integration=integration, **fields)


def _live(session, now) -> dict:
    """The session's snapshots that have not expired (expired ones are dropped)."""
    snapshots = session.get(SESSION_KEY) or {}
    current = _now(now)
    live = {token: s for token, s in snapshots.items() if s["expires"] > current}
    if len(live) != len(snapshots):
        session[SESSION_KEY] = live
    return live


def _now(now) -> float:
    return (now or timezone.now()).timestamp()
