"""The EWS sandbox's distribution groups: changed as if in Exchange admin through /_sandbox/
controls, read with real exchangelib (ResolveNames, ExpandDL). Every answer is validated
against Microsoft's EWS schema by the `ews` fixture."""

import threading
import warnings

import pytest
import requests
from exchangelib.errors import ErrorNameResolutionNoResults
from requests_ntlm import HttpNtlmAuth

from sandbox.ews import DEFAULT_PASSWORD, DEFAULT_USERNAME, demo

ASA = demo.PEOPLE[0][0]
PEOPLE = [email for email, *_ in demo.PEOPLE]
GROUP, NESTED = "projekt@demokommun.se", "styrgrupp@demokommun.se"
CONTACT = {"email": "Konsult@Extern.example.se", "name": "Konsulten", "type": "Contact"}


@pytest.fixture
def protocol(ews):
    account = ews.account(ASA)
    assert account.protocol.version.build  # directory calls need the probed version first
    return account.protocol


def expanded(protocol, email):
    return sorted((m.email_address, m.mailbox_type, m.name) for m in protocol.expand_dl(email))


def status_of(ews, method, path, payload=None):
    return ews.http.request(method, f"{ews.url}/_sandbox/{path}", json=payload, timeout=15)


def test_expand_dl_lists_direct_members_nested_groups_and_contacts_as_exchange(ews, protocol):
    ews.add_group(NESTED, "Styrgruppen", [PEOPLE[1]])
    made = ews.add_group(GROUP, "Projektet", [PEOPLE[0], NESTED, CONTACT])
    assert made["email"] == GROUP and made["members"][-1]["email"] == "konsult@extern.example.se"
    assert expanded(protocol, GROUP) == sorted([
        (PEOPLE[0], "Mailbox", demo.PEOPLE[0][1]),
        (NESTED, "PublicDL", "Styrgruppen"),  # not expanded: ExpandDL is not recursive
        ("konsult@extern.example.se", "Contact", "Konsulten"),
    ])  # fmt: skip
    assert ews.requests(operation="ExpandDL")[-1]["members"] == 3
    assert "ExpandDLResponse" in {name for _, name in ews.checked.seen}


def test_members_are_added_and_removed_as_in_exchange_admin(ews, protocol):
    ews.add_group(GROUP, "Projektet", [PEOPLE[0]])
    changed = ews.add_group_members(GROUP, [PEOPLE[1], PEOPLE[0].upper(), CONTACT])
    assert [m if isinstance(m, str) else m["email"] for m in changed["members"]] == [
        PEOPLE[0], PEOPLE[1], "konsult@extern.example.se"
    ]  # an address already there is not added twice  # fmt: skip
    assert {m[0] for m in expanded(protocol, GROUP)} == {
        PEOPLE[0], PEOPLE[1], "konsult@extern.example.se"
    }  # fmt: skip
    ews.remove_group_members(GROUP, [PEOPLE[0], "KONSULT@extern.example.se"])
    assert expanded(protocol, GROUP) == [(PEOPLE[1], "Mailbox", demo.PEOPLE[1][1])]
    ews.remove_group_members(GROUP, [PEOPLE[1]])
    assert expanded(protocol, GROUP) == []  # an empty group is still a group
    listed = {group["email"]: group for group in ews.groups()}
    assert listed[GROUP]["members"] == [] and "alla@demokommun.se" in listed


def test_a_deleted_group_is_unknown_and_leaves_its_parents(ews, protocol):
    ews.add_group(NESTED, "Styrgruppen", [PEOPLE[1]])
    ews.add_group(GROUP, "Projektet", [PEOPLE[0], NESTED])
    ews.delete_group(NESTED)
    with pytest.raises(ErrorNameResolutionNoResults):
        protocol.expand_dl(NESTED)
    assert ews.requests(operation="ExpandDL")[-1]["response_code"] == (
        "ErrorNameResolutionNoResults"
    )
    assert expanded(protocol, GROUP) == [(PEOPLE[0], "Mailbox", demo.PEOPLE[0][1])]
    assert NESTED not in {group["email"] for group in ews.groups()}
    assert status_of(ews, "DELETE", f"groups/{NESTED}").status_code == 404


def test_groups_may_contain_each_other(ews, protocol):
    ews.add_group(GROUP, "Projektet", [PEOPLE[0]])
    ews.add_group(NESTED, "Styrgruppen", [GROUP])
    ews.add_group_members(GROUP, [NESTED])
    assert (NESTED, "PublicDL", "Styrgruppen") in expanded(protocol, GROUP)
    assert expanded(protocol, NESTED) == [(GROUP, "PublicDL", "Projektet")]


def test_bad_changes_are_refused_and_change_nothing(ews):
    ews.add_group(GROUP, "Projektet", [PEOPLE[0]])
    refused = [
        ("POST", f"groups/{GROUP}/members", {"add": [PEOPLE[1], "ingen@demokommun.se"]}),
        ("POST", f"groups/{GROUP}/members", {"add": [GROUP]}),  # itself
        ("POST", f"groups/{GROUP}/members", {"add": [{"email": "x@y.se", "type": "Mailbox"}]}),
        ("POST", f"groups/{GROUP}/members", {"add": "inte-en-lista"}),
        ("POST", f"groups/{GROUP}/members", {"replace": []}),
        ("POST", "groups", {"email": NESTED, "members": ["ingen@demokommun.se"]}),
        ("POST", "groups", {"email": "utan-snabel-a", "members": []}),
        ("POST", "groups", {"name": "Utan adress"}),
    ]
    for method, path, payload in refused:
        assert status_of(ews, method, path, payload).status_code == 400, (path, payload)
    assert status_of(
        ews, "POST", "groups/okand@demokommun.se/members", {"add": []}
    ).status_code == (404)
    listed = {group["email"]: group["members"] for group in ews.groups()}
    assert listed[GROUP] == [PEOPLE[0]] and NESTED not in listed


def test_replacing_a_group_with_a_bad_list_keeps_the_old_one(ews):
    ews.add_group(GROUP, "Projektet", [PEOPLE[0]])
    bad = {"email": GROUP, "name": "Nytt", "members": ["ingen@demokommun.se"]}
    assert status_of(ews, "POST", "groups", bad).status_code == 400
    (group,) = [g for g in ews.groups() if g["email"] == GROUP]
    assert (group["name"], group["members"]) == ("Projektet", [PEOPLE[0]])


def test_concurrent_changes_are_all_kept(ews):
    ews.add_group(GROUP, "Projektet", [])
    addresses = [f"person{n:02}@demokommun.se" for n in range(24)]
    for address in addresses:
        ews.add_mailbox(address, address)

    failures = []

    def add(part):
        with requests.Session() as session:
            session.trust_env, session.verify = False, ews.ca_file
            for address in part:
                answer = session.post(f"{ews.url}/_sandbox/groups/{GROUP}/members",
                                      json={"add": [address]}, timeout=15)  # fmt: skip
                if answer.status_code != 200:
                    failures.append(answer.status_code)

    threads = [threading.Thread(target=add, args=(addresses[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (group,) = [g for g in ews.groups() if g["email"] == GROUP]
    assert not failures and sorted(group["members"]) == addresses


def test_resolve_names_finds_groups_as_public_dls(ews, protocol):
    ews.add_group(GROUP, "Projektet", [PEOPLE[0]])
    found = protocol.resolve_names(["Proj"])
    assert [(m.email_address, m.mailbox_type, m.name) for m in found] == [
        (GROUP, "PublicDL", "Projektet")
    ]


def test_resolve_names_answers_at_most_100_and_says_so(ews, protocol):
    for n in range(101):
        ews.add_mailbox(f"massa{n:03}@demokommun.se", f"Massa {n:03}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = protocol.resolve_names(["massa"])
    assert len(found) == 100
    assert any("at most 100 candidates" in str(w.message) for w in caught)
    assert ews.requests(operation="ResolveNames")[-1]["resolutions"] == 100


def test_expand_dl_limit_knob_cuts_the_answer(ews):
    ews.knobs(expand_dl_limit=2)
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>'
        "<m:ExpandDL><m:Mailbox><t:EmailAddress>alla@demokommun.se</t:EmailAddress>"
        "</m:Mailbox></m:ExpandDL></s:Body></s:Envelope>"
    )
    answer = requests.post(ews.ews_url, data=body.encode(), verify=ews.ca_file, timeout=15,
                           auth=HttpNtlmAuth(DEFAULT_USERNAME, DEFAULT_PASSWORD),
                           headers={"Content-Type": "text/xml; charset=utf-8"})  # fmt: skip
    assert answer.status_code == 200
    assert b'IncludesLastItemInRange="false"' in answer.content
    assert b'TotalItemsInView="5"' in answer.content
    assert answer.content.count(b"<t:Mailbox>") == 2
    assert status_of(ews, "POST", "knobs", {"expand_dl_limit": -1}).status_code == 400
