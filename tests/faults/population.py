"""A scenario's world: companies in the One X sandbox and the product, their integrations,
mailboxes with a week and a half of bookings, and Outlook changes made during a fault.

Bookings are made through the sandboxes' own controls (as if in Outlook), from a seeded random
mix: meetings (Busy), Out of office, all-day Out of office, Free and Tentative (never synced),
private meetings (never synced) and back-to-back pairs (one return time). Every booking lies
between one and eleven days ahead, far from the edges of the 14-day window, so the plan does
not depend on the moment it is computed.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from calendarsync.models import Integration, SyncedUser
from onex.directory import import_company
from onex.models import Company

STOCKHOLM = ZoneInfo("Europe/Stockholm")
REASONS = [
    {"code": "MOTE", "label": {"sv": "Möte", "en": "Meeting"}, "diversionAllowed": True},
    {"code": "FRANVARANDE", "label": {"sv": "Frånvarande", "en": "Away"}},
    {"code": "LUNCH", "label": {"sv": "Lunch", "en": "Lunch"}},
]


@dataclass
class Mailbox:
    email: str
    company: str  # One X company id
    kind: str  # "graph" | "ews"
    tenant: str = ""  # Graph
    events: list[str] = field(default_factory=list)  # ids of the bookings made here


@dataclass
class Population:
    integrations: list[Integration] = field(default_factory=list)
    mailboxes: list[Mailbox] = field(default_factory=list)

    @property
    def companies(self) -> list[str]:
        return sorted({mailbox.company for mailbox in self.mailboxes})

    def of(self, integration: Integration) -> list[Mailbox]:
        company = integration.company.onex_id
        return [m for m in self.mailboxes if m.company == company]

    def users(self):
        return SyncedUser.objects.filter(integration__in=self.integrations)


def day_start(days_ahead: int) -> datetime:
    today = timezone.now().astimezone(STOCKHOLM).date()
    return datetime.combine(today + timedelta(days=days_ahead), datetime.min.time(), STOCKHOLM)


def graph_time(moment: datetime) -> dict:
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def booking_specs(rng: random.Random, count: int) -> list[dict]:
    """`count` bookings (a back-to-back pair counts as two), as kind-neutral specs."""
    specs, used = [], set()
    while len(specs) < count:
        day, hour = rng.randint(1, 10), rng.randint(8, 15)
        if (day, hour) in used or (day, hour + 1) in used:
            continue
        used.update({(day, hour), (day, hour + 1)})
        start = day_start(day) + timedelta(hours=hour, minutes=rng.choice((0, 30)))
        roll = rng.random()
        length = timedelta(minutes=rng.choice((30, 60, 90)))
        spec = {"subject": f"Möte {day}-{hour}", "start": start, "end": start + length}
        if roll < 0.55:
            spec["show_as"] = "busy"
        elif roll < 0.68:
            spec.update(show_as="oof", subject="Kundbesök")
        elif roll < 0.74:
            spec.update(
                show_as="oof",
                subject="Ledig",
                all_day=True,
                start=day_start(day),
                end=day_start(day + 1),
            )
            used.update((day, h) for h in range(24))
        elif roll < 0.82:
            spec["show_as"] = rng.choice(("free", "tentative"))
        elif roll < 0.88:
            spec.update(show_as="busy", private=True, subject="Tandläkare")
        else:  # back to back: both return at the end of the second
            specs.append({**spec, "show_as": "busy"})
            spec = {
                "subject": f"Uppföljning {day}-{hour}",
                "start": spec["end"],
                "end": spec["end"] + timedelta(minutes=60),
                "show_as": "busy",
            }
        specs.append(spec)
    return specs[:count]


def graph_event(spec: dict) -> dict:
    event = {
        "subject": spec["subject"],
        "showAs": spec["show_as"],
        "sensitivity": "private" if spec.get("private") else "normal",
    }
    if spec.get("all_day"):  # midnight to midnight, in the mailbox's (Windows) time zone
        zone = "W. Europe Standard Time"
        event.update(
            isAllDay=True,
            start={"dateTime": spec["start"].strftime("%Y-%m-%dT00:00:00"), "timeZone": zone},
            end={"dateTime": spec["end"].strftime("%Y-%m-%dT00:00:00"), "timeZone": zone},
        )
    else:
        event.update(start=graph_time(spec["start"]), end=graph_time(spec["end"]))
    return event


FREE_BUSY = {"busy": "Busy", "oof": "OOF", "free": "Free", "tentative": "Tentative"}


def ews_event(spec: dict) -> dict:
    event = {
        "subject": spec["subject"],
        "start": spec["start"].astimezone(UTC).isoformat(),
        "end": spec["end"].astimezone(UTC).isoformat(),
        "legacy_free_busy_status": FREE_BUSY[spec["show_as"]],
    }
    if spec.get("private"):
        event["sensitivity"] = "Private"
    if spec.get("all_day"):  # dates, in the server's (Swedish) time
        event.update(
            is_all_day=True,
            start=spec["start"].date().isoformat(),
            end=spec["end"].date().isoformat(),
        )
    return event


def one_x_company(onex, company_id: str, name: str, emails: list[str]) -> list[dict]:
    subscriptions = [
        {
            "subscriptionId": f"{company_id}-sub-{n:04d}",
            "email": email,
            "displayName": email.split("@")[0],
            "features": {"absence": True, "diversion": True, "openDiversion": True},
        }
        for n, email in enumerate(emails)
    ]
    onex.put_company(company_id, name, subscriptions, REASONS)
    return subscriptions


def product_company(company_id: str, name: str, number: int) -> Company:
    company = Company.objects.create(
        name=name, org_number=f"559{number:03d}-0000", onex_id=company_id
    )
    result = import_company(company)  # subscriptions and reasons, as the directory import does
    assert result.ok, result.error
    return company


def add_users(integration: Integration, emails: list[str]) -> None:
    subscriptions = {s.email: s for s in integration.company.subscriptions.all()}
    SyncedUser.objects.bulk_create(
        SyncedUser(integration=integration, subscription=subscriptions[email], email=email)
        for email in emails
    )


def build_graph(m365, onex, *, seed: str, integrations: int, per_integration: int, bookings: int):
    population = Population()
    for k in range(1, integrations + 1):
        company_id, name = f"faults-{k}", f"Kund {k} AB"
        emails = [f"user{n:03d}@kund{k}.example.se" for n in range(per_integration)]
        one_x_company(onex, company_id, name, emails)
        tenant = m365.add_tenant(name, users=emails)
        company = product_company(company_id, name, k)
        integration = Integration.objects.create(
            company=company,
            kind=Integration.Kind.GRAPH,
            name="Exchange Online",
            status=Integration.Status.CONNECTED,
            tenant_id=tenant,
            consented_at=timezone.now(),
            all_meetings_private=False,
        )
        add_users(integration, emails)
        population.integrations.append(integration)
        for email in emails:
            mailbox = Mailbox(email, company_id, "graph", tenant=tenant)
            rng = random.Random(f"{seed}-{email}")
            for spec in booking_specs(rng, bookings):
                made = m365.create_event(email, tenant, **graph_event(spec))
                mailbox.events.append(made["id"])
            population.mailboxes.append(mailbox)
    return population


def build_ews(ews, onex, on_prem, *, seed: str, mailboxes: int, bookings: int, number: int):
    population = Population()
    company_id, name = f"faults-ews-{number}", "Kommun AB"
    emails = [f"person{n:03d}@kommun.example.se" for n in range(mailboxes)]
    one_x_company(onex, company_id, name, emails)
    company = product_company(company_id, name, 100 + number)
    integration = on_prem(company, emails[0])
    for email in emails[1:]:
        ews.add_mailbox(email, email.split("@")[0])
    Integration.objects.filter(pk=integration.pk).update(all_meetings_private=False)
    integration.refresh_from_db()
    add_users(integration, emails)
    population.integrations.append(integration)
    for email in emails:
        mailbox = Mailbox(email, company_id, "ews")
        rng = random.Random(f"{seed}-{email}")
        for spec in booking_specs(rng, bookings):
            made = ews.create_event(email, **ews_event(spec))
            mailbox.events.append(made["id"])
        population.mailboxes.append(mailbox)
    return population


class Outlook:
    """Changes made in Outlook while a scenario runs; each one notifies subscribers."""

    def __init__(self, m365=None, ews=None, seed: str = ""):
        self.m365, self.ews = m365, ews
        self.rng = random.Random(f"outlook-{seed}")
        self.made = 0

    def _spec(self, mailbox: Mailbox) -> dict:
        day, hour = self.rng.randint(1, 10), self.rng.choice((7, 17, 18))  # outside the mix
        start = day_start(day) + timedelta(hours=hour, minutes=self.rng.choice((0, 15, 45)))
        self.made += 1
        return {
            "subject": f"Ändring {self.made}",
            "start": start,
            "end": start + timedelta(minutes=45),
            "show_as": "busy",
        }

    def add(self, mailbox: Mailbox) -> str:
        spec = self._spec(mailbox)
        if mailbox.kind == "ews":
            event_id = self.ews.create_event(mailbox.email, **ews_event(spec))["id"]
        else:
            event_id = self.m365.create_event(mailbox.email, mailbox.tenant, **graph_event(spec))[
                "id"
            ]
        mailbox.events.append(event_id)
        return event_id

    def move(self, mailbox: Mailbox) -> None:
        """Move one of the mailbox's bookings an hour later (and make it a meeting)."""
        event_id = self.rng.choice(mailbox.events)
        spec = self._spec(mailbox)
        if mailbox.kind == "ews":
            changes = ews_event(spec)
            changes.pop("subject")
            self.ews.update_event(mailbox.email, event_id, **changes)
        else:
            changes = graph_event(spec)
            changes.pop("subject")
            changes.update(isAllDay=False, sensitivity="normal")
            self.m365.update_event(mailbox.email, event_id, mailbox.tenant, **changes)

    def delete(self, mailbox: Mailbox) -> None:
        event_id = mailbox.events.pop(self.rng.randrange(len(mailbox.events)))
        if mailbox.kind == "ews":
            self.ews.delete_event(mailbox.email, event_id)
        else:
            self.m365.delete_event(mailbox.email, event_id, mailbox.tenant)

    def change(self, mailbox: Mailbox, n: int) -> str:
        """The n-th change of a series: add, move, delete in turn."""
        kind = ("add", "move", "delete")[n % 3]
        if kind != "add" and len(mailbox.events) < 2:
            kind = "add"
        getattr(self, kind)(mailbox)
        return kind
