"""The Microsoft 365 sandbox's Entra ID groups speak Graph v1.0: list, members, delta."""

import time
from urllib.parse import parse_qs, urlsplit

import msal
import pytest

from sandbox.m365 import demo
from sandbox.m365.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, M365Server
from tests.m365_sandbox import DEMO_TENANT, M365Handle

SCOPES = ["https://graph.microsoft.com/.default"]
EVENTUAL = {"ConsistencyLevel": "eventual"}
ANNA, BJORN, CECILIA = (demo.PEOPLE[i][0] for i in range(3))


@pytest.fixture
def handle(tmp_path):
    server = M365Server(port=0, ca_file=tmp_path / "ca.pem").start()
    handle = M365Handle(server)
    yield handle
    handle.http.close()
    crashes = list(server.sandbox.crashes)
    server.stop()
    assert not crashes, crashes


def token_for(handle, tenant=DEMO_TENANT):
    app = msal.ConfidentialClientApplication(
        DEFAULT_CLIENT_ID,
        client_credential=DEFAULT_CLIENT_SECRET,
        authority=f"{handle.url}/{tenant}",
        http_client=handle.http,
        instance_discovery=False,
    )
    return app.acquire_token_for_client(SCOPES)["access_token"]


@pytest.fixture
def token(handle):
    return token_for(handle)


def get(handle, token, path_or_url, headers=None, **params):
    url = path_or_url if path_or_url.startswith("https://") else f"{handle.url}/v1.0{path_or_url}"
    headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    return handle.http.get(url, headers=headers, params=params or None, timeout=30)


def ok(response) -> dict:
    assert response.status_code == 200, response.text[:500]
    return response.json()


def error_code(response, status) -> str:
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["innerError"]["request-id"] and error["message"]
    return error["code"]


def follow(handle, token, first) -> tuple[list[dict], str, int]:
    """Every page of a delta round: (values, the deltaLink, how many requests it took)."""
    values, body, requests = [], ok(first), 1
    while True:
        values += body["value"]
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return values, body["@odata.deltaLink"], requests
        body, requests = ok(get(handle, token, body["@odata.nextLink"])), requests + 1


def members_in(values, group_id) -> tuple[set, set]:
    """(added, removed) member ids over a round's pages for one group."""
    added, removed = set(), set()
    for value in values:
        if value["id"] != group_id:
            continue
        for member in value.get("members@delta", []):
            (removed if "@removed" in member else added).add(member["id"])
    return added, removed


def test_it_lists_groups_filtered_by_display_name_and_pages(handle, token):
    for n in range(3):
        handle.create_group(f"Kalender Team {n}")
    handle.create_group("Ekonomi")
    body = ok(get(handle, token, "/groups", **{"$filter": "startswith(displayName,'kalender')"}))
    names = sorted(g["displayName"] for g in body["value"])
    assert names == ["Kalender Team 0", "Kalender Team 1", "Kalender Team 2", "Kalenderkoppling"]
    assert all(g["securityEnabled"] is True and "members" not in g for g in body["value"])
    first = ok(
        get(
            handle,
            token,
            "/groups",
            **{"$filter": "startswith(displayName,'Kalender')", "$select": "id,displayName"},
            **{"$top": "3"},
        )
    )
    assert len(first["value"]) == 3 and set(first["value"][0]) == {"id", "displayName"}
    second = ok(get(handle, token, first["@odata.nextLink"]))
    assert "@odata.nextLink" not in second
    assert len({g["id"] for g in first["value"] + second["value"]}) == 4


def test_search_needs_consistency_level_eventual_as_graph_does(handle, token):
    handle.create_group("Säljare Norr")
    query = {"$search": '"displayName:norr"'}
    refused = get(handle, token, "/groups", **query)
    assert error_code(refused, 400) == "Request_UnsupportedQuery"
    assert "ConsistencyLevel: eventual" in refused.json()["error"]["message"]
    body = ok(get(handle, token, "/groups", headers=EVENTUAL, **query, **{"$count": "true"}))
    assert [g["displayName"] for g in body["value"]] == ["Säljare Norr"]
    assert body["@odata.count"] == 1
    # Without the header $count=true is silently ignored.
    plain = ok(get(handle, token, "/groups", **{"$count": "true"}))
    assert "@odata.count" not in plain and plain["value"]


def test_a_group_reads_by_id_and_an_unknown_one_is_404(handle, token):
    group_id = demo.demo_group_id()
    body = ok(get(handle, token, f"/groups/{group_id}", **{"$select": "displayName"}))
    assert body == {
        "@odata.context": f"{handle.url}/v1.0/$metadata#groups/$entity",
        "id": group_id,
        "displayName": "Kalenderkoppling",
    }
    missing = get(handle, token, "/groups/00000000-0000-4000-8000-000000000000")
    assert error_code(missing, 404) == "Request_ResourceNotFound"
    assert error_code(get(handle, token, "/groups/not-a-guid"), 400) == "Request_BadRequest"


def test_transitive_members_resolve_nested_groups_and_page(handle, token):
    inner = handle.create_group("Support", members=[CECILIA, ANNA])
    outer = handle.create_group("Alla", members=[ANNA, BJORN], groups=[inner["id"]])
    path = f"/groups/{outer['id']}/transitiveMembers/microsoft.graph.user"
    params = {"$select": "id,mail,userPrincipalName", "$top": "2"}
    first = ok(get(handle, token, path, **params))
    assert first["@odata.context"].endswith("$metadata#users")
    assert len(first["value"]) == 2 and "@odata.count" not in first
    assert set(first["value"][0]) == {"id", "mail", "userPrincipalName"}
    second = ok(get(handle, token, first["@odata.nextLink"]))
    assert "@odata.nextLink" not in second
    mails = sorted(u["mail"] for u in first["value"] + second["value"])
    assert mails == sorted([ANNA, BJORN, CECILIA])  # Anna once, the nested group's people too
    counted = ok(get(handle, token, path, headers=EVENTUAL, **{"$count": "true"}))
    assert counted["@odata.count"] == 3
    direct = ok(get(handle, token, f"/groups/{outer['id']}/members"))
    assert sorted(m["@odata.type"] for m in direct["value"]) == [
        "#microsoft.graph.group",
        "#microsoft.graph.user",
        "#microsoft.graph.user",
    ]
    too_big = get(handle, token, path, **{"$top": "1000"})
    assert error_code(too_big, 400) == "Request_UnsupportedQuery"


def test_the_demo_group_holds_demo_abs_people(handle, token):
    path = f"/groups/{demo.demo_group_id()}/transitiveMembers/microsoft.graph.user"
    body = ok(get(handle, token, path, **{"$select": "id,mail,userPrincipalName"}))
    expected = sorted(e for e, _ in [*demo.PEOPLE, demo.CONSULTANT])
    assert sorted(u["mail"] for u in body["value"]) == expected
    listed = ok(get(handle, token, "/groups", **{"$filter": "displayName eq 'Kalenderkoppling'"}))
    assert [g["id"] for g in listed["value"]] == [demo.demo_group_id()]


def test_delta_tracks_one_groups_membership_round_by_round(handle, token):
    group = handle.create_group("Kalendrar", members=[ANNA, BJORN])
    anna, bjorn, cecilia = (demo.user_id(m) for m in (ANNA, BJORN, CECILIA))
    query = {"$filter": f"id eq '{group['id']}'", "$select": "displayName,members"}
    values, link, _ = follow(handle, token, get(handle, token, "/groups/delta", **query))
    assert [v["id"] for v in values] == [group["id"]]
    assert values[0]["displayName"] == "Kalendrar"
    assert members_in(values, group["id"]) == ({anna, bjorn}, set())
    assert all(m["@odata.type"] == "#microsoft.graph.user" for m in values[0]["members@delta"])
    assert "$deltatoken=" in link

    handle.add_group_members(group["id"], [CECILIA])
    handle.remove_group_members(group["id"], [BJORN])
    handle.create_group("Someone else's", members=[ANNA])  # not tracked by the filter
    values, link, _ = follow(handle, token, get(handle, token, link))
    assert [v["id"] for v in values] == [group["id"]]
    assert values[0]["displayName"] == "Kalendrar"
    assert members_in(values, group["id"]) == ({cecilia}, {bjorn})
    removed = [m for m in values[0]["members@delta"] if "@removed" in m]
    assert removed == [
        {"@odata.type": "#microsoft.graph.user", "id": bjorn, "@removed": {"reason": "deleted"}}
    ]

    values, again, _ = follow(handle, token, get(handle, token, link))
    assert values == [] and "$deltatoken=" in again

    handle.delete_group(group["id"])
    values, _, _ = follow(handle, token, get(handle, token, again))
    assert values == [{"id": group["id"], "@removed": {"reason": "changed"}}]


def test_delta_without_members_in_select_ignores_membership_changes(handle, token):
    group = handle.create_group("Namn", members=[ANNA])
    query = {"$filter": f"id eq '{group['id']}'", "$select": "displayName"}
    values, link, _ = follow(handle, token, get(handle, token, "/groups/delta", **query))
    assert values == [{"id": group["id"], "displayName": "Namn"}]
    handle.add_group_members(group["id"], [BJORN])
    assert follow(handle, token, get(handle, token, link))[0] == []


def test_delta_refuses_what_graph_refuses(handle, token):
    by_name = get(handle, token, "/groups/delta", **{"$filter": "startswith(displayName,'K')"})
    assert error_code(by_name, 400) == "Request_UnsupportedQuery"
    assert error_code(get(handle, token, "/groups/delta", **{"$top": "5"}), 400) == "BadRequest"
    # There is no /groups/{id}/members/delta in Graph v1.0.
    members_delta = get(handle, token, f"/groups/{demo.demo_group_id()}/members/delta")
    assert error_code(members_delta, 400) == "Request_BadRequest"


def test_delta_latest_token_syncs_from_now(handle, token):
    group_id = demo.demo_group_id()
    query = {"$filter": f"id eq '{group_id}'", "$deltatoken": "latest"}
    body = ok(get(handle, token, "/groups/delta", **query))
    assert body["value"] == [] and "@odata.deltaLink" in body
    handle.remove_group_members(group_id, [ANNA])
    values, _, _ = follow(handle, token, get(handle, token, body["@odata.deltaLink"]))
    assert members_in(values, group_id) == (set(), {demo.user_id(ANNA)})


def test_a_stale_or_unknown_delta_token_is_410_resync_required(handle, token):
    group_id = demo.demo_group_id()
    query = {"$filter": f"id eq '{group_id}'", "$select": "displayName,members"}
    _, link, _ = follow(handle, token, get(handle, token, "/groups/delta", **query))
    assert ok(get(handle, token, link))["value"] == []  # still good
    handle.stale_group_delta()
    stale = get(handle, token, link)
    assert error_code(stale, 410) == "resyncRequired"
    restart = stale.headers["Location"]
    assert parse_qs(urlsplit(restart).query)["$filter"] == [f"id eq '{group_id}'"]
    values, _, _ = follow(handle, token, get(handle, token, restart))  # a full round again
    assert len(members_in(values, group_id)[0]) == len(demo.PEOPLE) + 1  # and the consultant
    unknown = get(handle, token, "/groups/delta", **{"$deltatoken": "bm90LWEtdG9rZW4"})
    assert error_code(unknown, 410) == "resyncRequired"


def test_reading_groups_needs_group_member_read_all(handle, token):
    handle.set_app_roles(["Calendars.Read"])
    path = f"/groups/{demo.demo_group_id()}/transitiveMembers/microsoft.graph.user"
    for refused in (
        get(handle, token, "/groups"),
        get(handle, token, path),
        get(handle, token, "/groups/delta"),
    ):
        assert error_code(refused, 403) == "Authorization_RequestDenied"
    users = handle.http.get(
        f"{handle.url}/v1.0/users/{ANNA}", headers={"Authorization": f"Bearer {token}"}
    )
    assert users.status_code == 200  # the calendar side is untouched
    handle.set_app_roles(["Calendars.Read", "GroupMember.Read.All"])
    assert ok(get(handle, token, path))["value"]


def test_a_group_of_ten_thousand_pages_quickly(handle):
    tenant = handle.control(
        "POST",
        "tenants",
        {"name": "Stor AB", "generate": {"users": 10_000, "fortnight": False, "domain": "stor.se"}},
    )["id"]
    mails = [f"user{n:05d}@stor.se" for n in range(10_000)]
    nested = handle.create_group("Stor del", members=mails[5000:], tenant=tenant)
    group = handle.create_group("Stor", members=mails[:5000], groups=[nested["id"]], tenant=tenant)
    token = token_for(handle, tenant)
    started = time.monotonic()
    path = f"/groups/{group['id']}/transitiveMembers/microsoft.graph.user"
    body = ok(get(handle, token, path, **{"$select": "id,mail,userPrincipalName", "$top": "999"}))
    seen, requests = [u["mail"] for u in body["value"]], 1
    while "@odata.nextLink" in body:
        body = ok(get(handle, token, body["@odata.nextLink"]))
        seen, requests = seen + [u["mail"] for u in body["value"]], requests + 1
    members_time = time.monotonic() - started
    assert requests == 11 and len(seen) == 10_000 and set(seen) == set(mails)

    started = time.monotonic()
    query = {"$filter": f"id eq '{nested['id']}'", "$select": "displayName,members"}
    first = get(handle, token, "/groups/delta", **query)
    values, link, delta_requests = follow(handle, token, first)
    delta_time = time.monotonic() - started
    assert delta_requests == 6  # 1000 objects a page: the group and 999 members each
    assert len(members_in(values, nested["id"])[0]) == 5000
    handle.remove_group_members(nested["id"], mails[9000:9003], tenant=tenant)
    values, _, _ = follow(handle, token, get(handle, token, link))
    assert len(members_in(values, nested["id"])[1]) == 3
    print(
        f"\n10,000 transitive members in {requests} pages: {members_time:.2f} s; "
        f"5,000 in a delta round of {delta_requests} pages: {delta_time:.2f} s"
    )


def test_groups_and_delta_tokens_survive_a_restart_with_the_state_file(tmp_path):
    state = tmp_path / "m365.json"
    first = M365Server(port=0, ca_file=tmp_path / "ca.pem", state_file=state).start()
    handle = M365Handle(first)
    try:
        group = handle.create_group("Beständig", members=[ANNA])
        token = token_for(handle)
        query = {"$filter": f"id eq '{group['id']}'"}
        _, link, _ = follow(handle, token, get(handle, token, "/groups/delta", **query))
        handle.add_group_members(group["id"], [BJORN])
    finally:
        handle.http.close()
        first.stop()
    again = M365Server(port=0, ca_file=tmp_path / "ca2.pem", state_file=state).start()
    handle = M365Handle(again)
    try:
        token = token_for(handle)
        link = link.replace(first.base_url, again.base_url)
        values, _, _ = follow(handle, token, get(handle, token, link))
        assert members_in(values, group["id"]) == ({demo.user_id(BJORN)}, set())
        kept = {g["displayName"]: g for g in handle.groups()}
        assert set(kept["Beständig"]["members"]) == {demo.user_id(ANNA), demo.user_id(BJORN)}
        assert "Kalenderkoppling" in kept
    finally:
        handle.http.close()
        again.stop()
