"""What One X should hold, from the sandbox calendars, and how far it is from that.

The expected state is computed the way the issue asks: the mailboxes' calendars as the sandboxes
hold them, through the product's own mapping and rules engine (`planning.plan_for_synced_user`),
never from the product's Booking rows. Exchange Online calendars are read over the M365
sandbox's Graph API with a reader of our own (a token, calendarView, paging); Exchange On Prem
calendars through the product's EWS provider (the EWS item ids, which the external ids are made
of, exist only on the wire).

`tally` compares One X's entries (the sandbox's own dump) with it:
- missing: a planned absence without an entry; stale: an entry that says something else;
- orphaned: an entry no planned absence has (a deletion that never reached One X);
- duplicated: more entries than one for one planned absence (its external id, or another
  external id on the same subscription with the same start and end);
- rows_behind: the product's Booking rows that disagree with the plan (the next diff would go
  wrong from them), counted so that "converged" means One X, the plan and the rows agree.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.utils import timezone

from calendarsync import planning, providers, reconcile
from calendarsync.models import Booking, SyncedUser
from calendarsync.providers.graph.mapping import (
    addin_property_id,
    calendar_view_select,
    items_from_graph,
    window_with_margin,
)
from onex.client import entry_body


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def comparable(body: dict) -> tuple:
    """The fields of an entry the product writes, in a form two writers agree on."""
    return (
        body["reasonCode"],
        parse(body["start"]),
        parse(body["end"]),
        parse(body.get("returnAt") or body["end"]),
        bool(body.get("divert")),
        bool(body.get("openDiversion")),
        body.get("note") or None,
    )


class GraphCalendars:
    """calendarView of a mailbox, read from the M365 sandbox as any Graph client reads it."""

    def __init__(self, m365):
        self.url = m365.url
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = m365.ca_file
        self.tokens: dict[str, str] = {}

    def _token(self, tenant: str) -> str:
        if tenant not in self.tokens:
            answer = self.http.post(
                f"{self.url}/{tenant}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": settings.MS_CLIENT_ID,
                    "client_secret": settings.MS_CLIENT_SECRET,
                    "scope": "https://graph.microsoft.com/.default",
                },
                timeout=15,
            )
            answer.raise_for_status()
            self.tokens[tenant] = answer.json()["access_token"]
        return self.tokens[tenant]

    def items(self, user: SyncedUser, start: datetime, end: datetime):
        include_subject = not user.integration.all_meetings_private
        first, last = window_with_margin(start, end)
        url = f"{self.url}/v1.0/users/{user.email}/calendarView"
        params = {
            "startDateTime": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": last.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "$select": calendar_view_select(include_subject=include_subject),
            "$expand": "singleValueExtendedProperties($filter=id eq "
            f"'{addin_property_id(settings.MS_ADDIN_ID)}')",
        }
        headers = {
            "Authorization": f"Bearer {self._token(user.integration.tenant_id)}",
            "Prefer": 'outlook.timezone="UTC", odata.maxpagesize=100',
        }
        events = []
        while url:
            answer = self.http.get(url, params=params, headers=headers, timeout=30)
            answer.raise_for_status()
            page = answer.json()
            events += page["value"]
            url, params = page.get("@odata.nextLink"), None
        items = items_from_graph(events, include_subject=include_subject)
        return [item for item in items if item.start < end and item.end > start]


class EwsCalendars:
    def items(self, user: SyncedUser, start: datetime, end: datetime):
        provider = providers.provider_for(user.integration)
        return provider.fetch(
            user.email, start, end, include_subject=not user.integration.all_meetings_private
        )


@dataclass(frozen=True)
class Expected:
    user_id: int
    fields: tuple
    fingerprint: str


@dataclass
class Plan:
    """Every absence One X should hold: (company, subscription, external id) → Expected."""

    absences: dict[tuple[str, str, str], Expected] = field(default_factory=dict)
    subscriptions: set[tuple[str, str]] = field(default_factory=set)  # (company, subscription)
    user_ids: list[int] = field(default_factory=list)

    @property
    def companies(self) -> list[str]:
        return sorted({company for company, _ in self.subscriptions})


def plan_now(population, calendars: dict, users=None) -> Plan:
    """The plan of the population's mailboxes (or of `users`), from their calendars now. A
    mailbox that may not sync (Aktiv off) plans nothing: its entries must be gone."""
    now = timezone.now()
    plan = Plan()
    users = population.users() if users is None else users
    for user in users.select_related("integration__company", "subscription").order_by("pk"):
        integration = user.integration
        company, subscription = integration.company.onex_id, user.subscription.onex_id
        plan.user_ids.append(user.pk)
        plan.subscriptions.add((company, subscription))
        if not (integration.syncing and user.subscription.active):
            continue
        end = now + timedelta(days=integration.days_ahead)
        items = calendars[integration.kind].items(user, now, end)
        planned = planning.plan_for_synced_user(user, items, now=now)
        for absence in planned.absences:
            entry = entry_body(reconcile.entry_for(absence))
            plan.absences[(company, subscription, absence.external_id)] = Expected(
                user.pk, comparable(entry), reconcile.fingerprint(absence, subscription)
            )
    return plan


@dataclass
class Tally:
    planned: int = 0
    entries: int = 0
    missing: int = 0
    stale: int = 0
    orphaned: int = 0
    duplicated: int = 0
    rows_behind: int = 0
    matched: set = field(default_factory=set)  # keys of planned absences One X holds right

    @property
    def lost(self) -> int:
        return self.missing + self.stale + self.orphaned

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.rows_behind == 0

    def describe(self) -> str:
        return (
            f"missing={self.missing} stale={self.stale} orphaned={self.orphaned} "
            f"rows_behind={self.rows_behind} planned={self.planned} entries={self.entries}"
        )


def one_x_entries(onex, plan: Plan, now: datetime) -> dict[tuple[str, str, str], dict]:
    """The entries of the plan's subscriptions that have not ended (history is not drift)."""
    found = {}
    for company in plan.companies:
        for entry in onex.absences(company):
            if (company, entry["subscriptionId"]) in plan.subscriptions and parse(
                entry["end"]
            ) > now:
                found[(company, entry["subscriptionId"], entry["externalId"])] = entry
    return found


def tally(onex, plan: Plan, *, rows: bool = True) -> Tally:
    now = timezone.now()
    entries = one_x_entries(onex, plan, now)
    result = Tally(planned=len(plan.absences), entries=len(entries))
    by_span = defaultdict(list)
    for key, entry in entries.items():
        by_span[(key[0], key[1], parse(entry["start"]), parse(entry["end"]))].append(key)
    accounted = set()
    for key, expected in plan.absences.items():
        _start, _end = expected.fields[1], expected.fields[2]
        twins = [k for k in by_span[(key[0], key[1], _start, _end)] if k not in plan.absences]
        holders = ([key] if key in entries else []) + twins
        accounted.update(holders)
        result.duplicated += max(0, len(holders) - 1)
        if key not in entries:
            if not twins:
                result.missing += 1
        elif comparable(entries[key]) != expected.fields:
            result.stale += 1
        else:
            result.matched.add(key)
    result.orphaned = len(set(entries) - accounted - set(plan.absences))
    if rows:
        result.rows_behind = rows_behind(plan, now)
    return result


def rows_behind(plan: Plan, now: datetime) -> int:
    """Booking rows (not ended) that disagree with the plan, and planned absences without one."""
    rows = {
        (company, subscription, external_id): fingerprint
        for company, subscription, external_id, fingerprint in Booking.objects.filter(
            synced_user_id__in=plan.user_ids, end__gt=now
        ).values_list(
            "synced_user__integration__company__onex_id",
            "synced_user__subscription__onex_id",
            "external_id",
            "fingerprint",
        )
    }
    behind = sum(
        1 for key, expected in plan.absences.items() if rows.get(key) != expected.fingerprint
    )
    return behind + len(set(rows) - set(plan.absences))
