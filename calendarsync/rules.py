"""The rules engine: a mailbox's calendar items → the One X absences they call for.

Pure functions over dataclasses, no I/O (calendarsync/planning.py turns database rows into the
inputs). Precedence, first that applies wins (shared ARCHITECTURE.md):

1. private or confidential, cancelled, or declined by the owner → never synced;
2. the Outlook add-in's per-booking choice, when the plugin is enabled;
3. the user's personal default profile, when the plugin is enabled and not restricted to the
   default configuration. It applies to bookings shown as Busy or Out of office: it says *how*
   a booking that marks the person away is shown, not that free time becomes an absence;
4. the integration's admin rules, in order;
5. the default template: Busy → Frånvaro "Möte", Out of office → Frånvaro "Frånvarande".

Every planned absence says what decided it (`decided_by`) and why its outcome differs from what
was asked for (`why`), e.g. a diversion downgraded because the subscription lacks the service.

Times in a `PlannedAbsence` are UTC; show them in Europe/Stockholm.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from hashlib import blake2b
from zoneinfo import ZoneInfo

from .items import AddinChoice, CalendarItem, Response, Sensitivity, ShowAs

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOTE_MAX_CHARS = 100
# Office-hours checks walk the booking day by day; a booking longer than this is matched on
# its first days only (the sync window is at most 60 days anyway).
MAX_OFFICE_HOURS_DAYS = 400

# One X reason codes of the default template (the directory import mirrors each company's).
MEETING_REASON = "MOTE"
AWAY_REASON = "FRANVARANDE"


class Action(StrEnum):
    SKIP = "skip"
    INFO = "info"  # Frånvaro
    DIVERT = "divert"  # Hänvisning


class DecidedBy:
    """What decided a planned absence: `decided_by` holds one of these, or `rule:<id>`."""

    ADDIN = "addin"
    PROFILE = "profile"
    DEFAULT_TEMPLATE = "default_template"
    RULE_PREFIX = "rule:"

    @classmethod
    def rule(cls, rule_id) -> str:
        return f"{cls.RULE_PREFIX}{rule_id}"

    @classmethod
    def rule_id(cls, decided_by: str) -> str | None:
        """The rule id in `rule:<id>` (a pk, or `new-<n>` for an unsaved rule), else None."""
        if decided_by.startswith(cls.RULE_PREFIX):
            return decided_by[len(cls.RULE_PREFIX) :]
        return None


class Why(StrEnum):
    """Why an absence differs from what its rule (or the add-in) asked for."""

    NO_DIVERSION_SERVICE = "no_diversion_service"  # subscription lacks Hänvisning
    REASON_WITHOUT_DIVERSION = "reason_without_diversion"  # the reason allows no diversion
    NO_OPEN_DIVERSION_SERVICE = "no_open_diversion_service"  # subscription lacks open diversion
    REASON_UNKNOWN = "reason_unknown"  # the chosen reason does not exist; default reason used


@dataclass(frozen=True, slots=True)
class Rule:
    """An admin rule. Empty conditions match everything.

    weekdays: Python weekday numbers (Monday 0). time_from/time_to: local Stockholm times; a
    booking matches office hours when it overlaps the range on one of the weekdays. A range
    with time_to before time_from runs overnight (18:00–07:00: from 18:00 to 07:00 the next
    morning) and its weekdays are the days it starts on: Friday 18:00–07:00 covers Friday
    evening and Saturday morning, so one window is one evening. categories and
    subject_keywords are compared case-insensitively; a rule with subject keywords never
    matches when subjects are not allowed.
    """

    id: int | str | None
    action: Action
    reason_code: str | None = None
    open_diversion: bool = False
    show_as: frozenset[ShowAs] = frozenset()
    all_day: bool | None = None
    categories: frozenset[str] = frozenset()
    min_duration: timedelta | None = None
    weekdays: frozenset[int] = frozenset()
    time_from: time | None = None
    time_to: time | None = None
    subject_keywords: tuple[str, ...] = ()
    _office_hours: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        # Normalise once here so matching stays a set lookup.
        object.__setattr__(self, "show_as", frozenset(ShowAs(v) for v in self.show_as))
        object.__setattr__(self, "categories", frozenset(c.casefold() for c in self.categories))
        object.__setattr__(
            self, "subject_keywords", tuple(k.casefold() for k in self.subject_keywords if k)
        )
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        has_hours = bool(self.weekdays) or self.time_from is not None or self.time_to is not None
        object.__setattr__(
            self, "_office_hours", day_window(self.time_from, self.time_to) if has_hours else None
        )

    def matches(
        self, item: CalendarItem, start: datetime, end: datetime, subject: str | None
    ) -> bool:
        """Whether every set condition holds; `subject` is None when subjects are not allowed."""
        if self.show_as and item.show_as not in self.show_as:
            return False
        if self.all_day is not None and item.all_day != self.all_day:
            return False
        if self.categories and not any(c.casefold() in self.categories for c in item.categories):
            return False
        if self.min_duration is not None and end - start < self.min_duration:
            return False
        if self.subject_keywords:
            subject = (subject or "").casefold()
            if not subject or not any(word in subject for word in self.subject_keywords):
                return False
        if self._office_hours is not None:
            return self._overlaps_office_hours(start, end)
        return True

    def _overlaps_office_hours(self, start: datetime, end: datetime) -> bool:
        lo, hi, overnight = self._office_hours
        first = start.astimezone(STOCKHOLM).date()
        # An overnight window that began the evening before may hold the booking's start.
        day = first - timedelta(days=1) if overnight else first
        last = min(
            (end - timedelta(microseconds=1)).astimezone(STOCKHOLM).date(),
            first + timedelta(days=MAX_OFFICE_HOURS_DAYS),
        )
        while day <= last:
            if not self.weekdays or day.weekday() in self.weekdays:
                window_end = _local(day + timedelta(days=1), hi) if overnight else _local(day, hi)
                if start < window_end and end > _local(day, lo):
                    return True
            day += timedelta(days=1)
        return False


def day_window(time_from: time | None, time_to: time | None) -> tuple[time, time | None, bool]:
    """The office hours a rule's times mean on one start day: (from, to, overnight).

    None as `to` means midnight at the end of the day; `overnight` means `to` is on the next
    day (18:00–07:00). Equal times (refused by the rule form) make a 24-hour window.
    """
    lo = time_from or time.min
    if time_to is None or time_to == time.min:
        return (lo, None, False)
    if time_to > lo:
        return (lo, time_to, False)
    return (lo, time_to, True)  # overnight, e.g. 18:00–07:00


def _local(day: date, at: time | None) -> datetime:
    if at is None:
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=STOCKHOLM)
    return datetime.combine(day, at, tzinfo=STOCKHOLM)


DEFAULT_TEMPLATE: tuple[Rule, ...] = (
    Rule(id=None, action=Action.INFO, reason_code=MEETING_REASON, show_as=frozenset({ShowAs.BUSY})),
    Rule(id=None, action=Action.INFO, reason_code=AWAY_REASON, show_as=frozenset({ShowAs.OOF})),
)


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """Everything the engine needs to know about one mailbox, its integration and One X."""

    subscription_id: str  # the One X subscription the absences are written to
    days_ahead: int = 14
    plugin_enabled: bool = True
    plugin_defaults_only: bool = False
    all_meetings_private: bool = True
    rules: tuple[Rule, ...] = ()
    # The user's own rules (calendarsync/personal_rules.py): show-as → their choice.
    personal_profile: Mapping[ShowAs, AddinChoice] | None = None
    has_diversion: bool = False
    has_open_diversion: bool = False
    # Reason code → diversion allowed. None when unknown: every code is trusted as given.
    reasons: Mapping[str, bool] | None = None
    return_gap: timedelta = timedelta(0)  # gaps up to this long still chain return times


@dataclass(frozen=True, slots=True)
class PlannedAbsence:
    external_id: str
    provider_item_id: str
    series_master_id: str | None
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    all_day: bool
    reason_code: str
    forwarding: str  # "info" | "divert"
    open_diversion: bool
    return_at: datetime  # UTC, never before `end`
    note: str | None
    decided_by: str
    why: tuple[str, ...] = ()

    @property
    def divert(self) -> bool:
        return self.forwarding == Action.DIVERT


@dataclass(frozen=True, slots=True)
class Plan:
    subscription_id: str
    window_start: datetime
    window_end: datetime
    absences: tuple[PlannedAbsence, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason_code: str | None
    open_diversion: bool
    decided_by: str


def external_id(provider_item_id: str) -> str:
    """One X key for a booking or occurrence: the same on every run, 36 chars of [a-z0-9-].

    Providers give each occurrence its own id, stable when the occurrence is moved.
    """
    return "mss-" + blake2b(provider_item_id.encode(), digest_size=16).hexdigest()


def never_synced(item: CalendarItem) -> bool:
    return (
        item.sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL)
        or item.cancelled
        or item.my_response == Response.DECLINED
    )


def decide(
    item: CalendarItem, settings: PlanSettings, start: datetime, end: datetime
) -> Decision | None:
    """What the first applicable source of precedence says about `item` (None: no absence)."""
    if never_synced(item):
        return None
    if settings.plugin_enabled and item.addin_choice is not None:
        return _from_choice(item.addin_choice, DecidedBy.ADDIN)
    personal = (settings.personal_profile or {}).get(item.show_as)
    if settings.plugin_enabled and not settings.plugin_defaults_only and personal is not None:
        return _from_choice(personal, DecidedBy.PROFILE)
    subject = None if settings.all_meetings_private else item.subject
    for rule in settings.rules:
        if rule.matches(item, start, end, subject):
            return Decision(rule.action, rule.reason_code, rule.open_diversion, _rule_name(rule))
    for rule in DEFAULT_TEMPLATE:
        if rule.matches(item, start, end, None):
            return Decision(rule.action, rule.reason_code, False, DecidedBy.DEFAULT_TEMPLATE)
    return None


def _rule_name(rule: Rule) -> str:
    return DecidedBy.rule(rule.id if rule.id is not None else "new")


def _from_choice(choice: AddinChoice, decided_by: str) -> Decision:
    try:
        action = Action(choice.forwarding)
    except ValueError:
        action = Action.INFO
    return Decision(action, choice.reason_code, choice.open_diversion, decided_by)


def default_reason(item: CalendarItem) -> str:
    return AWAY_REASON if item.show_as == ShowAs.OOF else MEETING_REASON


def plan(items: Iterable[CalendarItem], settings: PlanSettings, now: datetime) -> Plan:
    """The absences `items` call for within [now, now + days_ahead).

    Bookings crossing the window's edges are kept whole.
    """
    window_start = now.astimezone(UTC)
    window_end = window_start + timedelta(days=settings.days_ahead)
    allow_subject = not settings.all_meetings_private
    reasons = settings.reasons
    absences = []
    for item in items:
        start = item.start.astimezone(UTC)
        end = item.end.astimezone(UTC)
        if end <= start or end <= window_start or start >= window_end:
            continue
        decision = decide(item, settings, start, end)
        if decision is None or decision.action == Action.SKIP:
            continue
        why = []
        reason = decision.reason_code or default_reason(item)
        if reasons is not None and reason not in reasons:
            why.append(Why.REASON_UNKNOWN)
            reason = default_reason(item)
        forwarding, open_diversion = _forwarding(decision, reason, settings, why)
        note = None
        if allow_subject and item.subject:
            note = item.subject.strip()[:NOTE_MAX_CHARS] or None
        absences.append(
            PlannedAbsence(
                external_id=external_id(item.provider_item_id),
                provider_item_id=item.provider_item_id,
                series_master_id=item.series_master_id,
                start=start,
                end=end,
                all_day=item.all_day,
                reason_code=reason,
                forwarding=forwarding,
                open_diversion=open_diversion,
                return_at=end,
                note=note,
                decided_by=decision.decided_by,
                why=tuple(why),
            )
        )
    return Plan(
        subscription_id=settings.subscription_id,
        window_start=window_start,
        window_end=window_end,
        absences=tuple(chain_return_times(absences, settings.return_gap)),
    )


def _forwarding(
    decision: Decision, reason: str, settings: PlanSettings, why: list
) -> tuple[str, bool]:
    if decision.action != Action.DIVERT:
        return Action.INFO.value, False
    if not settings.has_diversion:
        why.append(Why.NO_DIVERSION_SERVICE)
        return Action.INFO.value, False
    if settings.reasons is not None and not settings.reasons.get(reason, True):
        why.append(Why.REASON_WITHOUT_DIVERSION)
        return Action.INFO.value, False
    if decision.open_diversion and not settings.has_open_diversion:
        why.append(Why.NO_OPEN_DIVERSION_SERVICE)
        return Action.DIVERT.value, False
    return Action.DIVERT.value, decision.open_diversion


def chain_return_times(
    absences: Sequence[PlannedAbsence], gap: timedelta = timedelta(0)
) -> list[PlannedAbsence]:
    """Sorted by start; back-to-back or overlapping absences (gaps up to `gap` included) all
    return at the end of their chain, so a caller hears when the person is really back."""
    ordered = sorted(absences, key=lambda a: (a.start, a.end, a.external_id))
    result: list[PlannedAbsence] = []
    chain: list[PlannedAbsence] = []
    chain_end = None
    for absence in ordered:
        if chain and absence.start > chain_end + gap:
            result.extend(_with_return(chain, chain_end))
            chain = []
        chain.append(absence)
        chain_end = absence.end if len(chain) == 1 else max(chain_end, absence.end)
    if chain:
        result.extend(_with_return(chain, chain_end))
    return result


def _with_return(chain: list[PlannedAbsence], return_at: datetime) -> list[PlannedAbsence]:
    return [
        absence if absence.return_at == return_at else _replace_return(absence, return_at)
        for absence in chain
    ]


def _replace_return(absence: PlannedAbsence, return_at: datetime) -> PlannedAbsence:
    # dataclasses.replace() is several times slower on a hot path of 300,000 items.
    return PlannedAbsence(
        absence.external_id,
        absence.provider_item_id,
        absence.series_master_id,
        absence.start,
        absence.end,
        absence.all_day,
        absence.reason_code,
        absence.forwarding,
        absence.open_diversion,
        return_at,
        absence.note,
        absence.decided_by,
        absence.why,
    )


def choice_from_dict(data) -> AddinChoice | None:
    """An add-in choice or personal profile from its JSON object, leniently; None if unusable.

    Format: {"forwarding": "info"|"divert"|"skip", "reason": "MOTE", "open_diversion": bool}
    ("reasonCode" and "openDiversion" are accepted too). Without a known forwarding value the
    user chose nothing.
    """
    if not isinstance(data, Mapping):
        return None
    forwarding = str(data.get("forwarding") or "").strip().lower()
    if forwarding in ("none", "off", "nosync", "no_sync"):
        forwarding = Action.SKIP.value
    if forwarding not in (Action.SKIP, Action.INFO, Action.DIVERT):
        return None
    reason = data.get("reason", data.get("reasonCode"))
    reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
    open_diversion = data.get("open_diversion", data.get("openDiversion", False))
    if isinstance(open_diversion, str):
        open_diversion = open_diversion.strip().lower() in ("true", "1", "yes")
    return AddinChoice(
        forwarding=forwarding,
        reason_code=reason,
        open_diversion=bool(open_diversion) and forwarding == Action.DIVERT,
    )
