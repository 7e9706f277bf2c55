"""The EWS sandbox, driven by real exchangelib over NTLM and HTTPS, as the product will use it.

Every SOAP message the sandbox sends in these tests is validated against Microsoft's EWS schema
by the `ews` fixture (tests/ews_sandbox.py).
"""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from exchangelib import BASIC, NTLM, EWSDateTime, EWSTimeZone
from exchangelib.errors import (
    ErrorImpersonateUserDenied,
    ErrorInvalidWatermark,
    ErrorNonExistentMailbox,
    RateLimitError,
    UnauthorizedError,
)
from exchangelib.items import CalendarItem
from exchangelib.properties import CreatedEvent, DeletedEvent, ModifiedEvent, StatusEvent

from sandbox.ews import DEFAULT_PASSWORD, DEFAULT_USERNAME, demo
from tests.ews_sandbox import EwsSchema, ca_adapter

TZ = EWSTimeZone("Europe/Stockholm")
PERSON = "test.person@demokommun.se"
ASA = demo.PEOPLE[0][0]
FIELDS = (
    "subject",
    "start",
    "end",
    "legacy_free_busy_status",
    "sensitivity",
    "is_all_day",
    "is_cancelled",
    "type",
    "categories",
)
DAY = datetime(2030, 3, 4, tzinfo=UTC)  # a Monday


def view(account, start, end, *fields):
    return list(
        account.calendar.view(start=start.astimezone(TZ), end=end.astimezone(TZ)).only(
            *(fields or FIELDS)
        )
    )


@pytest.fixture
def person(ews):
    ews.add_mailbox(PERSON, "Test Persson")
    return PERSON


def test_calendar_view_returns_singles_and_expanded_occurrences(ews, person):
    ews.create_event(person, subject="Styrgrupp", start="2030-03-04T09:00:00Z",
                     end="2030-03-04T10:00:00Z", legacy_free_busy_status="Tentative",
                     categories=["Projekt"])  # fmt: skip
    ews.create_event(person, subject="Läkarbesök", start="2030-03-05T12:00:00Z",
                     end="2030-03-05T13:00:00Z", sensitivity="Private",
                     legacy_free_busy_status="OOF")  # fmt: skip
    ews.create_event(person, subject="Semester", start="2030-03-06", end="2030-03-07",
                     is_all_day=True, legacy_free_busy_status="OOF")  # fmt: skip
    series = ews.create_event(
        person, subject="Daglig avstämning", start="2030-03-04T07:00:00Z",
        end="2030-03-04T07:15:00Z", recurrence={"pattern": "weekdays", "count": 5},
        exceptions={"2": {"start": "2030-03-05T08:00:00Z", "end": "2030-03-05T08:30:00Z"},
                    "4": {"is_cancelled": True, "legacy_free_busy_status": "Free"}},
        deleted=[5],
    )  # fmt: skip
    assert series["recurrence"]["count"] == 5
    account = ews.account(person)
    ews.clear_requests()

    items = view(account, DAY, DAY + timedelta(days=7))

    shown = [(i.subject, i.type, i.start, i.legacy_free_busy_status) for i in items]
    at = lambda text: EWSDateTime.from_datetime(datetime.fromisoformat(text))  # noqa: E731
    assert ("Styrgrupp", "Single", at("2030-03-04T09:00:00+00:00"), "Tentative") in shown
    daily = [i for i in items if i.subject == "Daglig avstämning"]
    assert [i.type for i in daily] == ["Occurrence", "Exception", "Occurrence", "Exception"]
    assert daily[1].start == at("2030-03-05T08:00:00+00:00")  # moved
    assert daily[1].end - daily[1].start == timedelta(minutes=30)
    assert daily[3].is_cancelled and daily[3].legacy_free_busy_status == "Free"
    assert not daily[0].is_cancelled
    assert all(i.start.date().isoformat() != "2030-03-08" for i in daily)  # deleted
    private = next(i for i in items if i.subject == "Läkarbesök")
    assert (private.sensitivity, private.legacy_free_busy_status) == ("Private", "OOF")
    holiday = next(i for i in items if i.subject == "Semester")
    assert holiday.is_all_day and str(holiday.start) == "2030-03-06" == str(holiday.end)
    assert next(i for i in items if i.subject == "Styrgrupp").categories == ["Projekt"]
    # The occurrences have their own ids; their master is one GetItem away.
    assert len({i.id for i in daily}) == 4
    master = daily[0].recurring_master()
    master.refresh()
    assert (master.type, master.subject) == ("RecurringMaster", "Daglig avstämning")
    assert master.id not in {i.id for i in daily}
    # Only the asked-for fields were requested, and logged; never the body.
    asked = ews.asked_fields()
    assert {"calendar:Start", "calendar:End", "item:Subject", "item:Sensitivity"} <= asked
    finds = ews.requests(operation="FindItem")
    assert finds and finds[0]["mailbox"] == person and finds[0]["window"]
    view_reads = [e for e in ews.requests() if e["operation"] in ("FindItem", "GetItem")][:2]
    assert all("item:Body" not in e.get("fields", ()) for e in view_reads)
    assert "item:Body" in ews.requests(operation="GetItem")[-1]["fields"]  # refresh() asks all


def test_only_subject_free_reads_leave_the_subject_out(ews, person):
    ews.create_event(person, subject="Hemligt", start="2030-03-04T09:00:00Z",
                     end="2030-03-04T10:00:00Z")  # fmt: skip
    account = ews.account(person)
    items = view(account, DAY, DAY + timedelta(days=1), "start", "end", "legacy_free_busy_status")
    assert len(items) == 1 and items[0].subject is None
    assert items[0].legacy_free_busy_status == "Busy"
    assert "item:Subject" not in ews.asked_fields()


def test_occurrence_by_index_and_extended_property(ews, person):
    from exchangelib.extended_properties import ExtendedProperty

    class Choice(ExtendedProperty):
        distinguished_property_set_id = "PublicStrings"
        property_name = demo.ADDIN_PROPERTY
        property_type = "String"

    ews.create_event(person, subject="Serie", start="2030-03-04T07:00:00Z",
                     end="2030-03-04T08:00:00Z", recurrence={"pattern": "daily", "count": 3},
                     extended={demo.ADDIN_PROPERTY: '{"mss":"borta"}'})  # fmt: skip
    CalendarItem.register("addin_choice", Choice)
    try:
        account = ews.account(person)
        items = view(account, DAY, DAY + timedelta(days=3), "subject", "start", "addin_choice")
        assert [i.addin_choice for i in items] == ['{"mss":"borta"}'] * 3
        assert demo.ADDIN_PROPERTY in ews.requests(operation="GetItem")[-1]["extended_fields"]
        master = items[0].recurring_master()
        master.refresh()
        third = master.occurrence(3)
        third.refresh()
        assert third.start == items[2].start and third.type == "Occurrence"
    finally:
        CalendarItem.deregister("addin_choice")


def test_impersonation_denied(ews):
    ews.knobs(impersonation=False)
    with pytest.raises(ErrorImpersonateUserDenied):
        ews.account(ASA).calendar  # noqa: B018
    entry = ews.requests(operation="GetFolder")[-1]
    assert entry["response_code"] == "ErrorImpersonateUserDenied" and entry["mailbox"] == ASA
    ews.knobs(impersonation=True)
    assert ews.account(ASA).calendar.name == "Kalender"


def test_wrong_password_is_refused(ews):
    ews.knobs(password="Nytt-lösen-2")
    with pytest.raises(UnauthorizedError):
        ews.account(ASA, max_wait=None).calendar  # noqa: B018
    # With FaultTolerance exchangelib takes a 401 for throttling and retries until max_wait.
    with pytest.raises(RateLimitError, match="back off"):
        ews.account(ASA, max_wait=1).calendar  # noqa: B018
    refused = [e for e in ews.requests() if e.get("status") == 401]
    assert refused and refused[-1]["error"] == "wrong credentials"
    assert DEFAULT_PASSWORD not in str(ews.requests()) and "Nytt-lösen-2" not in str(ews.requests())
    assert ews.knobs()["password"] == "(changed)"
    assert ews.account(ASA, password="Nytt-lösen-2").calendar.name == "Kalender"


def test_unknown_mailbox(ews):
    with pytest.raises(ErrorNonExistentMailbox):
        ews.account("ingen.alls@demokommun.se").calendar  # noqa: B018
    assert ews.requests()[-1]["response_code"] == "ErrorNonExistentMailbox"


def test_server_busy_back_off_is_honoured(ews, person):
    ews.create_event(person, subject="Möte", start="2030-03-04T09:00:00Z",
                     end="2030-03-04T10:00:00Z")  # fmt: skip
    account = ews.account(person)
    account.calendar  # noqa: B018
    ews.knobs(server_busy={"count": 2, "back_off_ms": 400})
    started = time.monotonic()
    items = view(account, DAY, DAY + timedelta(days=1))
    assert time.monotonic() - started >= 0.8  # two hinted back-offs
    assert [i.subject for i in items] == ["Möte"]
    codes = [e["response_code"] for e in ews.requests(operation="FindItem")]
    assert codes[:3] == ["ErrorServerBusy", "ErrorServerBusy", "NoError"]
    assert ews.knobs()["server_busy"]["count"] == 0


def test_basic_authentication_knob(ews):
    ews.knobs(auth="basic")
    with pytest.raises(UnauthorizedError):
        ews.account(ASA, auth_type=NTLM, max_wait=None).calendar  # noqa: B018
    assert ews.account(ASA, auth_type=BASIC).calendar.name == "Kalender"
    assert ews.requests(operation="GetFolder")[-1]["auth"] == "basic"


def test_outage_answers_503(ews):
    ews.knobs(outage="503")
    reply = requests.post(ews.ews_url, data=b"<x/>", verify=ews.ca_file, timeout=10)
    assert reply.status_code == 503
    ews.knobs(outage=None)
    assert (
        requests.post(ews.ews_url, data=b"<x/>", verify=ews.ca_file, timeout=10).status_code == 401
    )


@pytest.mark.parametrize(
    ("build", "major_minor", "api_version"),
    [
        ("Exchange2013", (15, 0), "Exchange2013_SP1"),
        ("Exchange2016", (15, 1), "Exchange2016"),
        ("Exchange2019", (15, 2), "Exchange2016"),
    ],
)
def test_version_probing(ews, build, major_minor, api_version):
    ews.knobs(build=build)
    account = ews.account(ASA)
    version = account.protocol.version
    assert (version.build.major_version, version.build.minor_version) == major_minor
    assert version.api_version == api_version
    probes = ews.requests(operation="ConvertId")
    if build == "Exchange2013":  # newer RequestServerVersions were refused first
        assert probes[0]["response_code"] == "ErrorInvalidServerVersion"
    assert probes[-1]["api_version"] == api_version
    assert account.calendar.name == "Kalender"


def test_resolve_names_and_expand_dl(ews):
    account = ews.account(ASA)
    assert account.protocol.version.build  # directory calls need the probed version first
    found = account.protocol.resolve_names(["åsa"], return_full_contact_data=True)
    ((mailbox, contact),) = found
    assert (mailbox.email_address, mailbox.name) == (ASA, "Åsa Lind")
    assert contact.display_name == "Åsa Lind"
    assert {p.label: p.phone_number for p in contact.phone_numbers}["MobilePhone"] == demo.PEOPLE[
        0
    ][3]
    several = account.protocol.resolve_names(["l"])  # Lind, Lina Häll
    assert {m.email_address for m in several} >= {ASA, demo.PEOPLE[4][0]}
    members = account.protocol.expand_dl("alla@demokommun.se")
    assert sorted(m.email_address for m in members) == sorted(p[0] for p in demo.PEOPLE)
    assert ews.requests(operation="ExpandDL")[-1]["group"] == "alla@demokommun.se"


def test_demo_people_have_a_fortnight_with_a_booking_now(ews):
    account = ews.account(demo.PEOPLE[2][0])
    now = datetime.now(UTC)
    items = view(account, now - timedelta(days=7), now + timedelta(days=14))
    kinds = {i.type for i in items}
    assert {"Single", "Occurrence", "Exception"} <= kinds
    statuses = {i.legacy_free_busy_status for i in items}
    assert {"Busy", "OOF", "Tentative", "WorkingElsewhere"} <= statuses
    assert any(i.sensitivity == "Private" for i in items)
    assert any(i.is_all_day for i in items)
    assert any(i.is_cancelled for i in items)
    going_on = [i for i in items if not i.is_all_day and i.start <= now <= i.end]
    assert going_on
    assert all(len(p) == 4 and p[0].endswith("@demokommun.se") for p in demo.PEOPLE)


# ----- push notifications


def subscribe(ews, receiver, email=PERSON, watermark=None):
    account = ews.account(email)
    return account, *account.calendar.subscribe_to_push(
        receiver.url, watermark=watermark, status_frequency=1
    )


def test_push_delivers_create_modify_delete(ews, person, push_receiver):
    account, subscription_id, watermark = subscribe(ews, push_receiver)
    booking = ews.create_event(person, subject="Ny", start="2030-03-04T09:00:00Z",
                               end="2030-03-04T10:00:00Z")  # fmt: skip
    push_receiver.wait_for(lambda r: len(r.events()) >= 1)
    ews.update_event(
        person, booking["id"], start="2030-03-04T11:00:00Z", end="2030-03-04T12:00:00Z"
    )
    push_receiver.wait_for(lambda r: len(r.events()) >= 2)
    ews.delete_event(person, booking["id"])
    push_receiver.wait_for(lambda r: len(r.events()) >= 3)

    events = push_receiver.events()
    assert [type(e) for e in events] == [CreatedEvent, ModifiedEvent, DeletedEvent]
    assert len({e.item_id.id for e in events}) == 1
    notes = push_receiver.notifications
    assert {n.subscription_id for n in notes} == {subscription_id}
    assert notes[0].previous_watermark == watermark
    assert notes[1].previous_watermark == events[0].watermark  # a chain, no gaps
    assert all(e.parent_folder_id.id == account.calendar.id for e in events)
    assert ews.deliveries()[0]["events"] == ["CreatedEvent"]
    assert ("notification", "SendNotification") in ews.checked.seen


def test_status_events_and_more_events(ews, person, push_receiver):
    ews.knobs(status_seconds=0.3)
    subscribe(ews, push_receiver)
    push_receiver.wait_for(lambda r: any(isinstance(e, StatusEvent) for e in r.events()))
    # The next status delivery is held unanswered while 12 changes pile up: then they go out
    # in batches of 10, the first saying more follow (however fast the pusher is).
    push_receiver.open.clear()
    hits = push_receiver.hits
    push_receiver.wait_for(lambda r: r.hits > hits, message="a held delivery")
    for number in range(12):
        ews.create_event(person, subject=f"Möte {number}", start="2030-03-04T09:00:00Z",
                         end="2030-03-04T10:00:00Z")  # fmt: skip
    push_receiver.open.set()
    push_receiver.wait_for(
        lambda r: sum(isinstance(e, CreatedEvent) for e in r.events()) == 12, message="12 events"
    )
    assert any(n.more_events for n in push_receiver.notifications)


def test_unsubscribe_answer_ends_the_subscription(ews, person, push_receiver):
    ews.knobs(status_seconds=0.2)
    push_receiver.answer = "Unsubscribe"
    _, subscription_id, _ = subscribe(ews, push_receiver)
    push_receiver.wait_for(lambda r: r.notifications)
    time.sleep(0.6)
    assert push_receiver.hits == 1
    (found,) = [s for s in ews.subscriptions() if s["id"] == subscription_id]
    assert found["state"] == "unsubscribed"


def test_product_unsubscribe_operation(ews, person, push_receiver):
    account, subscription_id, _ = subscribe(ews, push_receiver)
    assert account.calendar.unsubscribe(subscription_id) is True
    assert ews.subscriptions()[0]["state"] == "unsubscribed"
    assert ews.requests(operation="Unsubscribe")[-1]["response_code"] == "NoError"


def test_unreachable_endpoint_is_retried_then_dropped(ews, person, push_receiver):
    ews.knobs(status_seconds=0.8, retry_seconds=0.1)
    push_receiver.answer = 500
    subscribe(ews, push_receiver)
    ews.create_event(
        person, subject="Möte", start="2030-03-04T09:00:00Z", end="2030-03-04T10:00:00Z"
    )

    deadline = time.monotonic() + 10
    while ews.subscriptions()[0]["state"] == "active" and time.monotonic() < deadline:
        time.sleep(0.1)
    attempts = ews.deliveries()
    assert ews.subscriptions()[0]["state"] == "expired"
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]  # 0.1, 0.2, 0.4 s; 0.8 s is too late
    gaps = [b["time"] - a["time"] for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.5  # doubling
    assert attempts[-1]["gave_up"] and attempts[0]["status"] == 500


def test_resume_with_watermark_delivers_missed_events(ews, person, push_receiver):
    account, subscription_id, watermark = subscribe(ews, push_receiver)
    account.calendar.unsubscribe(subscription_id)  # as if the subscription had been lost
    for number in range(3):
        ews.create_event(person, subject=f"Missat {number}", start="2030-03-04T09:00:00Z",
                         end="2030-03-04T10:00:00Z")  # fmt: skip
    assert push_receiver.hits == 0
    _, resumed, _ = subscribe(ews, push_receiver, watermark=watermark)
    push_receiver.wait_for(lambda r: len(r.events()) >= 3)
    assert [type(e) for e in push_receiver.events()] == [CreatedEvent] * 3
    assert push_receiver.notifications[0].subscription_id == resumed
    assert push_receiver.notifications[0].previous_watermark == watermark


def test_expired_watermark_is_refused(ews, person, push_receiver):
    account, subscription_id, watermark = subscribe(ews, push_receiver)
    ews.knobs(watermark_expired=True)
    with pytest.raises(ErrorInvalidWatermark):
        account.calendar.subscribe_to_push(push_receiver.url, watermark=watermark)
    assert ews.requests(operation="Subscribe")[-1]["response_code"] == "ErrorInvalidWatermark"
    with pytest.raises(ErrorInvalidWatermark):  # a made-up watermark too, knob off
        ews.knobs(watermark_expired=False)
        account.calendar.subscribe_to_push(push_receiver.url, watermark="AAAA")


# ----- the schema check itself


def test_every_operation_was_schema_checked(ews, person, push_receiver):
    ews.knobs(status_seconds=0.3)
    ews.create_event(person, subject="Möte", start="2030-03-04T09:00:00Z",
                     end="2030-03-04T10:00:00Z")  # fmt: skip
    account = ews.account(person)
    assert view(account, DAY, DAY + timedelta(days=1))
    account.protocol.resolve_names(["åsa"])
    account.protocol.expand_dl("alla@demokommun.se")
    _, subscription_id, _ = subscribe(ews, push_receiver)
    push_receiver.wait_for(lambda r: r.notifications)
    account.calendar.unsubscribe(subscription_id)
    with pytest.raises(ErrorNonExistentMailbox):
        ews.account("okand@demokommun.se").calendar  # noqa: B018
    names = {name for _, name in ews.checked.seen}
    assert {
        "ConvertIdResponse", "GetFolderResponse", "FindItemResponse", "GetItemResponse",
        "ResolveNamesResponse", "ExpandDLResponse", "SubscribeResponse", "UnsubscribeResponse",
        "SendNotification", "Fault:ErrorNonExistentMailbox",
    } <= names  # fmt: skip


def test_schema_check_rejects_a_wrong_answer(ews_schema):
    wrong = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        b'<m:FindItemResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">'
        b"<m:Nonsense/></m:FindItemResponse></s:Body></s:Envelope>"
    )
    from lxml import etree

    with pytest.raises(etree.DocumentInvalid):
        ews_schema.check(wrong)
    assert isinstance(ews_schema, EwsSchema) and "ErrorServerBusy" in ews_schema.response_codes


# ----- the command line


def test_command_line_server_serves_the_demo(tmp_path):
    from exchangelib.protocol import BaseProtocol

    ca_file = tmp_path / "ews-ca.pem"
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "EWS_CA_BUNDLE"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.ews", "--port", "18012", "--ca-file", str(ca_file)],
        cwd=root, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    saved = BaseProtocol.HTTP_ADAPTER_CLS
    try:
        banner = process.stdout.readline()
        assert "EWS sandbox on https://127.0.0.1:18012" in banner
        BaseProtocol.HTTP_ADAPTER_CLS = ca_adapter(str(ca_file))
        from exchangelib import IMPERSONATION, Account, Configuration, Credentials

        config = Configuration(
            service_endpoint="https://127.0.0.1:18012/EWS/Exchange.asmx",
            credentials=Credentials(DEFAULT_USERNAME, DEFAULT_PASSWORD),
            auth_type=NTLM,
        )
        account = Account(ASA, config=config, autodiscover=False, access_type=IMPERSONATION)
        now = datetime.now(UTC)
        items = view(account, now - timedelta(days=1), now + timedelta(days=1), "subject")
        assert "Pågående möte" in {i.subject for i in items}
    finally:
        BaseProtocol.HTTP_ADAPTER_CLS = saved
        process.terminate()
        process.wait(timeout=10)
