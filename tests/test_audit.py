"""The activity log is an audit trail: every admin action names its actor, what it concerns and
what changed; messages are stored as ids and shown in the viewer's language; the dashboard's
log filters by user and by kind."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from calendarsync import activity_messages, actors
from calendarsync.models import Activity, Integration, SyncedUser, SyncRule
from calendarsync.providers.base import ConsentRevoked
from onex.models import Subscription
from tests.m365_sandbox import ANNA
from tests.test_consent import come_back

ADMIN = "admin@demo.se"  # the admin_user fixture's sign-in name (its email when it has one)


def _settings(**changes):
    data = {
        "name": "Exchange Online",
        "days_ahead": "14",
        "active": "on",
        "plugin_enabled": "on",
        "all_meetings_private": "on",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def _dashboard(client, integration, **params):
    url = reverse("calendarsync:dashboard", args=[integration.code])
    return client.get(url, params).content.decode()


def _log(body: str) -> str:
    """The log's part of a dashboard (or the fragment itself)."""
    start = body.index('id="activity-log"')
    return body[start : body.index("</div>", start)]


def _only(event, **filters) -> Activity:
    return Activity.objects.get(event=event, **filters)


def _by_admin(activity, email=ADMIN):
    assert (activity.actor_kind, activity.actor_label) == ("admin", email)
    return activity


@pytest.fixture
def bo(company, integration):
    subscription = Subscription.objects.create(company=company, onex_id="bo", email="bo@demo.se")
    return SyncedUser.objects.create(
        integration=integration, subscription=subscription, email="bo@demo.se"
    )


@pytest.fixture
def rule(integration, reasons):
    return SyncRule.objects.create(
        integration=integration, position=1, show_as=["busy"], action="info", reason=reasons["MOTE"]
    )


# ----- one test per kind of admin action: the entry names the admin


def test_a_settings_save_names_the_admin_and_every_changed_field(en_client, integration):
    url = reverse("calendarsync:integration", args=[integration.code])
    en_client.post(url, _settings(days_ahead="20", name="Kontoret", all_meetings_private=None))
    entry = _by_admin(_only("settings_changed"))
    assert entry.subject == "setting" and entry.kind == "settings"
    assert sorted(entry.changes, key=lambda c: c["field"]) == [
        {"field": "all_meetings_private", "before": True, "after": False},
        {"field": "days_ahead", "before": 14, "after": 20},
        {"field": "name", "before": "Exchange Online", "after": "Kontoret"},
    ]
    log = _log(_dashboard(en_client, integration))
    assert ADMIN in log and "Changed the settings." in log
    assert "number of days 14 → 20" in log and "all meetings private on → off" in log


def test_a_save_that_changes_nothing_records_nothing(en_client, integration):
    en_client.post(reverse("calendarsync:integration", args=[integration.code]), _settings())
    assert not Activity.objects.exists()


def test_aktiv_off_and_on_name_the_admin(en_client, integration):
    url = reverse("calendarsync:integration", args=[integration.code])
    en_client.post(url, _settings(active=None))
    off = _by_admin(_only("paused"))
    assert off.changes == [{"field": "active", "before": True, "after": False}]
    en_client.post(url, _settings())
    on = _by_admin(_only("resumed"))
    assert on.changes == [{"field": "active", "before": False, "after": True}]
    assert not Activity.objects.filter(event="settings_changed").exists()  # Aktiv is its own
    log = _log(_dashboard(en_client, integration))
    assert "active on → off" in log and "active off → on" in log


def test_creating_a_rule_names_the_admin_and_the_rule(en_client, integration, reasons):
    en_client.post(
        reverse("calendarsync:rule_new", args=[integration.code]),
        {
            "action": "divert",
            "all_day": "unknown",
            "show_as": ["busy"],
            "reason": reasons["MOTE"].pk,
        },
    )
    entry = _by_admin(_only("rule_added"))
    assert (entry.subject, entry.subject_label) == ("rule", "Busy → Diversion: Meeting")
    log = _log(_dashboard(en_client, integration))
    assert 'Added a sync rule. <span class="concerns">(rule Busy → Diversion: Meeting)' in log


def test_editing_a_rule_records_what_changed(en_client, integration, reasons, rule):
    en_client.post(
        reverse("calendarsync:rule_edit", args=[integration.code, rule.pk]),
        {
            "action": "divert",
            "all_day": "unknown",
            "show_as": ["busy", "oof"],
            "weekdays": ["0", "1"],
            "reason": reasons["MOTE"].pk,
        },
    )
    entry = _by_admin(_only("rule_changed"))
    fields = {change["field"]: change for change in entry.changes}
    assert set(fields) == {"action", "show_as", "weekdays"}
    assert fields["action"] == {"field": "action", "before": "info", "after": "divert"}
    log = _log(_dashboard(en_client, integration))
    assert "action Absence info → Diversion" in log
    assert "show as Busy → Busy, Out of office" in log and "weekdays — → Mon, Tue" in log


def test_deleting_a_rule_names_the_admin_and_the_rule(en_client, integration, rule):
    en_client.post(reverse("calendarsync:rule_delete", args=[integration.code, rule.pk]))
    entry = _by_admin(_only("rule_removed"))
    assert entry.subject_label == "Busy → Absence info: Meeting"
    assert not SyncRule.objects.exists()


def test_moving_a_rule_records_its_old_and_new_place(en_client, integration, reasons, rule):
    second = SyncRule.objects.create(
        integration=integration, position=2, show_as=["oof"], action="info", reason=reasons["MOTE"]
    )
    en_client.post(
        reverse("calendarsync:rule_move", args=[integration.code, second.pk]), {"direction": "up"}
    )
    entry = _by_admin(_only("rule_moved"))
    assert entry.changes == [{"field": "position", "before": 2, "after": 1}]
    assert "position 2 → 1" in _log(_dashboard(en_client, integration))


def test_adding_a_user_names_the_admin_and_the_user(en_client, integration, company):
    Subscription.objects.create(company=company, onex_id="cia", email="cia@demo.se")
    en_client.post(
        reverse("calendarsync:user_add", args=[integration.code]), {"email": "cia@demo.se"}
    )
    entry = _by_admin(_only("user_added"))
    assert entry.synced_user.email == "cia@demo.se" and entry.subject_label == "cia@demo.se"
    assert 'Added a user. <span class="concerns">(user cia@demo.se)' in _log(
        _dashboard(en_client, integration)
    )


def test_removing_a_user_names_the_admin_and_deletes_the_address_from_the_log(
    en_client, integration, bo
):
    """Removing a user deletes their email (ARCHITECTURE's invariant), from the log too."""
    Activity.record(
        integration,
        "user_added",
        actor=actors.SYSTEM,
        synced_user=bo,
        subject=Activity.Subject.USER,
        subject_label=bo.email,
    )
    en_client.post(reverse("calendarsync:user_remove", args=[integration.code, bo.pk]))
    assert not SyncedUser.objects.exists()
    entry = _by_admin(_only("user_removed"))
    assert entry.synced_user is None and entry.subject_label == ""
    assert not Activity.objects.filter(subject_label__icontains="bo@demo.se").exists()
    log = _log(_dashboard(en_client, integration))
    assert "A user was removed; 0 One X entries deleted." in log
    assert "bo@demo.se" not in log


def test_an_import_is_one_entry_naming_the_admin(en_client, integration, company):
    for name in ("cia", "dan"):
        Subscription.objects.create(company=company, onex_id=name, email=f"{name}@demo.se")
    csv = "email\ncia@demo.se\ndan@demo.se\nnobody@demo.se\n"
    en_client.post(
        reverse("calendarsync:users_import", args=[integration.code]),
        {"file": SimpleUploadedFile("users.csv", csv.encode(), content_type="text/csv")},
    )
    assert SyncedUser.objects.count() == 2
    entry = _by_admin(_only("users_imported"))
    assert entry.params == {"added": 2, "failed": 1}
    assert "Imported users from a file: 2 added, 1 not added." in _log(
        _dashboard(en_client, integration)
    )


def test_removing_the_integration_names_the_admin(en_client, integration):
    en_client.post(reverse("calendarsync:integration_remove", args=[integration.code]))
    entry = _by_admin(_only("removing"))
    assert (entry.subject, entry.subject_label) == ("integration", "Exchange Online")


@pytest.fixture
def on_prem(company):
    return Integration.objects.create(
        company=company,
        kind="ews",
        name="Lokalt",
        status="connected",
        ews_url="https://mail.demo.se/EWS/Exchange.asmx",
        ews_username="telenor_mss_user",
        ews_password="Gammalt-Lösen-1",
    )


def test_an_ews_connection_save_says_the_password_changed_never_what_it_is(admin_client, on_prem):
    url = reverse("calendarsync:integration_connection", args=[on_prem.code])
    admin_client.post(
        url,
        {
            "ews_url": "https://ny.demo.se/EWS/Exchange.asmx",
            "ews_username": "telenor_mss_user",
            "ews_password": "Nytt-Lösen-2",
        },
    )
    entry = _by_admin(_only("connection_changed"))
    assert entry.changes == [
        {
            "field": "ews_url",
            "before": "https://mail.demo.se/EWS/Exchange.asmx",
            "after": "https://ny.demo.se/EWS/Exchange.asmx",
        },
        {"field": "ews_password", "changed": True},
    ]
    row = str(Activity.objects.filter(pk=entry.pk).values().get())
    assert "Lösen" not in row
    log = _log(_dashboard(admin_client, on_prem))  # Swedish, the default
    assert "lösenord ändrat" in log and "Ändrade anslutningen till Exchange On Prem." in log
    # An empty password keeps the stored one: nothing to record.
    admin_client.post(
        url,
        {
            "ews_url": "https://ny.demo.se/EWS/Exchange.asmx",
            "ews_username": "telenor_mss_user",
            "ews_password": "",
        },
    )
    assert Activity.objects.filter(event="connection_changed").count() == 1


def test_a_consent_names_the_admin_who_gave_it(admin_client, company, m365, admin_user):
    admin_user.email = "anna.andersson@demo.se"
    admin_user.save()
    admin_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    m365.signin(mode="auto", user=ANNA)
    m365.knobs(consent={"mode": "accept"})
    pending = Integration.objects.create(company=company, kind="graph", name="Exchange Online")
    come_back(admin_client, m365, pending)
    entry = _by_admin(_only("consent_granted"), "anna.andersson@demo.se")
    assert entry.kind == "connection"
    log = _log(_dashboard(admin_client, pending))
    assert "anna.andersson@demo.se</span>: An administrator gave consent in Microsoft 365" in log


def test_a_failed_consent_names_the_admin(admin_client, company, m365):
    admin_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    m365.signin(mode="auto", user=ANNA)
    m365.knobs(consent={"mode": "decline"})
    pending = Integration.objects.create(company=company, kind="graph", name="Exchange Online")
    come_back(admin_client, m365, pending)
    entry = _by_admin(_only("consent_failed"))
    assert entry.params["code"] and entry.level == "warning"


# ----- actors that are not the company's admin


def test_django_admin_changes_name_telenor_support(staff_client, integration):
    url = reverse("admin:calendarsync_integration_change", args=[integration.pk])
    staff_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    staff_client.post(
        url,
        {
            "company": integration.company_id,
            "kind": "graph",
            "name": "Exchange Online",
            "days_ahead": "30",
            "plugin_enabled": "on",
            "all_meetings_private": "on",
            "rules-TOTAL_FORMS": "0",
            "rules-INITIAL_FORMS": "0",
            "groups-TOTAL_FORMS": "0",  # the followed groups (read only)
            "groups-INITIAL_FORMS": "0",
            "ews_url": "",
            "ews_username": "",
            "ews_password": "",
            "tenant_id": "",
        },
    )
    changed = _only("settings_changed")
    assert (changed.actor_kind, changed.actor_label) == ("staff", "support@telenor.se")
    assert changed.changes == [{"field": "days_ahead", "before": 14, "after": 30}]
    paused = _only("paused")  # Aktiv was left unticked
    assert paused.actor_kind == "staff"
    listing = staff_client.get(reverse("admin:calendarsync_activity_changelist")).content.decode()
    assert "Telenor support (support@telenor.se)" in listing
    assert "number of days 14 → 30" in listing


def test_background_work_is_the_system_and_a_revoked_consent_is_microsoft(integration):
    integration.mark_error("Graph unreachable")
    integration.clear_error()
    integration.needs_attention(ConsentRevoked(code="AADSTS7000229"))
    kinds = dict(Activity.objects.values_list("event", "actor_kind"))
    assert kinds == {"error": "system", "recovered": "system", "consent_revoked": "microsoft"}


def test_an_actor_survives_the_deletion_of_their_account(en_client, integration, admin_user):
    en_client.post(
        reverse("calendarsync:integration", args=[integration.code]), _settings(days_ahead="20")
    )
    admin_user.delete()
    entry = _only("settings_changed")
    assert entry.actor is None and entry.actor_label == ADMIN


# ----- shown in the viewer's language


def test_the_same_rows_read_in_english_and_in_swedish(admin_client, en_client, integration):
    en_client.post(
        reverse("calendarsync:integration", args=[integration.code]), _settings(days_ahead="20")
    )
    Activity.record(integration, "recovered", actor=actors.SYSTEM)
    english = _log(_dashboard(en_client, integration))
    assert "Changed the settings." in english and "number of days 14 → 20" in english
    assert "the system</span>: Syncing works again." in english
    del en_client.defaults["HTTP_ACCEPT_LANGUAGE"]
    swedish = _log(_dashboard(en_client, integration))
    assert "Ändrade inställningarna." in swedish and "antal dagar 14 → 20" in swedish
    assert "systemet</span>: Synkroniseringen fungerar igen." in swedish
    assert "Changed the settings." not in swedish


def test_a_legacy_row_is_shown_as_it_was_and_an_unknown_id_never_breaks_the_page(
    en_client, integration
):
    Activity.objects.create(
        company=integration.company,
        integration=integration,
        event="synced",
        kind="sync",
        actor_kind="",
        message_id="legacy",
        params={"text": "3 frånvaroposter skrivna"},
    )
    Activity.objects.create(
        company=integration.company,
        integration=integration,
        event="future",
        kind="sync",
        message_id="from_a_newer_release",
        params={},
    )
    log = _log(_dashboard(en_client, integration))
    assert "3 frånvaroposter skrivna" in log and "from_a_newer_release" in log
    assert activity_messages.render("consent_failed", {}) == "consent_failed"  # params missing


def test_recording_an_unknown_message_id_is_a_bug(integration):
    with pytest.raises(KeyError):
        Activity.record(integration, "made_up", actor=actors.SYSTEM)


# ----- the filter


@pytest.fixture
def mixed_log(integration, bo, company):
    cia = SyncedUser.objects.create(
        integration=integration,
        subscription=Subscription.objects.create(company=company, onex_id="c", email="cia@demo.se"),
        email="cia@demo.se",
    )
    Activity.record(
        integration, "synced", actor=actors.SYSTEM, params={"written": 2}, synced_user=bo
    )
    Activity.record(
        integration, "synced", actor=actors.SYSTEM, params={"written": 5}, synced_user=cia
    )
    Activity.record(
        integration,
        "settings_changed",
        actor=actors.SYSTEM,
        subject="setting",
        changes=[{"field": "days_ahead", "before": 14, "after": 20}],
    )
    return integration


def test_the_log_filters_by_user_and_by_kind_without_javascript(en_client, mixed_log):
    everything = _log(_dashboard(en_client, mixed_log))
    assert "2 absences written" in everything and "5 absences written" in everything
    assert "Changed the settings." in everything
    bo_only = _log(_dashboard(en_client, mixed_log, log_user="Bo@demo.se"))
    assert "2 absences written" in bo_only and "5 absences written" not in bo_only
    assert "Changed the settings." not in bo_only
    settings_only = _log(_dashboard(en_client, mixed_log, log_kind="settings"))
    assert "Changed the settings." in settings_only and "absences written" not in settings_only
    nothing = _log(_dashboard(en_client, mixed_log, log_user="bo@demo.se", log_kind="rules"))
    assert "No activity matches the filter." in nothing
    page = _dashboard(en_client, mixed_log, log_kind="settings", user="bo@demo.se")
    assert '<option value="settings" selected>' in page
    assert '<input type="hidden" name="user" value="bo@demo.se">' in page  # timeline kept


def test_the_log_filter_swaps_the_list_in_place_with_htmx(en_client, mixed_log, htmx_headers):
    url = reverse("calendarsync:dashboard_activity", args=[mixed_log.code])
    response = en_client.get(url, {"log_user": "cia@demo.se", "log_kind": "sync"}, **htmx_headers)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="activity-log"')
    assert "5 absences written" in body and "2 absences written" not in body
    assert "<html" not in body
    dashboard = reverse("calendarsync:dashboard", args=[mixed_log.code])
    assert response["HX-Push-Url"] == f"{dashboard}?log_user=cia%40demo.se&log_kind=sync"
    # Without HTMX the fragment's address leads to the whole dashboard, filter kept.
    plain = en_client.get(url, {"log_kind": "settings"})
    assert plain.status_code == 302
    assert plain["Location"] == f"{dashboard}?log_kind=settings#activity"


def test_the_log_fragment_is_the_admins_own(en_client, foreign_integration, htmx_headers):
    url = reverse("calendarsync:dashboard_activity", args=[foreign_integration.code])
    assert en_client.get(url, **htmx_headers).status_code == 404
