"""Deleting: every confirmation focuses Cancel; a rule delete asks on the server (page or in
place) and can be undone with Ångra for 10 minutes, only in the session that deleted it."""

import re
from datetime import time

import pytest
from django.test import Client
from django.urls import reverse

from calendarsync import rule_undo
from calendarsync.models import SyncRule


@pytest.fixture
def three_rules(integration, reasons):
    return [
        SyncRule.objects.create(
            integration=integration,
            position=1,
            show_as=["busy"],
            action="info",
            reason=reasons["MOTE"],
        ),
        SyncRule.objects.create(
            integration=integration,
            position=2,
            show_as=["busy", "tentative"],
            all_day=False,
            weekdays=[0, 1, 2, 3, 4],
            time_from=time(18),
            time_to=time(7),
            min_duration_minutes=30,
            categories=["Kund"],
            subject_keywords=["lunch"],
            action="divert",
            reason=reasons["LUNCH"],
            open_diversion=True,
        ),
        SyncRule.objects.create(
            integration=integration,
            position=3,
            show_as=["oof"],
            action="info",
            reason=reasons["FRANVARANDE"],
        ),
    ]


def _url(name, integration, *args):
    return reverse(f"calendarsync:{name}", args=[integration.code, *args])


def _autofocused(body):
    """The ids of elements that take the focus on load."""
    return re.findall(r'<[^>]*\bid="([^"]+)"[^>]*\bautofocus\b', body)


FIELDS = [
    "show_as",
    "all_day",
    "weekdays",
    "time_from",
    "time_to",
    "min_duration_minutes",
    "categories",
    "subject_keywords",
    "action",
    "reason_id",
    "open_diversion",
]


def _snapshot(rule):
    return {name: getattr(rule, name) for name in FIELDS}


def test_every_delete_confirmation_focuses_cancel(en_client, integration, synced_user, three_rules):
    pages = [
        _url("user_remove", integration, synced_user.pk),
        _url("integration_remove", integration),
        _url("rule_delete", integration, three_rules[1].pk),
    ]
    for page in pages:
        body = en_client.get(page).content.decode()
        assert _autofocused(body) and all(i.startswith("cancel-") for i in _autofocused(body))
        assert 'class="primary danger"' in body
    in_place = en_client.get(
        _url("rule_delete", integration, three_rules[1].pk), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert _autofocused(in_place) == ["cancel-delete-rule"]


def test_a_rule_delete_asks_on_its_own_page_without_javascript(en_client, integration, three_rules):
    second = three_rules[1]
    page = en_client.get(_url("rule_delete", integration, second.pk))
    body = page.content.decode()
    assert page.status_code == 200
    assert "Delete rule 2?" in body
    assert "Busy or Tentative, not all-day, weekdays 18–07 (overnight)" in body  # what goes
    assert f'action="{_url("rule_delete", integration, second.pk)}"' in body
    assert integration.rules.count() == 3  # asking deletes nothing
    assert 'hx-target="#editor"' not in body  # a page of its own: no editor to swap

    # The list links to that page; nothing deletes from the list directly any more.
    rules_page = en_client.get(_url("rules", integration)).content.decode()
    assert "hx-confirm" not in rules_page
    assert re.search(
        rf'<form method="get" action="{_url("rule_delete", integration, second.pk)}"', rules_page
    )

    response = en_client.post(_url("rule_delete", integration, second.pk))
    assert response.status_code == 302 and response["Location"] == _url("rules", integration)
    assert list(integration.rules.order_by("position").values_list("pk", "position")) == [
        (three_rules[0].pk, 1),
        (three_rules[2].pk, 2),
    ]
    after = en_client.get(_url("rules", integration)).content.decode()
    assert "Rule 2 is deleted: Busy or Tentative" in after
    assert 'name="token"' in after


def test_a_rule_delete_asks_in_place_with_htmx(en_client, integration, three_rules):
    body = en_client.get(
        _url("rule_delete", integration, three_rules[0].pk), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert body.lstrip().startswith('<div id="editor">')
    assert 'id="delete-rule-confirm"' in body and "Delete rule 1?" in body
    # Cancel brings the editor back in place (and is a plain link without JavaScript).
    cancel = en_client.get(_url("rules", integration), HTTP_HX_REQUEST="true").content.decode()
    assert cancel.lstrip().startswith('<div id="editor">')
    assert 'id="delete-rule-confirm"' not in cancel


def test_undo_brings_a_deleted_rule_back_with_its_fields_and_place(
    en_client, integration, three_rules
):
    second = three_rules[1]
    before = _snapshot(second)
    response = en_client.post(_url("rule_delete", integration, second.pk), HTTP_HX_REQUEST="true")
    assert response["HX-Trigger"] == "rulesChanged"
    body = response.content.decode()
    assert "Rule 2 is deleted" in body
    assert not integration.rules.filter(pk=second.pk).exists()
    token = re.search(r'name="token" value="([^"]+)"', body).group(1)

    undone = en_client.post(
        _url("rule_undo_delete", integration), {"token": token}, HTTP_HX_REQUEST="true"
    )
    assert undone.status_code == 200 and undone["HX-Trigger"] == "rulesChanged"
    rules = list(integration.rules.order_by("position"))
    assert [r.position for r in rules] == [1, 2, 3]
    assert rules[0].pk == three_rules[0].pk and rules[2].pk == three_rules[2].pk
    assert _snapshot(rules[1]) == before
    assert "Rule 2 is deleted" not in undone.content.decode()

    # Used once: the same token again is gone.
    again = en_client.post(_url("rule_undo_delete", integration), {"token": token})
    assert again.status_code == 404
    assert integration.rules.count() == 3


def test_undo_puts_the_rule_last_when_the_list_got_shorter(en_client, integration, three_rules):
    en_client.post(_url("rule_delete", integration, three_rules[2].pk))
    en_client.post(_url("rule_delete", integration, three_rules[1].pk))
    tokens = list(en_client.session[rule_undo.SESSION_KEY])
    en_client.post(_url("rule_undo_delete", integration), {"token": tokens[0]})  # the third
    rules = list(integration.rules.order_by("position"))
    assert [(r.position, r.show_as) for r in rules] == [(1, ["busy"]), (2, ["oof"])]


def test_undo_is_gone_after_ten_minutes(en_client, integration, three_rules):
    en_client.post(_url("rule_delete", integration, three_rules[0].pk))
    session = en_client.session
    snapshots = session[rule_undo.SESSION_KEY]
    token = next(iter(snapshots))
    snapshots[token]["expires"] -= rule_undo.UNDO_SECONDS + 1
    session[rule_undo.SESSION_KEY] = snapshots
    session.save()
    assert "is deleted" not in en_client.get(_url("rules", integration)).content.decode()
    response = en_client.post(_url("rule_undo_delete", integration), {"token": token})
    assert response.status_code == 404
    assert integration.rules.count() == 2


def test_an_undo_token_of_another_session_is_a_404(en_client, admin_user, integration, three_rules):
    en_client.post(_url("rule_delete", integration, three_rules[0].pk))
    token = next(iter(en_client.session[rule_undo.SESSION_KEY]))
    other_browser = Client()
    other_browser.force_login(admin_user)  # the same admin, another session
    assert other_browser.get(_url("rules", integration)).content.decode().count(token) == 0
    response = other_browser.post(_url("rule_undo_delete", integration), {"token": token})
    assert response.status_code == 404
    assert integration.rules.count() == 2


def test_an_undo_token_is_a_404_under_another_integration(
    en_client, company, integration, foreign_integration, three_rules
):
    en_client.post(_url("rule_delete", integration, three_rules[0].pk))
    token = next(iter(en_client.session[rule_undo.SESSION_KEY]))
    theirs = en_client.post(_url("rule_undo_delete", foreign_integration), {"token": token})
    assert theirs.status_code == 404
    sibling = company.integrations.create(kind="graph", name="Exchange Online 2")
    mine = en_client.post(_url("rule_undo_delete", sibling), {"token": token})
    assert mine.status_code == 404
    assert not sibling.rules.exists() and not foreign_integration.rules.exists()
    # Still usable where it belongs.
    assert (
        en_client.post(_url("rule_undo_delete", integration), {"token": token}).status_code == 302
    )
    assert integration.rules.count() == 3
