"""Synkregler: rules read back in plain words, the inline editor, and the preview."""

import re
from datetime import time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from calendarsync import providers, rule_text
from calendarsync.items import ShowAs
from calendarsync.models import SyncRule
from calendarsync.providers.memory import InMemoryCalendar
from tests.calendar_factory import item


def _rule(reasons, **fields):
    values = {"action": "info", "reason": reasons["MOTE"]}
    values.update(fields)
    return SyncRule(**values)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({}, "All bookings → Absence info: Meeting"),
        (
            {
                "show_as": ["busy"],
                "weekdays": [0, 1, 2, 3, 4],
                "time_from": time(7),
                "time_to": time(18),
                "action": "divert",
            },
            "Busy, weekdays 07–18 → Diversion: Meeting",
        ),
        (
            {"show_as": ["busy", "oof"], "action": "divert", "open_diversion": True},
            "Busy or Out of office → Open diversion: Meeting",
        ),
        ({"show_as": ["free"], "action": "skip", "reason": None}, "Free → Do not sync"),
        (
            {"all_day": True, "weekdays": [5, 6], "time_from": time(8, 30)},
            "All-day, weekends from 08:30 → Absence info: Meeting",
        ),
        (
            {
                "min_duration_minutes": 30,
                "categories": ["Kund"],
                "subject_keywords": ["lunch", "fika"],
            },
            "At least 30 min, category ”Kund”, subject contains ”lunch” or ”fika”"
            " → Absence info: Meeting",
        ),
        ({"weekdays": [0, 2]}, "Mon, Wed → Absence info: Meeting"),
        (
            {"time_from": time(18), "time_to": time(7), "action": "divert"},
            "18–07 (overnight) → Diversion: Meeting",
        ),
        ({"time_from": time(18), "time_to": time(0)}, "18–24 → Absence info: Meeting"),
    ],
)
def test_it_reads_a_rule_back_in_plain_words(reasons, fields, text):
    with translation.override("en"):
        assert rule_text.describe(_rule(reasons, **fields)) == text


def _post_rule(client, integration, url_name, *args, **fields):
    data = {"action": "info", "all_day": "unknown"}
    data.update(fields)
    return client.post(
        reverse(f"calendarsync:{url_name}", args=[integration.code, *args]),
        data,
        HTTP_HX_REQUEST="true",
    )


def test_it_shows_the_default_template_as_the_starting_point(en_client, integration, reasons):
    body = en_client.get(reverse("calendarsync:rules", args=[integration.code])).content.decode()
    assert 'id="default-template"' in body
    assert "Busy → Absence info: Meeting" in body
    assert "Out of office → Absence info: Away" in body
    response = en_client.post(
        reverse("calendarsync:rules_from_template", args=[integration.code]), HTTP_HX_REQUEST="true"
    )
    assert response["HX-Trigger"] == "rulesChanged"
    rules = list(integration.rules.order_by("position"))
    assert [(r.show_as, r.reason.code) for r in rules] == [
        (["busy"], "MOTE"),
        (["oof"], "FRANVARANDE"),
    ]
    assert "Busy → Absence info: Meeting" in response.content.decode()


def test_it_adds_a_rule_inline_and_reads_it_back(en_client, integration, reasons):
    form = en_client.get(
        reverse("calendarsync:rule_new", args=[integration.code]), HTTP_HX_REQUEST="true"
    )
    assert form.content.decode().lstrip().startswith('<div id="editor">')
    assert 'id="rule-form"' in form.content.decode()
    response = _post_rule(
        en_client,
        integration,
        "rule_new",
        show_as=["busy"],
        weekdays=["0", "1", "2", "3", "4"],
        time_from="07:00",
        time_to="18:00",
        action="divert",
        reason=reasons["MOTE"].pk,
    )
    assert response.status_code == 200
    assert response["HX-Trigger"] == "rulesChanged"
    assert "Busy, weekdays 07–18 → Diversion: Meeting" in response.content.decode()
    rule = integration.rules.get()
    assert (rule.show_as, rule.weekdays, rule.position) == (["busy"], [0, 1, 2, 3, 4], 1)


def test_it_explains_what_is_wrong_with_a_rule(en_client, integration, reasons):
    response = _post_rule(
        en_client,
        integration,
        "rule_new",
        time_from="07:00",
        time_to="07:00",
        action="divert",
        reason=reasons["SJUK"].pk,
    )
    body = response.content.decode()
    assert "The end time is the same as the start time." in body
    assert "One X does not allow a diversion with this reason." in body
    assert "HX-Trigger" not in response
    response = _post_rule(en_client, integration, "rule_new", action="info")
    assert "Choose an absence reason." in response.content.decode()
    assert not integration.rules.exists()


def test_it_edits_deletes_and_moves_rules(en_client, integration, reasons):
    first = SyncRule.objects.create(
        integration=integration, position=1, show_as=["busy"], action="info", reason=reasons["MOTE"]
    )
    second = SyncRule.objects.create(
        integration=integration,
        position=2,
        show_as=["oof"],
        action="info",
        reason=reasons["FRANVARANDE"],
    )
    edit = en_client.get(
        reverse("calendarsync:rule_edit", args=[integration.code, first.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'value="busy"' in edit and "checked" in edit
    _post_rule(
        en_client,
        integration,
        "rule_edit",
        first.pk,
        show_as=["busy"],
        action="divert",
        reason=reasons["MOTE"].pk,
    )
    first.refresh_from_db()
    assert first.action == "divert"

    response = en_client.post(
        reverse("calendarsync:rule_move", args=[integration.code, second.pk]),
        {"direction": "up"},
        HTTP_HX_REQUEST="true",
    )
    assert list(integration.rules.order_by("position").values_list("pk", flat=True)) == [
        second.pk,
        first.pk,
    ]
    body = response.content.decode()
    assert body.index("Out of office → Absence info: Away") < body.index(
        "Busy → Diversion: Meeting"
    )
    en_client.post(
        reverse("calendarsync:rule_move", args=[integration.code, second.pk]),
        {"direction": "up"},
        HTTP_HX_REQUEST="true",
    )  # already first: no change
    assert integration.rules.order_by("position").first() == second

    en_client.post(
        reverse("calendarsync:rule_delete", args=[integration.code, second.pk]),
        HTTP_HX_REQUEST="true",
    )
    assert list(integration.rules.values_list("pk", "position")) == [(first.pk, 1)]


def test_it_works_without_javascript(en_client, integration, reasons):
    response = en_client.post(
        reverse("calendarsync:rule_new", args=[integration.code]),
        {"action": "skip", "show_as": ["free"], "all_day": "unknown"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("calendarsync:rules", args=[integration.code])


@pytest.fixture
def calendar(monkeypatch, synced_user):
    """The integration's provider is an in-memory calendar holding a Tuesday."""
    calendar = InMemoryCalendar()
    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    monday = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    day = monday + timedelta(days=(1 - monday.weekday()) % 7 or 7)  # next Tuesday
    calendar.put(
        synced_user.email,
        item("busy-morning", day.replace(hour=9), minutes=60, show_as=ShowAs.BUSY),
        item("tentative", day.replace(hour=13), minutes=30, show_as=ShowAs.TENTATIVE),
        item("evening", day.replace(hour=19), minutes=60, show_as=ShowAs.BUSY),
    )
    return calendar


def test_it_previews_saved_rules_and_the_unsaved_edit_side_by_side(
    en_client, integration, reasons, calendar, synced_user
):
    rule = SyncRule.objects.create(
        integration=integration, position=1, show_as=["busy"], action="info", reason=reasons["MOTE"]
    )
    url = reverse("calendarsync:rules_preview", args=[integration.code])
    saved_only = en_client.post(
        url, {"user": synced_user.email}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert saved_only.lstrip().startswith('<div id="preview"')
    assert "With your change" not in saved_only
    assert saved_only.count("<strong>Absence info: Meeting</strong>") == 2
    assert "Rule 1: Busy → Absence info: Meeting" in saved_only
    assert "Default template: not synced." in saved_only  # the tentative booking

    edited = en_client.post(
        url,
        {
            "user": synced_user.email,
            "editing": str(rule.pk),
            "show_as": ["busy"],
            "all_day": "unknown",
            "weekdays": ["0", "1", "2", "3", "4"],
            "time_from": "07:00",
            "time_to": "18:00",
            "action": "divert",
            "reason": reasons["MOTE"].pk,
        },
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "With your change" in edited
    assert 'data-changed="1"' in edited  # only the 09:00 booking becomes a diversion
    assert "Diversion: Meeting" in edited
    assert "Busy, weekdays 07–18 → Diversion: Meeting" in edited
    rule.refresh_from_db()
    assert rule.action == "info"  # the preview saved nothing


def test_it_previews_a_new_rule_and_tells_why_a_diversion_was_downgraded(
    en_client, integration, reasons, calendar, synced_user
):
    synced_user.subscription.has_diversion = False
    synced_user.subscription.save()
    url = reverse("calendarsync:rules_preview", args=[integration.code])
    body = en_client.post(
        url,
        {
            "user": synced_user.email,
            "editing": "new",
            "show_as": ["tentative"],
            "all_day": "unknown",
            "action": "divert",
            "reason": reasons["LUNCH"].pk,
        },
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "Your unsaved rule: Tentative → Diversion: Lunch" in body
    assert "the subscription has no diversion service" in body


def test_it_says_when_the_user_or_the_calendar_cannot_be_read(
    en_client, integration, calendar, synced_user
):
    from calendarsync.providers.base import MailboxNotFound

    url = reverse("calendarsync:rules_preview", args=[integration.code])
    body = en_client.post(url, {"user": "nobody@demo.se"}, HTTP_HX_REQUEST="true").content.decode()
    assert "nobody@demo.se is not a user of this integration." in body
    calendar.errors[synced_user.email] = MailboxNotFound()
    body = en_client.post(url, {"user": synced_user.email}, HTTP_HX_REQUEST="true").content.decode()
    assert "The calendar could not be read" in body


def test_the_rules_page_previews_without_javascript(
    en_client, integration, calendar, synced_user, reasons
):
    body = en_client.get(
        reverse("calendarsync:rules", args=[integration.code]), {"user": synced_user.email}
    ).content.decode()
    assert "Default template" in body and "Absence info: Meeting" in body


def test_it_flags_a_rule_an_earlier_rule_always_catches(en_client, integration, reasons):
    SyncRule.objects.create(
        integration=integration, position=1, show_as=["busy"], action="info", reason=reasons["MOTE"]
    )
    SyncRule.objects.create(
        integration=integration,
        position=2,
        show_as=["busy"],
        weekdays=[0, 1, 2, 3, 4],
        time_from=time(7),
        time_to=time(18),
        action="divert",
        reason=reasons["MOTE"],
    )
    SyncRule.objects.create(
        integration=integration, position=3, show_as=["oof"], action="info", reason=reasons["LUNCH"]
    )
    body = en_client.get(reverse("calendarsync:rules", args=[integration.code])).content.decode()
    warning = "Rule 2 is never reached – rule 1 already catches Busy"
    assert warning in body
    assert 'id="never-reached-2"' in body
    assert 'id="never-reached-1"' not in body and 'id="never-reached-3"' not in body
    with translation.override("sv"):
        swedish = en_client.get(
            reverse("calendarsync:rules", args=[integration.code]), HTTP_ACCEPT_LANGUAGE="sv"
        ).content.decode()
    assert "Regel 2 nås aldrig – regel 1 fångar redan Upptagen" in swedish


def test_it_does_not_flag_a_rule_that_catches_more_than_the_one_before(
    en_client, integration, reasons
):
    SyncRule.objects.create(
        integration=integration,
        position=1,
        show_as=["busy"],
        weekdays=[0, 1, 2, 3, 4],
        time_from=time(7),
        time_to=time(18),
        action="divert",
        reason=reasons["MOTE"],
    )
    SyncRule.objects.create(
        integration=integration, position=2, show_as=["busy"], action="info", reason=reasons["MOTE"]
    )
    body = en_client.get(reverse("calendarsync:rules", args=[integration.code])).content.decode()
    assert "never reached" not in body


def test_the_preview_summary_flags_an_unsaved_rule_that_is_never_reached(
    en_client, integration, reasons, calendar, synced_user
):
    SyncRule.objects.create(
        integration=integration, position=1, show_as=["busy"], action="info", reason=reasons["MOTE"]
    )
    body = en_client.post(
        reverse("calendarsync:rules_preview", args=[integration.code]),
        {
            "user": synced_user.email,
            "editing": "new",
            "show_as": ["busy"],
            "all_day": "unknown",
            "time_from": "07:00",
            "time_to": "18:00",
            "action": "divert",
            "reason": reasons["MOTE"].pk,
        },
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert 'data-changed="0"' in body
    assert "Rule 2 is never reached – rule 1 already catches Busy" in body


def test_the_preview_marks_the_rows_that_change(
    en_client, integration, reasons, calendar, synced_user
):
    rule = SyncRule.objects.create(
        integration=integration, position=1, show_as=["busy"], action="info", reason=reasons["MOTE"]
    )
    body = en_client.post(
        reverse("calendarsync:rules_preview", args=[integration.code]),
        {
            "user": synced_user.email,
            "editing": str(rule.pk),
            "show_as": ["busy"],
            "all_day": "unknown",
            "time_from": "07:00",
            "time_to": "18:00",
            "action": "divert",
            "reason": reasons["MOTE"].pk,
        },
        HTTP_HX_REQUEST="true",
    ).content.decode()
    rows = re.findall(r"<tr(?: class=\"([^\"]*)\")?>\s*<td[^>]*>(.*?)</td>", body, re.S)
    changed = [text for css, text in rows if css == "row-changed"]
    assert len(changed) == 1 and "09:00" in changed[0]  # only the morning booking diverts now
    assert '<span class="changed-mark">changed</span>' in changed[0]
    assert all("changed-mark" not in text for css, text in rows if css != "row-changed")


def test_a_new_rule_form_waits_for_a_first_change_before_it_checks(en_client, integration, reasons):
    rule = SyncRule.objects.create(
        integration=integration, position=1, show_as=["busy"], action="info", reason=reasons["MOTE"]
    )
    new = en_client.get(
        reverse("calendarsync:rule_new", args=[integration.code]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'hx-trigger="change from:#rule-form delay:250ms"' in new
    assert "data-dirty" not in new and "errorlist" not in new
    edit = en_client.get(
        reverse("calendarsync:rule_edit", args=[integration.code, rule.pk]),
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert 'hx-trigger="load, change from:#rule-form delay:250ms"' in edit
    # A form sent back with errors counts as an unsaved edit for the leave-the-page guard.
    failed = _post_rule(en_client, integration, "rule_new", action="info").content.decode()
    assert 'data-unsaved-guard data-dirty="true"' in failed


def test_it_saves_an_overnight_window(en_client, integration, reasons):
    response = _post_rule(
        en_client,
        integration,
        "rule_new",
        time_from="18:00",
        time_to="07:00",
        action="divert",
        reason=reasons["MOTE"].pk,
    )
    assert response["HX-Trigger"] == "rulesChanged"
    assert "18–07 (overnight) → Diversion: Meeting" in response.content.decode()
    rule = integration.rules.get()
    assert (rule.time_from, rule.time_to) == (time(18), time(7))
    with translation.override("sv"):
        assert rule_text.describe(rule) == "18–07 (över natten) → Hänvisning: Möte"
