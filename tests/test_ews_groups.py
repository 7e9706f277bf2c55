"""Katalog Synk's EWS group directory against the EWS sandbox, through the product's own
exchangelib set-up: finding distribution groups, reading their members (nested groups once,
contacts skipped), a group gone, and that only directory calls are made."""

import pytest

from calendarsync.providers import groups_for
from calendarsync.providers.base import Group, MemberRead, ProviderError
from calendarsync.providers.ews import groups as ews_groups

ADMIN = "it@kommun.example.se"
ANNA, BO, CILLA = (f"{name}@kommun.example.se" for name in ("anna", "bo", "cilla"))
EKONOMI, LEDNING, STAB = (f"{name}@kommun.example.se" for name in ("ekonomi", "ledning", "stab"))
EXTERN = {"email": "Revisor@Byra.example.se", "name": "Revisorn", "type": "Contact"}


@pytest.fixture
def integration(on_prem, company):
    return on_prem(company, ADMIN, name="IT")


@pytest.fixture
def directory(ews, integration):
    for email, name in ((ANNA, "Anna Ek"), (BO, "Bo Ekström"), (CILLA, "Cilla Berg")):
        ews.add_mailbox(email, name)
    ews.add_group(STAB, "Staben", [CILLA])
    ews.add_group(EKONOMI, "Ekonomi", [ANNA, STAB, EXTERN])
    ews.add_group(LEDNING, "Ekledningen", [BO.upper(), EKONOMI])
    ews.add_group_members(STAB, [LEDNING])  # a cycle: ledning → ekonomi → stab → ledning
    return groups_for(integration)


def test_it_is_the_kinds_group_directory(directory):
    assert isinstance(directory, ews_groups.EwsGroupDirectory)


def test_it_finds_groups_by_name_prefix_and_only_groups(ews, directory):
    # "Ek" also matches the mailboxes Anna Ek and Bo Ekström: they are no groups.
    found = directory.find_groups("Ek")
    assert found == [Group(LEDNING, "Ekledningen"), Group(EKONOMI, "Ekonomi")]  # by name
    assert directory.find_groups("stab@") == [Group(STAB, "Staben")]
    resolved = ews.requests(operation="ResolveNames")
    assert [entry["query"] for entry in resolved] == ["Ek", "stab@"]


def test_it_finds_nothing_without_an_error(ews, directory):
    assert directory.find_groups("Zzz") == []
    assert ews.requests(operation="ResolveNames")[-1]["response_code"] == (
        "ErrorNameResolutionNoResults"
    )
    assert directory.find_groups("Anna") == []  # a mailbox only
    assert directory.find_groups("   ") == []


def test_it_reads_direct_and_nested_members_each_group_once(ews, directory):
    ews.clear_requests()
    read = directory.read_members(LEDNING, {}, "")
    assert read == MemberRead(
        members={BO: (BO, ""), ANNA: (ANNA, ""), CILLA: (CILLA, "")}, cursor="", full=True
    )
    expanded = [entry["group"] for entry in ews.requests(operation="ExpandDL")]
    assert sorted(expanded) == sorted([LEDNING, EKONOMI, STAB])  # the cycle read once each


def test_it_skips_contacts(ews, directory):
    read = directory.read_members(EKONOMI, {}, "")
    assert "revisor@byra.example.se" not in read.members
    assert set(read.members) == {ANNA, CILLA, BO}  # stab → ledning → bo


def test_it_follows_changes_made_in_exchange(ews, directory):
    ews.remove_group_members(STAB, [CILLA, LEDNING])
    ews.add_group_members(EKONOMI, [BO])
    assert set(directory.read_members(EKONOMI, {}, "").members) == {ANNA, BO}
    ews.remove_group_members(EKONOMI, [ANNA, BO, STAB])
    # An emptied group is an empty answer (the core's hold decides); only a gone one raises.
    assert directory.read_members(EKONOMI, {}, "").members == {}


def test_a_group_that_no_longer_exists_raises(ews, directory):
    ews.delete_group(LEDNING)
    with pytest.raises(ProviderError) as raised:
        directory.read_members(LEDNING, {BO: (BO, "")}, "")
    assert raised.value.code == "group_not_found" and raised.value.permanent
    assert ews.requests(operation="ExpandDL")[-1]["response_code"] == (
        "ErrorNameResolutionNoResults"
    )
    assert set(directory.read_members(STAB, {}, "").members) == {CILLA}  # it left stab too


def test_a_cut_answer_raises_rather_than_dropping_members(ews, directory):
    ews.knobs(expand_dl_limit=1)
    with pytest.raises(ProviderError) as raised:
        directory.read_members(EKONOMI, {}, "")
    assert raised.value.code == "group_truncated"


def test_failures_are_classified(ews, directory):
    ews.knobs(password="Ett-annat-lösen-2")
    with pytest.raises(ProviderError) as raised:
        directory.find_groups("Ek")
    assert raised.value.code == "unauthorized" and raised.value.permanent


def test_only_directory_calls_are_made_as_the_service_account(ews, directory):
    ews.clear_requests()
    directory.find_groups("Ek")
    directory.read_members(LEDNING, {}, "")
    with pytest.raises(ProviderError):
        directory.read_members("borta@kommun.example.se", {}, "")
    entries = [entry for entry in ews.requests() if entry.get("operation")]
    operations = {entry["operation"] for entry in entries}
    assert {"ResolveNames", "ExpandDL"} <= operations
    assert operations <= {"ResolveNames", "ExpandDL", "ConvertId"}  # ConvertId: version probe
    assert all(entry.get("mailbox") is None for entry in entries)  # nobody impersonated
    assert not any(entry.get("fields") or entry.get("items") for entry in entries)
    names = {name for _, name in ews.checked.seen}
    assert {"ResolveNamesResponse", "ExpandDLResponse"} <= names
