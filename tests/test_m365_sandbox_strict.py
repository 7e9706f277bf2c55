"""The Microsoft 365 sandbox is as strict as Graph (issue 14): time zones, malformed queries,
encoded user ids, request ids, $filter, $batch order and dependsOn, all-day events, https-only
notification URLs, and Graph's delivery schedule (batches with ids, backoff for 4 hours, the
slow and drop thresholds)."""

import time
from datetime import UTC, datetime, timedelta

import msal
import pytest

from calendarsync.providers.graph.provider import GraphProvider
from sandbox.m365 import delivery
from sandbox.m365.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, M365Server
from tests.m365_sandbox import ANNA, DEMO_TENANT, NotificationEndpoint, wait_for

ANNA_ENCODED = "anna.andersson%40demo.se"
WINDOW = {"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-01-08T00:00:00Z"}
PROPERTY = "String {00020329-0000-0000-C000-000000000046} Name cecp-strict"


@pytest.fixture
def token(m365):
    app = msal.ConfidentialClientApplication(
        DEFAULT_CLIENT_ID,
        client_credential=DEFAULT_CLIENT_SECRET,
        authority=f"{m365.url}/{DEMO_TENANT}",
        http_client=m365.http,
        instance_discovery=False,
    )
    return app.acquire_token_for_client(["https://graph.microsoft.com/.default"])["access_token"]


def graph(m365, token, path, method="GET", **kwargs):
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return m365.http.request(
        method, f"{m365.url}/v1.0{path}", headers=headers, timeout=15, **kwargs
    )


def assert_graph_error(response, status, code=None):
    """Graph's error shape, with the request's ids in innerError and in the headers."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "innerError"}
    assert error["code"] and error["message"]
    if code:
        assert error["code"] == code, error
    inner = error["innerError"]
    assert set(inner) == {"date", "request-id", "client-request-id"}
    assert inner["request-id"] == response.headers["request-id"]
    assert inner["client-request-id"] == response.headers["client-request-id"]
    datetime.strptime(inner["date"], "%Y-%m-%dT%H:%M:%S")
    return error


def view(m365, token, zone="UTC", **params):
    return graph(
        m365,
        token,
        f"/users/{ANNA}/calendarView",
        params={**WINDOW, **params},
        headers={"Prefer": f'outlook.timezone="{zone}"'},
    )


def pacific_meeting(m365):
    # 10:00-11:00 in Seattle on 2 January (PST, UTC-8) is 18:00-19:00 UTC.
    return m365.create_event(
        ANNA,
        subject="Seattle",
        start={"dateTime": "2030-01-02T10:00:00", "timeZone": "Pacific Standard Time"},
        end={"dateTime": "2030-01-02T11:00:00", "timeZone": "Pacific Standard Time"},
        showAs="busy",
    )


# ----- time zones


def test_an_event_in_pacific_standard_time_reads_back_right_in_any_zone(m365, token):
    created = pacific_meeting(m365)
    utc = view(m365, token, "UTC", **{"$select": "id,start,end"}).json()["value"]
    assert [e["start"] for e in utc if e["id"] == created["id"]] == [
        {"dateTime": "2030-01-02T18:00:00.0000000", "timeZone": "UTC"}
    ]
    local = view(m365, token, "Pacific Standard Time", **{"$select": "id,start,end"}).json()
    (event,) = [e for e in local["value"] if e["id"] == created["id"]]
    assert event["start"] == {
        "dateTime": "2030-01-02T10:00:00.0000000",
        "timeZone": "Pacific Standard Time",
    }
    assert event["end"]["dateTime"] == "2030-01-02T11:00:00.0000000"
    one = graph(
        m365,
        token,
        f"/users/{ANNA}/events/{created['id']}",
        params={"$select": "start"},
        headers={"Prefer": 'outlook.timezone="Tokyo Standard Time"'},
    ).json()
    assert one["start"]["dateTime"] == "2030-01-03T03:00:00.0000000"  # UTC+9


@pytest.mark.django_db
def test_the_product_reads_a_pacific_event_at_the_right_instant(m365):
    created = pacific_meeting(m365)
    items = GraphProvider(DEMO_TENANT).fetch(
        ANNA,
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 1, 8, tzinfo=UTC),
        include_subject=True,
    )
    (item,) = [i for i in items if i.provider_item_id == created["id"]]
    assert item.start == datetime(2030, 1, 2, 18, tzinfo=UTC)
    assert item.end == datetime(2030, 1, 2, 19, tzinfo=UTC)


def test_an_unknown_zone_is_a_400_and_never_breaks_the_mailbox(m365, token):
    before = view(m365, token, **{"$top": "1000"})
    assert before.status_code == 200
    refused = graph(
        m365,
        token,
        f"/users/{ANNA}/events",
        method="POST",
        json={
            "subject": "Nowhere",
            "start": {"dateTime": "2030-01-02T10:00:00", "timeZone": "Mars Standard Time"},
            "end": {"dateTime": "2030-01-02T11:00:00", "timeZone": "Mars Standard Time"},
        },
    )
    error = assert_graph_error(refused, 400, "TimeZoneNotSupportedException")
    assert "Mars Standard Time" in error["message"]
    unknown_preference = view(m365, token, "Mars Standard Time")
    assert_graph_error(unknown_preference, 400, "TimeZoneNotSupportedException")
    after = view(m365, token, **{"$top": "1000"})
    assert after.status_code == 200 and after.json()["value"] == before.json()["value"]


def test_a_bad_stored_event_is_left_out_and_the_mailbox_still_reads(m365, token):
    """As an old state file might hold one: the other events still come back."""
    good = pacific_meeting(m365)
    tenant = m365.sandbox.tenants[DEMO_TENANT]
    user = m365.sandbox.find_user(tenant, ANNA)
    bad = dict(tenant["events"][user["id"]][good["id"]], id="AAMkADbad")
    bad["start"] = {"dateTime": "2030-01-02T10:00:00", "timeZone": "Atlantis"}
    tenant["events"][user["id"]]["AAMkADbad"] = bad
    response = view(m365, token, **{"$select": "id", "$top": "1000"})
    assert response.status_code == 200
    ids = [e["id"] for e in response.json()["value"]]
    assert good["id"] in ids and "AAMkADbad" not in ids
    listed = graph(m365, token, f"/users/{ANNA}/events", params={"$select": "id", "$top": "999"})
    assert listed.status_code == 200
    assert "AAMkADbad" not in [e["id"] for e in listed.json()["value"]]
    assert [c["what"] for c in m365.crashes()] == ["unreadable stored events"] * 2
    m365.clear_crashes()


def test_every_cldr_windows_zone_is_accepted(m365, token):
    from sandbox.m365 import timezones

    names = list(timezones.windows_zones())
    assert len(names) > 130 and "Pacific Standard Time" in names
    for name in names[::10]:
        response = view(m365, token, name, **{"$select": "id,start"})
        assert response.status_code == 200, (name, response.text)
        assert 'outlook.timezone="' + name + '"' in response.headers["Preference-Applied"]


# ----- malformed queries


@pytest.mark.parametrize(
    ("path", "params", "prefer"),
    [
        ("calendarView", {"$top": "abc"}, None),
        ("calendarView", {"$top": "-1"}, None),
        ("calendarView", {"$skip": "x"}, None),
        ("calendarView", {"$select": ""}, None),
        ("calendarView", {"$select": "id,,start"}, None),
        ("calendarView", {"$count": "maybe"}, None),
        ("calendarView", {"$orderby": "start/dateTime sideways"}, None),
        ("calendarView", {"$expand": "attachments"}, None),
        ("calendarView", {"$filter": "isAllDay eq"}, None),
        ("calendarView", {"$search": "x"}, None),
        ("calendarView", {}, "odata.maxpagesize=lots"),
        ("calendarView", {"startDateTime": "2030-13-45T00:00:00Z"}, None),
        ("calendarView", {"endDateTime": "yesterday"}, None),
        ("users", {"$top": "ten"}, None),
        ("users", {"$top": "1000"}, None),
        ("users", {"$skiptoken": "garbage"}, None),
        ("users", {"$select": "id,shoeSize"}, None),
    ],
)
def test_a_malformed_query_value_is_a_400_in_graphs_shape(m365, token, path, params, prefer):
    url = f"/users/{ANNA}/calendarView" if path == "calendarView" else "/users"
    query = {**(WINDOW if path == "calendarView" else {}), **params}
    headers = {"Prefer": prefer} if prefer else {}
    assert_graph_error(graph(m365, token, url, params=query, headers=headers), 400)


def test_a_malformed_top_says_what_graph_says(m365, token):
    response = view(m365, token, **{"$top": "many"})
    error = assert_graph_error(response, 400, "BadRequest")
    assert error["message"] == (
        "Invalid value 'many' for $top query option found. "
        "The $top query option requires a non-negative integer value."
    )


def test_a_malformed_request_never_crashes_the_sandbox(m365, token):
    for body in (b"{not json", b"[]", b'{"requests": "x"}'):
        response = graph(
            m365,
            token,
            "/$batch",
            method="POST",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert_graph_error(response, 400)
    assert m365.crashes() == []


# ----- ids, headers, reauthorize


def test_url_encoded_user_ids_are_the_user(m365, token):
    user = graph(m365, token, f"/users/{ANNA_ENCODED}")
    assert user.status_code == 200 and user.json()["mail"] == ANNA
    listed = graph(m365, token, f"/users/{ANNA_ENCODED}/calendarView", params=WINDOW)
    assert listed.status_code == 200
    assert listed.json()["value"] == view(m365, token).json()["value"]


def test_every_answer_carries_request_ids_and_echoes_the_clients(m365, token):
    mine = {"client-request-id": "7c4bc10a-1a49-4e0a-9c84-0f4a1d2a0001"}
    ok = graph(m365, token, "/users", headers=mine)
    assert ok.status_code == 200
    assert ok.headers["client-request-id"] == mine["client-request-id"]
    assert ok.headers["request-id"] and ok.headers["request-id"] != mine["client-request-id"]
    refused = graph(m365, "not-a-token", "/users", headers=mine)
    error = assert_graph_error(refused, 401, "InvalidAuthenticationToken")
    assert error["innerError"]["client-request-id"] == mine["client-request-id"]
    none_sent = graph(m365, token, "/users/nobody@demo.se")
    assert_graph_error(none_sent, 404, "ErrorInvalidUser")
    assert none_sent.headers["client-request-id"] == none_sent.headers["request-id"]


def test_reauthorize_answers_204(m365, token):
    endpoint = NotificationEndpoint(m365.ca)
    try:
        created = subscribe(m365, token, endpoint.url)
        assert created.status_code == 201, created.text
        answer = graph(
            m365, token, f"/subscriptions/{created.json()['id']}/reauthorize", method="POST"
        )
        assert answer.status_code == 204 and answer.content == b""
    finally:
        endpoint.stop()


# ----- $filter and $orderby on calendarView


def test_calendar_view_filters_simple_properties_as_graph_does(m365, token):
    meeting = pacific_meeting(m365)
    m365.create_event(
        ANNA,
        subject="Ledig",
        isAllDay=True,
        start={"dateTime": "2030-01-03T00:00:00", "timeZone": "W. Europe Standard Time"},
        end={"dateTime": "2030-01-04T00:00:00", "timeZone": "W. Europe Standard Time"},
        showAs="oof",
    )
    all_day = view(m365, token, **{"$filter": "isAllDay eq true", "$select": "subject"}).json()
    assert [e["subject"] for e in all_day["value"]] == ["Ledig"]
    busy = view(
        m365, token, **{"$filter": "showAs eq 'busy' and not isAllDay eq true", "$count": "true"}
    ).json()
    assert [e["id"] for e in busy["value"]] == [meeting["id"]] and busy["@odata.count"] == 1
    newest_first = view(m365, token, **{"$orderby": "start/dateTime desc", "$select": "subject"})
    assert [e["subject"] for e in newest_first.json()["value"]] == ["Ledig", "Seattle"]


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("start/dateTime ge '2030-01-02T00:00:00'", "BadRequest"),
        ("attendees/any(a: a/emailAddress/address eq 'x@demo.se')", "BadRequest"),
        ("shoeSize eq 42", "RequestBroker--ParseUri"),
        ("isAllDay eq 'yes'", "BadRequest"),
        ("contains(subject, 'x')", "BadRequest"),
    ],
)
def test_calendar_view_refuses_a_filter_graph_does_not_support(m365, token, expression, code):
    assert_graph_error(view(m365, token, **{"$filter": expression}), 400, code)


def test_the_events_list_expands_the_extended_property(m365, token):
    created = m365.create_event(
        ANNA,
        subject="Med val",
        start={"dateTime": "2030-01-02T10:00:00", "timeZone": "W. Europe Standard Time"},
        end={"dateTime": "2030-01-02T11:00:00", "timeZone": "W. Europe Standard Time"},
        singleValueExtendedProperties=[{"id": PROPERTY, "value": '{"forwarding": "divert"}'}],
    )
    listed = graph(
        m365,
        token,
        f"/users/{ANNA_ENCODED}/events",
        params={
            "$select": "subject",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{PROPERTY}')",
            "$filter": f"id eq '{created['id']}'",
        },
    )
    assert listed.status_code == 200, listed.text
    (event,) = listed.json()["value"]
    assert event["singleValueExtendedProperties"] == [
        {"id": PROPERTY, "value": '{"forwarding": "divert"}'}
    ]


# ----- $batch


def view_step(step_id, **extra):
    return {
        "id": step_id,
        "method": "GET",
        "url": f"/users/{ANNA}/calendarView?startDateTime=2030-01-01T00:00:00Z"
        "&endDateTime=2030-01-02T00:00:00Z&$select=id",
        **extra,
    }


def test_batch_answers_come_in_any_order(m365, token):
    steps = [view_step(str(n)) for n in range(20)]
    orders = set()
    for _ in range(5):
        answer = graph(m365, token, "/$batch", method="POST", json={"requests": steps})
        assert answer.status_code == 200
        answers = answer.json()["responses"]
        assert sorted(int(a["id"]) for a in answers) == list(range(20))
        assert all(a["status"] == 200 for a in answers)
        orders.add(tuple(a["id"] for a in answers))
    assert len(orders) > 1 or orders != {tuple(str(n) for n in range(20))}


def test_batch_honours_depends_on(m365, token):
    create = {
        "id": "create",
        "method": "POST",
        "url": f"/users/{ANNA}/events",
        "headers": {"Content-Type": "application/json"},
        "body": {
            "subject": "Först",
            "start": {"dateTime": "2030-01-01T08:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-01T09:00:00", "timeZone": "UTC"},
        },
    }
    for _ in range(3):
        m365.clear_requests()
        answer = graph(
            m365,
            token,
            "/$batch",
            method="POST",
            json={
                "requests": [
                    view_step("read", dependsOn=["create"]),
                    create,
                    view_step("after-read", dependsOn=["read"]),
                ]
            },
        )
        assert answer.status_code == 200
        by_id = {a["id"]: a for a in answer.json()["responses"]}
        created = by_id["create"]["body"]["id"]
        assert created in [e["id"] for e in by_id["read"]["body"]["value"]]
        ran = [r["method"] for r in m365.graph_requests() if r.get("batch")]
        assert ran == ["POST", "GET", "GET"]


def test_a_step_whose_dependency_failed_answers_424(m365, token):
    failing = {"id": "bad", "method": "GET", "url": "/users/nobody@demo.se/calendarView"}
    answer = graph(
        m365,
        token,
        "/$batch",
        method="POST",
        json={"requests": [failing, view_step("next", dependsOn=["bad"])]},
    )
    by_id = {a["id"]: a for a in answer.json()["responses"]}
    assert by_id["bad"]["status"] == 404 and by_id["next"]["status"] == 424


@pytest.mark.parametrize(
    "steps",
    [
        [view_step("a", dependsOn=["ghost"])],
        [view_step("a", dependsOn=["b"]), view_step("b", dependsOn=["a"])],
        [view_step("a"), view_step("a")],
    ],
)
def test_a_malformed_batch_is_a_400(m365, token, steps):
    assert_graph_error(graph(m365, token, "/$batch", method="POST", json={"requests": steps}), 400)


# ----- all-day events


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2030-01-02T08:00:00", "2030-01-03T00:00:00"),
        ("2030-01-02T00:00:00", "2030-01-02T17:00:00"),
        ("2030-01-02T00:00:00", "2030-01-02T00:00:00"),
    ],
)
def test_an_all_day_event_must_run_midnight_to_midnight(m365, token, start, end):
    response = graph(
        m365,
        token,
        f"/users/{ANNA}/events",
        method="POST",
        json={
            "subject": "Heldag?",
            "isAllDay": True,
            "start": {"dateTime": start, "timeZone": "W. Europe Standard Time"},
            "end": {"dateTime": end, "timeZone": "W. Europe Standard Time"},
        },
    )
    assert_graph_error(response, 400, "ErrorInvalidRequest")
    subjects = [e["subject"] for e in view(m365, token, **{"$select": "subject"}).json()["value"]]
    assert "Heldag?" not in subjects


def test_a_change_graph_refuses_leaves_the_event_as_it_was(m365, token):
    created = pacific_meeting(m365)
    refused = graph(
        m365,
        token,
        f"/users/{ANNA}/events/{created['id']}",
        method="PATCH",
        json={"isAllDay": True},
    )
    assert_graph_error(refused, 400, "ErrorInvalidRequest")
    event = graph(m365, token, f"/users/{ANNA}/events/{created['id']}").json()
    assert event["isAllDay"] is False


# ----- subscriptions: https only


def subscribe(m365, token, url):
    return graph(
        m365,
        token,
        "/subscriptions",
        method="POST",
        json={
            "changeType": "created,updated,deleted",
            "resource": f"/users/{ANNA_ENCODED}/events",
            "notificationUrl": url,
            "lifecycleNotificationUrl": url,
            "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=60)).isoformat(),
            "clientState": "strict",
        },
    )


def test_a_non_https_notification_url_is_refused(m365, token):
    for url in ("http://127.0.0.1:9/hook", "ftp://127.0.0.1/hook"):
        error = assert_graph_error(subscribe(m365, token, url), 400, "InvalidRequest")
        assert "is not supported" in error["message"]
    assert m365.subscriptions() == []
    assert [d for d in m365.deliveries() if d["kind"] == "validation"] == []


def test_make_runs_concession_admits_only_http_loopback(tmp_path, m365_ca):
    server = M365Server(port=0, ca=m365_ca, allow_http_loopback=True).start()
    try:
        assert server.sandbox.acceptable_url("http://127.0.0.1:8000/hook")
        assert server.sandbox.acceptable_url("http://localhost:8000/hook")
        assert not server.sandbox.acceptable_url("http://kalender.example.se/hook")
        assert server.sandbox.acceptable_url("https://kalender.example.se/hook")
    finally:
        server.stop()
    strict = M365Server(port=0, ca=m365_ca).start()
    try:
        assert not strict.sandbox.acceptable_url("http://127.0.0.1:8000/hook")
    finally:
        strict.stop()


def test_an_endpoint_with_an_untrusted_certificate_fails_validation(m365, token):
    import trustme

    stranger = NotificationEndpoint(trustme.CA())
    try:
        assert_graph_error(subscribe(m365, token, stranger.url), 400, "ValidationError")
    finally:
        stranger.stop()


# ----- deliveries


@pytest.fixture
def endpoint(m365):
    endpoint = NotificationEndpoint(m365.ca)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def subscribed(m365, token, endpoint):
    created = subscribe(m365, token, endpoint.url)
    assert created.status_code == 201, created.text
    return created.json()


def meeting(m365, n=0):
    return m365.create_event(
        ANNA,
        subject=f"Möte {n}",
        start={"dateTime": f"2030-01-02T{8 + n:02}:00:00", "timeZone": "UTC"},
        end={"dateTime": f"2030-01-02T{8 + n:02}:30:00", "timeZone": "UTC"},
    )


def test_notifications_pending_together_share_one_post_each_with_its_own_id(
    m365, endpoint, subscribed
):
    m365.knobs(delivery_batch_window_ms=500)
    created = [meeting(m365, n) for n in range(5)]
    wait_for(lambda: len(endpoint.notifications()) == 5, message="five notifications")
    assert [len(post["body"]["value"]) for post in endpoint.posts] == [5]
    notes = endpoint.notifications()
    assert len({note["id"] for note in notes}) == 5 and all(note["id"] for note in notes)
    assert [note["resourceData"]["id"] for note in notes] == [e["id"] for e in created]
    assert all(note["subscriptionId"] == subscribed["id"] for note in notes)
    assert {note["clientState"] for note in notes} == {"strict"}


def test_a_failed_delivery_is_retried_with_exponential_backoff(m365, endpoint, subscribed):
    m365.knobs(delivery_time_scale=0.03)  # 10 s, 20 s, 40 s … become 0.3 s, 0.6 s, 1.2 s …
    endpoint.status = 503
    meeting(m365)
    wait_for(lambda: len(endpoint.posts) >= 4, message="four attempts")
    endpoint.status = 202
    wait_for(lambda: m365.delivered(), message="the delivery")
    times = [post["time"] for post in endpoint.posts]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert all(gap >= 0.27 for gap in gaps), gaps
    assert all(later > earlier * 1.5 for earlier, later in zip(gaps, gaps[1:], strict=False))
    ids = {post["body"]["value"][0]["id"] for post in endpoint.posts}
    assert len(ids) == 1  # the same notification, retried
    attempts = [d["attempt"] for d in m365.deliveries() if d["kind"] == "notification"]
    assert attempts == list(range(len(endpoint.posts)))


def test_graph_gives_up_after_four_hours(m365, endpoint, subscribed):
    m365.knobs(delivery_time_scale=0.0005)  # four hours in 7.2 s
    endpoint.status = 500
    started = time.monotonic()
    meeting(m365)
    expired = wait_for(
        lambda: [d for d in m365.deliveries() if d.get("expired")], 20, message="giving up"
    )
    assert time.monotonic() - started == pytest.approx(delivery.GIVE_UP_SECONDS * 0.0005, abs=2.5)
    assert expired[0]["count"] == 1 and len(endpoint.posts) >= 8
    assert m365.delivery_state()["pending"] == 0


def test_a_slow_endpoint_gets_new_notifications_ten_seconds_late(m365, endpoint, subscribed):
    m365.knobs(delivery_time_scale=0.1, delivery_answer_seconds=1.0)
    for n in range(8):  # eight prompt answers
        meeting(m365, n)
        wait_for(lambda n=n: len(endpoint.notifications()) == n + 1, message="a prompt answer")
    endpoint.delay = 1.5  # one answer too slow: 1 of 9 is over 10 %
    meeting(m365, 8)
    wait_for(lambda: [d for d in m365.deliveries() if d.get("error")], message="the slow one")
    endpoint.delay = 0
    assert m365.delivery_state()["endpoints"][endpoint.url] == "slow"
    made = time.monotonic()
    late = meeting(m365, 9)
    wait_for(
        lambda: any(n["resourceData"]["id"] == late["id"] for n in endpoint.notifications()),
        message="the late notification",
    )
    arrived = next(
        post["time"]
        for post in endpoint.posts
        if any(n["resourceData"]["id"] == late["id"] for n in post["body"]["value"])
    )
    assert arrived - made >= delivery.SLOW_WAIT_SECONDS * 0.1 - 0.05


def test_an_endpoint_too_often_slow_is_dropped_for_ten_minutes(m365, endpoint, subscribed):
    m365.knobs(delivery_time_scale=0.005, delivery_answer_seconds=1.0)  # 10 minutes in 3 s
    meeting(m365, 0)
    wait_for(lambda: endpoint.notifications(), message="a prompt answer")
    endpoint.delay = 1.5
    meeting(m365, 1)  # 1 of 2 answers too slow: over 15 %
    wait_for(lambda: [d for d in m365.deliveries() if d.get("error")], message="the slow one")
    endpoint.delay = 0
    lost = meeting(m365, 2)
    assert m365.delivery_state()["endpoints"][endpoint.url] == "dropping"
    dropped = [d for d in m365.deliveries() if d.get("dropped")]
    assert [n["resourceData"]["id"] for d in dropped for n in d["payload"]["value"]][-1] == (
        lost["id"]
    )
    time.sleep(delivery.DROP_SECONDS * 0.005 + 0.2)
    after = meeting(m365, 3)
    wait_for(
        lambda: any(n["resourceData"]["id"] == after["id"] for n in endpoint.notifications()),
        message="deliveries after the drop period",
    )
    assert lost["id"] not in [n["resourceData"]["id"] for n in endpoint.notifications()]


def test_backoff_doubles_up_to_half_an_hour():
    assert [delivery.backoff_seconds(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert delivery.backoff_seconds(20) == 30 * 60
