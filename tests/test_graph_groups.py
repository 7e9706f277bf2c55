"""Katalog Synk's Graph side (calendarsync/providers/graph/groups.py) against the M365 sandbox:
search, whole reads, delta rounds, nested groups, deleted groups, a missing permission and
what the requests ask for."""

import pytest

from calendarsync import providers
from calendarsync.providers.base import AccessLost, ProviderError
from calendarsync.providers.graph import groups
from tests.m365_sandbox import connected_graph_integration, selected_fields

PEOPLE = [f"person{n}@kund.se" for n in range(6)]
# What a group request may name: ids, mail and UPN of people, a group's display name, and the
# membership relation of a delta (ids only).
ALLOWED_FIELDS = {"id", "mail", "userprincipalname", "displayname", "members"}


@pytest.fixture
def tenant(m365):
    return m365.add_tenant("Kund AB", users=PEOPLE)


@pytest.fixture
def directory(company, tenant):
    return providers.groups_for(connected_graph_integration(company, tenant))


def user_ids(m365, tenant) -> dict[str, str]:
    users = next(t for t in m365.control("GET", "tenants")["value"] if t["id"] == tenant)
    return {u["mail"]: u["id"] for u in users["users"]}


def graph_calls(m365) -> list[dict]:
    return [e for e in m365.requests() if e["path"].startswith("/v1.0")]


def emails(read) -> list[str]:
    return sorted(mail for mail, _upn in read.members.values())


def test_it_finds_groups_by_the_words_of_their_names(m365, tenant, directory):
    for name in ("Säljare Norr", "Support Norr", "Ekonomi"):
        m365.create_group(name, tenant=tenant)
    m365.clear_requests()
    found = directory.find_groups("  norr ")
    assert [g.name for g in found] == ["Support Norr", "Säljare Norr"]  # ä after z, as in Swedish
    assert all(len(g.provider_id) == 36 for g in found)
    (call,) = graph_calls(m365)
    assert call["path"] == "/v1.0/groups"
    assert call["headers"]["consistencylevel"] == "eventual"
    assert call["query"]["$search"] == '"displayName:norr"'
    assert "securityEnabled eq true or mailEnabled eq true" in call["query"]["$filter"]
    assert int(call["query"]["$top"]) <= 25
    assert directory.find_groups("   ") == []


def test_quotes_in_the_text_do_not_break_the_query(m365, tenant, directory):
    m365.create_group('Team "Nord"', tenant=tenant)
    m365.create_group("O'Brien's team", tenant=tenant)
    m365.create_group("Sales OR Support", tenant=tenant)
    assert [g.name for g in directory.find_groups('team "no')] == ['Team "Nord"']
    assert [g.name for g in directory.find_groups("O'Brien")] == ["O'Brien's team"]
    assert [g.name for g in directory.find_groups("Sales OR")] == ["Sales OR Support"]
    assert directory.find_groups("x\\'\"") == []
    assert not m365.crashes()


def test_a_whole_read_pages_through_transitive_members(m365, company, settings):
    tenant = m365.control(
        "POST",
        "tenants",
        {"name": "Stor AB", "generate": {"users": 1200, "domain": "stor.se", "fortnight": False}},
    )["id"]
    everyone = [f"user{n:05d}@stor.se" for n in range(1200)]
    group = m365.create_group("Alla", members=everyone, tenant=tenant)
    directory = providers.groups_for(connected_graph_integration(company, tenant))
    m365.clear_requests()
    read = directory.read_members(group["id"], {}, "")
    assert read.full is True and len(read.members) == 1200
    assert emails(read) == everyone
    assert all(upn == mail for mail, upn in read.members.values())  # the sandbox's UPN = mail
    assert read.cursor.startswith(m365.url + "/v1.0/groups/delta?$deltatoken=")
    pages = [e for e in graph_calls(m365) if "transitiveMembers" in e["path"]]
    assert len(pages) == 2
    assert pages[0]["query"]["$top"] == "999"
    assert pages[0]["path"].endswith("/transitiveMembers/microsoft.graph.user")


def test_a_delta_round_applies_additions_and_removals_in_few_requests(m365, tenant, directory):
    group = m365.create_group("Kalender", members=PEOPLE[:3], tenant=tenant)
    first = directory.read_members(group["id"], {}, "")
    assert emails(first) == PEOPLE[:3]
    m365.add_group_members(group["id"], [PEOPLE[4]], tenant=tenant)
    m365.remove_group_members(group["id"], [PEOPLE[0]], tenant=tenant)
    m365.clear_requests()
    second = directory.read_members(group["id"], first.members, first.cursor)
    assert second.full is False
    assert emails(second) == [PEOPLE[1], PEOPLE[2], PEOPLE[4]]
    ids = user_ids(m365, tenant)
    assert second.members[ids[PEOPLE[4]]] == (PEOPLE[4], PEOPLE[4])
    calls = graph_calls(m365)
    assert len(calls) == 2, calls  # the delta round, and one page of members for the new one
    assert not [c for c in calls if c["path"].startswith("/v1.0/users")]  # no User.Read.All
    assert second.cursor and second.cursor != first.cursor
    # Nothing changed since: one request, the same members.
    m365.clear_requests()
    third = directory.read_members(group["id"], second.members, second.cursor)
    assert (third.members, third.full) == (second.members, False)
    assert len(graph_calls(m365)) == 1


def test_the_delta_link_is_taken_before_the_whole_read(m365, tenant, directory):
    """So a change made while the members are read comes again in the next round, never
    lost (replaying an addition or a removal already seen changes nothing)."""
    group = m365.create_group("Kalender", members=PEOPLE[:2], tenant=tenant)
    m365.clear_requests()
    directory.read_members(group["id"], {}, "")
    paths = [(c["path"], c["query"].get("$deltatoken")) for c in graph_calls(m365)]
    assert paths[0] == ("/v1.0/groups/delta", "latest")
    assert paths[1][0].endswith("/transitiveMembers/microsoft.graph.user")
    assert graph_calls(m365)[0]["query"]["$filter"] == f"id eq '{group['id']}'"


def test_a_stale_delta_token_reads_the_group_whole(m365, tenant, directory):
    group = m365.create_group("Kalender", members=PEOPLE[:2], tenant=tenant)
    first = directory.read_members(group["id"], {}, "")
    m365.add_group_members(group["id"], [PEOPLE[3]], tenant=tenant)
    m365.stale_group_delta(tenant=tenant)
    m365.clear_requests()
    read = directory.read_members(group["id"], first.members, first.cursor)
    assert read.full is True
    assert emails(read) == [PEOPLE[0], PEOPLE[1], PEOPLE[3]]
    statuses = [c["status"] for c in graph_calls(m365)]
    assert statuses[0] == 410 and statuses[1:] == [200] * (len(statuses) - 1)
    assert read.cursor and read.cursor != first.cursor


def test_a_group_with_nested_groups_keeps_no_cursor(m365, tenant, directory):
    inner = m365.create_group("Support", members=[PEOPLE[2], PEOPLE[3]], tenant=tenant)
    outer = m365.create_group("Alla", members=PEOPLE[:2], groups=[inner["id"]], tenant=tenant)
    read = directory.read_members(outer["id"], {}, "")
    assert emails(read) == PEOPLE[:4]
    assert read.cursor == ""  # a change inside Support would never show in outer's delta
    # A group that gains a nested group is read whole at the next round.
    flat = m365.create_group("Platt", members=[PEOPLE[0]], tenant=tenant)
    first = directory.read_members(flat["id"], {}, "")
    assert first.cursor
    m365.add_group_members(flat["id"], [inner["id"]], tenant=tenant)
    second = directory.read_members(flat["id"], first.members, first.cursor)
    assert second.full is True and second.cursor == ""
    assert emails(second) == [PEOPLE[0], PEOPLE[2], PEOPLE[3]]


def test_a_deleted_group_raises_instead_of_answering_no_members(m365, tenant, directory):
    group = m365.create_group("Kalender", members=PEOPLE[:2], tenant=tenant)
    first = directory.read_members(group["id"], {}, "")
    m365.delete_group(group["id"], tenant=tenant)
    with pytest.raises(ProviderError) as with_cursor:
        directory.read_members(group["id"], first.members, first.cursor)
    assert with_cursor.value.code == "group_not_found"
    with pytest.raises(ProviderError) as whole:
        directory.read_members(group["id"], {}, "")
    assert whole.value.code == "group_not_found"


def test_a_missing_group_permission_does_not_stop_calendar_syncing(m365, tenant, directory):
    group = m365.create_group("Kalender", members=PEOPLE[:2], tenant=tenant)
    m365.set_app_roles(["Calendars.Read"], tenant=tenant)
    for call in (
        lambda: directory.find_groups("kal"),
        lambda: directory.read_members(group["id"], {}, ""),
    ):
        with pytest.raises(ProviderError) as refused:
            call()
        assert refused.value.code == "group_permission_missing"
        assert "GroupMember.Read.All" in str(refused.value)
        assert not isinstance(refused.value, AccessLost)  # would pause the whole integration
    m365.set_app_roles(["Calendars.Read", "GroupMember.Read.All"], tenant=tenant)
    assert [g.name for g in directory.find_groups("kal")] == ["Kalender"]


def test_group_requests_ask_only_for_ids_mail_upn_and_names(m365, tenant, directory):
    inner = m365.create_group("Support", members=[PEOPLE[5]], tenant=tenant)
    group = m365.create_group("Kalender", members=PEOPLE[:3], tenant=tenant)
    nested = m365.create_group("Alla", members=[PEOPLE[0]], groups=[inner["id"]], tenant=tenant)
    m365.clear_requests()
    directory.find_groups("kal")
    directory.find_groups('ka"l')
    first = directory.read_members(group["id"], {}, "")
    m365.add_group_members(group["id"], [PEOPLE[3]], tenant=tenant)
    directory.read_members(group["id"], first.members, first.cursor)
    directory.read_members(nested["id"], {}, "")
    calls = graph_calls(m365)
    assert len(calls) >= 8
    for call in calls:
        assert call["method"] == "GET" and call["path"].startswith("/v1.0/groups")
        fields = selected_fields(call)
        delta_page = "$deltatoken" in call["query"] or "$skiptoken" in call["query"]
        assert fields or delta_page, call  # never the default properties
        assert fields <= ALLOWED_FIELDS, call
        if "members" in fields:
            assert call["path"] == "/v1.0/groups/delta"


def test_the_module_is_what_groups_for_finds(company, tenant, m365):
    directory = providers.groups_for(connected_graph_integration(company, tenant))
    assert isinstance(directory, groups.GraphGroups)
    assert directory.client.tenant_id == tenant
