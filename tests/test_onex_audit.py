"""The daily One X audit on the real sandboxes: drift made behind the product's back, in One X
and in the Booking rows, is repaired by one run in both directions; entries that are not ours
stay; the run pages through One X's entries with the product's own client."""

import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone, translation

from calendarsync import audit, daily, planning, providers, reconcile, sync, tasks
from calendarsync.actors import SYSTEM
from calendarsync.items import ShowAs
from calendarsync.models import Activity, Booking, Integration, SyncedUser
from calendarsync.providers.base import ConsentRevoked
from calendarsync.providers.memory import InMemoryCalendar
from onex import directory
from onex.client import entry_body, get_client
from onex.models import Subscription
from onex.operations import AbsenceEntry
from tests.calendar_factory import NOW, at, item, plan_settings

COMPANY = "demo-ab"
USERS = 3
UNHELD = "sub-unheld"  # a company subscription no synced user holds
ORPHAN_ID = "mss-" + "0" * 32
UNHELD_ORPHAN_ID = "mss-" + "1" * 32
STRAY_ID = "mss-" + "2" * 32


def person(subscription_id, email):
    return {
        "subscriptionId": subscription_id,
        "email": email,
        "displayName": email.split("@")[0],
        "features": {"absence": True, "diversion": True, "openDiversion": True},
    }


def one_x_entry(start, *, reason="MOTE", minutes=60, note=None):
    end = start + timedelta(minutes=minutes)
    return AbsenceEntry(reason, start, end, end, False, False, note)


def entries_of(onex_sandbox, subscription_ids):
    """What One X holds for these subscriptions, as comparable tuples."""
    return {
        (e["subscriptionId"], e["externalId"]): (
            e["reasonCode"],
            e["start"],
            e["end"],
            e["returnAt"],
            e["divert"],
            e["openDiversion"],
            e["note"],
        )
        for e in onex_sandbox.absences(COMPANY)
        if e["subscriptionId"] in subscription_ids
    }


def planned(users, integration, now):
    """The plan computed from the sandbox calendars (not from the product's rows), in the same
    shape as `entries_of`, and each user's plan."""
    provider = providers.provider_for(integration)
    fetched = provider.fetch_many(
        [u.email for u in users],
        now,
        now + timedelta(days=integration.days_ahead),
        include_subject=not integration.all_meetings_private,
    )
    plans, expected = {}, {}
    for user in users:
        plan = planning.plan_for_synced_user(user, fetched[user.email], now=now)
        plans[user.pk] = plan
        for absence in plan.absences:
            body = entry_body(reconcile.entry_for(absence))
            expected[(user.subscription.onex_id, absence.external_id)] = body
    return plans, expected


def normalised(expected):
    """entry_body's times (with offset) → the sandbox's stored form (UTC, Z)."""

    def utc(value):
        return datetime.fromisoformat(value).astimezone(UTC).isoformat().replace("+00:00", "Z")

    return {
        key: (
            body["reasonCode"],
            utc(body["start"]),
            utc(body["end"]),
            utc(body["returnAt"]),
            body["divert"],
            body["openDiversion"],
            body["note"],
        )
        for key, body in expected.items()
    }


@pytest.fixture
def synced(m365, onex_sandbox, company, integration):
    """USERS mailboxes of a generated Microsoft 365 tenant (a fortnight of meetings each),
    imported from One X and synced once, so One X, the rows and the plan agree."""
    tenant = m365.control(
        "POST", "tenants", {"name": "Audit AB", "generate": {"users": USERS, "domain": "audit.se"}}
    )["id"]
    Integration.objects.filter(pk=integration.pk).update(tenant_id=tenant)
    integration.refresh_from_db()
    people = [person(f"sub-audit-{n}", f"user{n:05d}@audit.se") for n in range(USERS)]
    people.append(person(UNHELD, "nobody@audit.se"))
    onex_sandbox.put_company(COMPANY, "Demo AB", subscriptions=people)
    assert directory.import_company(company).ok
    for n in range(USERS):
        subscription = Subscription.objects.get(company=company, onex_id=f"sub-audit-{n}")
        SyncedUser.objects.create(
            integration=integration, subscription=subscription, email=subscription.email
        )
    users = list(
        SyncedUser.objects.filter(integration=integration)
        .select_related("integration__company", "subscription")
        .order_by("pk")
    )
    outcomes = sync.sync_mailboxes([u.pk for u in users])  # Graph sandbox → One X sandbox
    assert {o.status for o in outcomes.values()} == {"ok"}
    assert all(o.written >= 5 for o in outcomes.values())
    return users


def subscription_ids(users):
    return {u.subscription.onex_id for u in users} | {UNHELD}


def test_one_run_repairs_drift_both_ways_and_a_second_finds_nothing(
    synced, integration, onex_sandbox, onex_client
):
    anna, bjorn, cecilia = synced
    company_id = COMPANY
    rows = {u.pk: list(Booking.objects.filter(synced_user=u).order_by("start")) for u in synced}
    changed, deleted = rows[anna.pk][0], rows[anna.pk][1]
    soon = timezone.now().replace(microsecond=0) + timedelta(days=2)

    # Behind the product's back, in One X (another client of the same API):
    # an entry changed (times, reason, note), another deleted, two orphans of ours, and
    # entries of somebody else's that the audit must leave alone.
    onex_client.put_absence(
        company_id,
        anna.subscription.onex_id,
        changed.external_id,
        one_x_entry(changed.start + timedelta(minutes=5), reason="LUNCH", note="ändrad"),
    )
    onex_client.delete_absence(company_id, anna.subscription.onex_id, deleted.external_id)
    onex_client.put_absence(company_id, bjorn.subscription.onex_id, ORPHAN_ID, one_x_entry(soon))
    onex_client.put_absence(company_id, UNHELD, UNHELD_ORPHAN_ID, one_x_entry(soon))
    onex_client.put_absence(company_id, anna.subscription.onex_id, "teams-1", one_x_entry(soon))
    onex_client.put_absence(company_id, UNHELD, "reception-7", one_x_entry(soon))
    foreign_before = {
        key: value
        for key, value in entries_of(onex_sandbox, subscription_ids(synced)).items()
        if not key[1].startswith("mss-")
    }
    assert len(foreign_before) == 2

    # … and in the product's own rows: one changed, one lost (a record that failed after One X
    # accepted), one for an absence nobody has.
    Booking.objects.filter(pk=rows[bjorn.pk][0].pk).update(
        start=rows[bjorn.pk][0].start + timedelta(hours=1), reason_code="LUNCH"
    )
    Booking.objects.filter(pk=rows[cecilia.pk][0].pk).delete()
    stray = replace_row(rows[cecilia.pk][1], external_id=STRAY_ID)

    result = audit.audit_integration(integration)

    assert result.outcome == audit.Outcome.DONE
    counts = result.counts
    assert (counts.missing, counts.stale, counts.orphaned, counts.bookings_corrected) == (
        1,
        1,
        2,
        3,
    )
    assert (counts.failed, counts.skipped, counts.checked) == (0, 0, USERS)
    activity = Activity.objects.get(event="onex_audited")
    assert activity.integration == integration and activity.actor_kind == SYSTEM.kind
    assert activity.params == counts.as_dict() and activity.level == "info"
    with translation.override("en"):
        assert activity.message == (
            "Daily check against One X, differences repaired: missing in One X 1, different in "
            "One X 1, left over in One X 2, bookings corrected 3."
        )

    # One X is the plan computed from the calendars, plus the foreign entries as they were.
    now = timezone.now()
    plans, expected = planned(synced, integration, now)
    held = entries_of(onex_sandbox, subscription_ids(synced))
    ours = {key: value for key, value in held.items() if key[1].startswith("mss-")}
    assert ours == normalised(expected)
    assert {key: value for key, value in held.items() if key not in ours} == foreign_before
    # The rows follow the plan too: the next sync's diff has nothing to do.
    assert stray.pk and not Booking.objects.filter(external_id=STRAY_ID).exists()
    for user in synced:
        assert reconcile.diff(plans[user.pk], reconcile.stored_bookings(user)) == []
        stored = {
            b.external_id: (b.start, b.reason_code)
            for b in Booking.objects.filter(synced_user=user)
        }
        assert stored == {a.external_id: (a.start, a.reason_code) for a in plans[user.pk].absences}
    assert not SyncedUser.objects.filter(sync_started_at__isnull=False).exists()

    # A second run finds nothing and writes nothing.
    onex_sandbox.clear_requests()
    again = audit.audit_integration(integration)
    assert again.counts.drift == 0 and again.counts.failed == 0
    assert {r["method"] for r in onex_sandbox.requests()} == {"GET"}
    latest = Activity.objects.filter(event="onex_audited").order_by("-id").first()
    with translation.override("en"):
        assert latest.message == "Daily check against One X: everything matched."
    assert Activity.objects.filter(event="onex_audited").count() == 2


def replace_row(booking, **changes):
    """A copy of a Booking row under another external id (a row for nothing that exists)."""
    copy = Booking.objects.get(pk=booking.pk)
    copy.pk = None
    for name, value in changes.items():
        setattr(copy, name, value)
    copy.save()
    return copy


def test_it_pages_through_one_x_with_the_products_client_and_its_rate_handling(
    synced, integration, onex_sandbox, monkeypatch
):
    client = get_client()  # the process's client: its token, its retries, its budget
    sent = []
    real_request = client.session.request

    def spy(method, url, **kwargs):  # every HTTP exchange of the client's one session
        sent.append((method, urlsplit(url).path))
        return real_request(method, url, **kwargs)

    monkeypatch.setattr(client.session, "request", spy)
    now = datetime.now(UTC)
    listed = [e for e in onex_sandbox.absences(COMPANY) if _moment(e["end"]) > now]
    page_size = 7
    assert len(listed) > 2 * page_size
    onex_sandbox.clear_requests()
    # One X says "slow down" to the first page: the client honours Retry-After and goes on.
    onex_sandbox.knobs(fail_next=[429], retry_after=1)

    started = time.monotonic()
    result = audit.audit_integration(integration, page_size=page_size)

    assert result.outcome == audit.Outcome.DONE and result.counts.drift == 0
    assert time.monotonic() - started >= 1  # it waited as told
    log = onex_sandbox.requests()
    # Every request One X saw came through the client's one transport: no side door.
    assert [(r["method"], r["path"]) for r in log] == sent
    pages = [r for r in log if r["path"].endswith("/absences") and not r["injected"]]
    assert log[0]["status"] == 429 and log[0]["injected"]
    assert len(pages) == math.ceil(len(listed) / page_size) >= 3
    assert all(r["query"].get("limit") == str(page_size) for r in pages)
    assert "cursor" not in pages[0]["query"] and all("cursor" in r["query"] for r in pages[1:])
    assert all("from" in r["query"] for r in pages)


def _moment(value):
    return datetime.fromisoformat(value)


# ----- without Microsoft 365: an in-memory calendar, the real One X sandbox


@pytest.fixture
def memory_users(onex_sandbox, company, integration):
    """25 users of the demo company, one booking each, synced into the One X sandbox."""
    people = [person(f"sub-mem-{n}", f"mem{n:02d}@demo.se") for n in range(25)]
    onex_sandbox.put_company(COMPANY, "Demo AB", subscriptions=people)
    assert directory.import_company(company).ok
    for n in range(25):
        subscription = Subscription.objects.get(company=company, onex_id=f"sub-mem-{n}")
        SyncedUser.objects.create(
            integration=integration, subscription=subscription, email=subscription.email
        )
    users = list(
        SyncedUser.objects.filter(integration=integration)
        .select_related("integration__company", "subscription")
        .order_by("pk")
    )
    calendar = InMemoryCalendar()
    start = timezone.now().replace(microsecond=0) + timedelta(days=1)
    for n, user in enumerate(users):
        calendar.put(user.email, item(f"{user.email}-a", start + timedelta(hours=n)))
    outcomes = sync.sync_mailboxes([u.pk for u in users], provider=calendar)
    assert {o.status for o in outcomes.values()} == {"ok"}
    return users, calendar


def test_a_step_that_runs_out_of_time_hands_over_and_the_last_records_once(
    memory_users, integration, onex_client
):
    users, calendar = memory_users
    first, last = users[0], users[-1]
    for user in (first, last):  # drift in both chunks (the sandbox's bulk size is 20)
        booking = Booking.objects.get(synced_user=user)
        onex_client.delete_absence(COMPANY, user.subscription.onex_id, booking.external_id)

    step = audit.audit_integration(integration, provider=calendar, deadline=time.monotonic())
    assert step.outcome == audit.Outcome.CONTINUES and step.resume_after == users[19].pk
    assert (step.counts.missing, step.counts.checked) == (1, 20)
    assert not Activity.objects.filter(event="onex_audited").exists()

    done = audit.audit_integration(
        integration, provider=calendar, after_user_id=step.resume_after, carried=step.counts
    )
    assert done.outcome == audit.Outcome.DONE
    assert (done.counts.missing, done.counts.checked) == (2, 25)
    assert Activity.objects.get(event="onex_audited").params["missing"] == 2


def test_a_busy_mailbox_is_skipped_and_its_entries_left_alone(
    memory_users, integration, onex_sandbox, onex_client
):
    users, calendar = memory_users
    busy = users[3]
    booking = Booking.objects.get(synced_user=busy)
    onex_client.delete_absence(COMPANY, busy.subscription.onex_id, booking.external_id)
    onex_client.put_absence(
        COMPANY, busy.subscription.onex_id, ORPHAN_ID, one_x_entry(booking.start)
    )
    held_since = timezone.now() - timedelta(seconds=10)
    SyncedUser.objects.filter(pk=busy.pk).update(sync_started_at=held_since)

    result = audit.audit_integration(integration, provider=calendar)

    assert (result.counts.skipped, result.counts.checked, result.counts.drift) == (1, 24, 0)
    left = {e["externalId"] for e in onex_sandbox.absences(COMPANY)}
    assert ORPHAN_ID in left and booking.external_id not in left  # not judged without its plan
    assert SyncedUser.objects.get(pk=busy.pk).sync_started_at == held_since  # its lock stays
    with translation.override("en"):
        message = Activity.objects.get(event="onex_audited").message
    assert message.endswith("Users not checked (busy or calendar unreadable): 1.")


def test_it_skips_an_integration_that_does_not_sync(memory_users, integration, onex_sandbox):
    users, calendar = memory_users
    integration.pause(actor=SYSTEM)
    onex_sandbox.clear_requests()
    reads = len(calendar.bulk_fetches)
    result = audit.audit_integration(integration, provider=calendar)
    assert result.outcome == audit.Outcome.NOT_SYNCING
    assert onex_sandbox.requests() == [] and len(calendar.bulk_fetches) == reads
    assert not Activity.objects.filter(event="onex_audited").exists()


def test_lost_access_stops_the_audit_and_the_integration_needs_attention(
    memory_users, integration, onex_sandbox, onex_client
):
    users, calendar = memory_users
    booking = Booking.objects.get(synced_user=users[0])
    onex_client.delete_absence(COMPANY, users[0].subscription.onex_id, booking.external_id)
    calendar.errors[users[1].email] = ConsentRevoked(code="AADSTS65001")
    result = audit.audit_integration(integration, provider=calendar)
    assert result.outcome == audit.Outcome.ACCESS_LOST
    integration.refresh_from_db()
    assert integration.status == Integration.Status.NEEDS_ATTENTION
    assert booking.external_id not in {e["externalId"] for e in onex_sandbox.absences(COMPANY)}
    assert not Activity.objects.filter(event="onex_audited").exists()
    assert not SyncedUser.objects.filter(sync_started_at__isnull=False).exists()


def test_a_refused_repair_is_counted_and_tried_again_later(
    memory_users, integration, onex_sandbox, onex_client
):
    users, calendar = memory_users
    user = users[0]
    booking = Booking.objects.get(synced_user=user)
    # The booking turned into Out of office, while One X took the subscription's absence
    # service away: the rewrite is refused for good.
    calendar.put(user.email, item(booking.provider_item_id, booking.start, show_as=ShowAs.OOF))
    onex_sandbox.put_subscription(
        COMPANY,
        user.subscription.onex_id,
        email=user.email,
        features={"absence": False, "diversion": False, "openDiversion": False},
    )
    result = audit.audit_integration(integration, provider=calendar)
    assert (result.counts.stale, result.counts.failed) == (0, 1)
    assert Booking.objects.get(synced_user=user).fingerprint == booking.fingerprint  # unchanged
    assert Activity.objects.get(event="onex_audited").level == "warning"


def test_a_new_day_is_new_work_and_the_audited_mailboxes_count_as_read_for_the_day(
    memory_users, integration, onex_sandbox
):
    """At midnight the audit is the day's read: absences of the day that moved in (neither in
    One X nor in a row) are written and counted as new, not drift; each mailbox it brought in
    step counts as read (calendarsync/daily.py then leaves it out); a refused one does not."""
    users, calendar = memory_users
    SyncedUser.objects.update(last_synced_at=timezone.now() - timedelta(hours=20))
    day_after = timezone.now().replace(microsecond=0) + timedelta(days=2)
    for user in users[:3]:
        calendar.put(user.email, item(f"{user.email}-new", day_after))
    refused = users[3]
    calendar.put(refused.email, item(f"{refused.email}-new", day_after))
    onex_sandbox.put_subscription(
        COMPANY,
        refused.subscription.onex_id,
        email=refused.email,
        features={"absence": False, "diversion": False, "openDiversion": False},
    )
    before = timezone.now()
    result = audit.audit_integration(integration, provider=calendar)

    assert (result.counts.new, result.counts.drift, result.counts.failed) == (3, 0, 1)
    read = set(SyncedUser.objects.filter(last_synced_at__gte=before).values_list("pk", flat=True))
    assert read == {user.pk for user in users} - {refused.pk}
    assert daily.leading_day_users(timezone.now()).filter(pk__in=read).count() == 0
    with translation.override("en"):
        message = Activity.objects.get(event="onex_audited").message
    assert message.startswith("Daily check against One X: everything matched.")
    assert "New absences written: 3." in message


def test_the_tasks_run_each_syncing_integration_once(
    memory_users, integration, company, monkeypatch, django_capture_on_commit_callbacks
):
    users, calendar = memory_users
    paused = Integration.objects.create(
        company=company, kind="graph", name="Paused", status="connected"
    )
    paused.pause(actor=SYSTEM)
    enqueued = []
    monkeypatch.setattr(
        tasks.audit_onex, "apply_async", lambda args, countdown: enqueued.append((args, countdown))
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.audit_all_integrations() == 1
    assert enqueued == [((integration.pk, 0, None), 0)]

    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    assert tasks.audit_onex.apply(args=(integration.pk,)).get() == audit.Outcome.DONE
    assert Activity.objects.filter(event="onex_audited").count() == 1
    assert tasks.audit_onex.apply(args=(0,)).get() == "gone"


def test_the_command_audits_one_integration_by_code(memory_users, integration, monkeypatch):
    users, calendar = memory_users
    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    out = StringIO()
    call_command("audit_onex", "--integration", str(integration.code), stdout=out)
    assert f"({integration.code}): done new=0 missing=0" in out.getvalue()
    assert "checked=25" in out.getvalue()
    with pytest.raises(Exception, match="no integration"):
        call_command("audit_onex", "--integration", "00000000-0000-0000-0000-000000000000")


def test_compare_is_pure_and_keeps_to_what_is_ours():
    """The diff itself, without I/O: a plan of two, One X with one stale and one orphan."""
    plan = planning.plan_with(plan_settings(), [item("a", at(1, 9)), item("b", at(2, 9))], NOW)
    first, second = plan.absences
    stale = entry_body(replace(reconcile.entry_for(first), reason_code="LUNCH"))
    findings = audit.compare(
        plan,
        {first.external_id: stale, ORPHAN_ID: {}, "mss-theirs": {}},
        rows={},
        protected={"mss-theirs"},
    )
    assert [(type(op).__name__, op.external_id) for op in findings.operations] == [
        ("PutAbsence", first.external_id),
        ("PutAbsence", second.external_id),
        ("DeleteAbsence", ORPHAN_ID),
    ]
    # The second has neither an entry nor a row: new work (the day that moved in), not drift.
    assert findings.drifts == [audit.Drift.STALE, audit.Drift.NEW, audit.Drift.ORPHANED]
    assert findings.wrong_rows == {first.external_id}
