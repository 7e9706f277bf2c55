"""The Outlook add-in's JSON API against the real sandboxes: who the token proves (Exchange
Online's Entra token, Exchange On Prem's identity token and its one-time link), and what each
endpoint answers to that user, and only to them."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone, translation

from calendarsync import removal, tasks
from calendarsync.actors import ActorKind
from calendarsync.addin import identity
from calendarsync.items import CalendarItem, ItemKind, Response, Sensitivity, ShowAs
from calendarsync.models import Activity, Integration, SyncedUser, SyncRule
from calendarsync.providers.addin import taskpane_url
from calendarsync.providers.base import ItemNotFound, MailboxNotFound, ReadsAddinProperties
from calendarsync.providers.ews import identity_token
from calendarsync.providers.memory import InMemoryCalendar
from onex.models import AbsenceReason, Company, Subscription
from onex.operations import InMemoryAbsences
from sandbox.ews import EwsServer
from tests.ews_sandbox import CheckedMessages, EwsHandle
from tests.m365_sandbox import ANNA, DEMO_TENANT

STOCKHOLM = ZoneInfo("Europe/Stockholm")
BJORN = "bjorn.berg@demo.se"  # in the demo tenant, but not synced
ON_PREM = "anna@kund.se"


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()  # keys and metadata cached for an earlier test's sandbox must not count
    yield
    cache.clear()


@pytest.fixture
def reasons(company):
    rows = [
        ("MOTE", "Möte", "Meeting", True),
        ("LUNCH", "Lunch", "Lunch", True),
        ("FRANVARANDE", "Frånvarande", "Away", True),
        ("SEMESTER", "Semester", "Holiday", False),
    ]
    for code, sv, en, diversion in rows:
        AbsenceReason.objects.create(
            company=company, code=code, label_sv=sv, label_en=en, diversion_allowed=diversion
        )


@pytest.fixture
def anna_subscription(company):
    return Subscription.objects.create(
        company=company,
        onex_id="sub-anna",
        email=ANNA,
        display_name="Anna Andersson",
        has_diversion=True,
    )


@pytest.fixture
def online(m365, company, reasons, anna_subscription):
    """Exchange Online (the sandbox's demo tenant) with Anna synced."""
    integration = Integration.objects.create(
        company=company,
        kind=Integration.Kind.GRAPH,
        name="Exchange Online",
        status=Integration.Status.CONNECTED,
        tenant_id=DEMO_TENANT,
    )
    return SyncedUser.objects.create(
        integration=integration, subscription=anna_subscription, email=ANNA
    )


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def entra(m365, mailbox=ANNA, **kw):
    return bearer(m365.addin_token(mailbox, **kw)["access_token"])


def api(name):
    return reverse(f"addin:{name}")


def tomorrow(hour, minute=0):
    day = timezone.localdate() + timedelta(days=1)
    return datetime.combine(day, time(hour, minute), tzinfo=STOCKHOLM)


def booking(start, end, show_as="busy", choice=None, all_day=False):
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "all_day": all_day,
        "show_as": show_as,
        "choice": choice,
    }


def preview(client, auth, body, lang="en"):
    return client.post(
        api("api_preview") + f"?lang={lang}", body, content_type="application/json", **auth
    )


# ----- who calls: Exchange Online


def test_context_tells_the_pane_the_users_policy_reasons_and_services(client, m365, online):
    response = client.get(api("api_context") + "?lang=en", **entra(m365))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert not response.cookies  # no session, no CSRF cookie
    assert response.json() == {
        "user": {"email": ANNA, "name": "Anna Andersson"},
        "integration": {
            "kind": "graph",
            "plugin_enabled": True,
            "defaults_only": False,
            "active": True,
            "syncing": True,
            "days_ahead": 14,
        },
        "personal_rules_allowed": True,
        "reasons": [
            {"code": "FRANVARANDE", "label": "Away", "diversion": True},
            {"code": "LUNCH", "label": "Lunch", "diversion": True},
            {"code": "MOTE", "label": "Meeting", "diversion": True},
            {"code": "SEMESTER", "label": "Holiday", "diversion": False},
        ],
        "services": {"diversion": True, "open_diversion": False},
        "addin_id": "5f3c6d2a-8b1e-4c7a-9d0f-3e2b1a4c5d6e",
    }


def test_the_language_comes_from_lang_or_accept_language_never_a_cookie(client, m365, online):
    auth = entra(m365)
    client.cookies["django_language"] = "en"
    swedish = client.get(api("api_context"), HTTP_ACCEPT_LANGUAGE="sv-SE,sv;q=0.9", **auth)
    english = client.get(api("api_context"), HTTP_ACCEPT_LANGUAGE="de,en;q=0.5", **auth)
    forced = client.get(api("api_context") + "?lang=sv", HTTP_ACCEPT_LANGUAGE="en", **auth)
    labels = [
        [r["label"] for r in answer.json()["reasons"]] for answer in (swedish, english, forced)
    ]
    assert labels[0] == labels[2] == ["Frånvarande", "Lunch", "Möte", "Semester"]
    assert labels[1] == ["Away", "Lunch", "Meeting", "Holiday"]
    assert [r["Content-Language"] for r in (swedish, english, forced)] == ["sv", "en", "sv"]


@pytest.mark.parametrize(
    "header", [None, "Basic YWRtaW46cHc=", "Bearer ", "Bearer not-a-token", "Bearer a.b.c"]
)
def test_without_a_token_nothing_is_answered(client, online, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get(api("api_context") + "?lang=en", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {
        "error": "invalid_token",
        "message": "Outlook could not prove who you are. Close the pane and open it again.",
    }


def test_an_unknown_caller_hears_401_before_anything_about_the_body(client, online):
    response = client.put(
        api("api_personal_rules"), "{", content_type="application/json", **bearer("x.y.z")
    )
    assert response.status_code == 401


def test_a_signed_in_admins_session_does_not_count(admin_client, online):
    response = admin_client.get(api("api_context"))
    assert response.status_code == 401


@pytest.mark.parametrize(
    "knob",
    [{"expired": True}, {"wrong_audience": True}, {"wrong_issuer": True}, {"unknown_key": True}],
    ids=["expired", "wrong-audience", "wrong-issuer", "unknown-key"],
)
def test_a_spoiled_entra_token_gets_401(client, m365, online, knob):
    m365.spoil_addin_tokens(**knob)
    for name in ("api_context", "api_personal_rules"):
        assert client.get(api(name), **entra(m365)).status_code == 401
    response = preview(client, entra(m365), booking(tomorrow(13), tomorrow(14)))
    assert response.status_code == 401


def test_a_token_for_another_mailbox_of_the_tenant_is_a_404(client, m365, online):
    response = client.get(api("api_context") + "?lang=en", **entra(m365, BJORN))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_a_token_from_a_tenant_we_do_not_serve_is_a_404_and_fetches_no_keys(client, m365, online):
    tenant = m365.add_tenant("Okänd AB", users=["olle@okand.se"])
    m365.clear_requests()
    response = client.get(api("api_context"), **entra(m365, "olle@okand.se", tenant=tenant))
    assert response.status_code == 404
    assert not [r for r in m365.requests() if "discovery" in r["path"]]
    # (The log does show key fetches: Anna's token, of a tenant we serve, makes one.)
    assert client.get(api("api_context"), **entra(m365)).status_code == 200
    assert [r["path"] for r in m365.requests() if "discovery" in r["path"]] == [
        f"/{DEMO_TENANT}/discovery/v2.0/keys"
    ]


def test_an_integration_being_removed_answers_no_one(client, m365, online):
    Integration.objects.filter(pk=online.integration_id).update(status=Integration.Status.REMOVING)
    assert client.get(api("api_context"), **entra(m365)).status_code == 404


def test_each_tenants_user_reaches_only_their_own_synced_user(client, m365, online):
    # Another company, another tenant, and (contrived) a mailbox of the same address.
    other = Company.objects.create(name="Annat AB", org_number="556000-0002", onex_id="annat")
    tenant = m365.add_tenant("Annat AB", users=["karin@annat.se", ANNA])
    other_integration = Integration.objects.create(
        company=other,
        kind=Integration.Kind.GRAPH,
        name="Annat",
        status=Integration.Status.CONNECTED,
        tenant_id=tenant,
        plugin_defaults_only=True,
    )
    for email in ("karin@annat.se", ANNA):
        SyncedUser.objects.create(
            integration=other_integration,
            subscription=Subscription.objects.create(
                company=other, onex_id=f"sub-{email}", email=email, display_name=email
            ),
            email=email,
        )
    ours = client.get(api("api_context"), **entra(m365, ANNA, tenant=DEMO_TENANT)).json()
    theirs = client.get(api("api_context"), **entra(m365, ANNA, tenant=tenant)).json()
    karin = client.get(api("api_context"), **entra(m365, "karin@annat.se", tenant=tenant)).json()
    assert (ours["user"]["name"], ours["integration"]["defaults_only"]) == ("Anna Andersson", False)
    assert (theirs["user"]["name"], theirs["integration"]["defaults_only"]) == (ANNA, True)
    assert ours["reasons"] and theirs["reasons"] == []
    assert karin["user"]["email"] == "karin@annat.se"
    # Karin's token saves Karin's rules, never Anna's of the other company.
    client.put(
        api("api_personal_rules"),
        {"rules": {"busy": {"forwarding": "skip"}}},
        content_type="application/json",
        **entra(m365, "karin@annat.se", tenant=tenant),
    )
    assert SyncedUser.objects.get(pk=online.pk).personal_profile == {}


def test_other_methods_are_refused(client, m365, online):
    response = client.post(api("api_context"), **entra(m365))
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    assert client.delete(api("api_personal_rules"), **entra(m365)).status_code == 405


# ----- preview


def test_preview_without_a_choice_uses_the_rules_in_the_admin_previews_words(client, m365, online):
    response = preview(client, entra(m365), booking(tomorrow(13), tomorrow(14)))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    answer = response.json()
    assert answer["text"] == "Absence info: Meeting, back 14:00 — Default template"
    assert answer["synced"] is True and answer["plugin_enabled"] is True
    assert answer["entries"] == [
        {
            "forwarding": "info",
            "open_diversion": False,
            "kind": "Absence info",
            "reason": "Meeting",
            "back": "back 14:00",
            "return_at": tomorrow(14).astimezone(STOCKHOLM).isoformat(),
            "decided_by": "Default template",
            "why": [],
        }
    ]
    swedish = preview(client, entra(m365), booking(tomorrow(13), tomorrow(14)), lang="sv")
    assert swedish.json()["text"] == "Frånvaro: Möte, åter 14:00 — Standardmall"


def test_preview_reads_utc_times_as_the_pane_sends_them(client, m365, online):
    # JavaScript's toISOString(): UTC with milliseconds and "Z"; shown in Stockholm time.
    utc = {
        key: moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        for key, moment in (("start", tomorrow(13)), ("end", tomorrow(14)))
    }
    answer = preview(client, entra(m365), {**booking(tomorrow(13), tomorrow(14)), **utc})
    assert answer.json()["text"] == "Absence info: Meeting, back 14:00 — Default template"


def test_preview_of_a_choice_says_what_the_booking_becomes(client, m365, online):
    choice = {"forwarding": "divert", "reason": "LUNCH", "open_diversion": False}
    answer = preview(client, entra(m365), booking(tomorrow(11), tomorrow(12), choice=choice))
    assert answer.json()["text"] == "Diversion: Lunch, back 12:00 — Outlook plugin, this booking"
    swedish = preview(
        client, entra(m365), booking(tomorrow(11), tomorrow(12), choice=choice), lang="sv"
    )
    assert swedish.json()["text"] == (
        "Hänvisning: Lunch, åter 12:00 — Outlook-pluginet, för den här bokningen"
    )


def test_preview_says_why_a_choice_is_shown_otherwise(client, m365, online):
    open_diversion = {"forwarding": "divert", "reason": "LUNCH", "open_diversion": True}
    entry = preview(
        client, entra(m365), booking(tomorrow(11), tomorrow(12), choice=open_diversion)
    ).json()["entries"][0]
    assert (entry["forwarding"], entry["open_diversion"]) == ("divert", False)
    assert entry["why"] == ["A plain diversion: the subscription has no open diversion service."]
    no_diversion = {"forwarding": "divert", "reason": "SEMESTER"}
    answer = preview(
        client, entra(m365), booking(tomorrow(8), tomorrow(17), choice=no_diversion)
    ).json()
    assert answer["text"].startswith("Absence info: Holiday, back 17:00")
    assert answer["entries"][0]["why"] == [
        "Shown as absence info: One X allows no diversion with this reason."
    ]


def test_preview_of_do_not_sync_says_who_decided(client, m365, online):
    answer = preview(
        client,
        entra(m365),
        booking(tomorrow(13), tomorrow(14), choice={"forwarding": "skip"}),
    ).json()
    assert answer == {
        "text": "Not synced by Outlook plugin, this booking",
        "entries": [],
        "synced": False,
        "plugin_enabled": True,
        "notes": [],
    }
    free = preview(client, entra(m365), booking(tomorrow(13), tomorrow(14), show_as="free"))
    assert free.json()["text"] == "Default template: not synced."


def test_preview_follows_the_users_own_rules_and_the_admins(client, m365, online):
    online.personal_profile = {"busy": {"forwarding": "divert", "reason": "MOTE"}}
    online.save()
    answer = preview(client, entra(m365), booking(tomorrow(9), tomorrow(10))).json()
    assert answer["text"] == (
        "Diversion: Meeting, back 10:00 — The user's own default (Outlook plugin)"
    )
    # Out of office has no personal rule here: the admin's rule decides.
    SyncRule.objects.create(
        integration=online.integration,
        show_as=["oof"],
        action=SyncRule.Action.DIVERT,
        reason=AbsenceReason.objects.get(code="FRANVARANDE"),
    )
    oof = preview(client, entra(m365), booking(tomorrow(9), tomorrow(10), show_as="OOF")).json()
    assert oof["text"].startswith("Diversion: Away, back 10:00 — Rule 1: ")


def test_preview_with_the_plugin_off_ignores_the_choice_and_says_so(client, m365, online):
    Integration.objects.filter(pk=online.integration_id).update(plugin_enabled=False)
    choice = {"forwarding": "divert", "reason": "LUNCH"}
    answer = preview(client, entra(m365), booking(tomorrow(11), tomorrow(12), choice=choice))
    assert answer.json()["plugin_enabled"] is False
    assert answer.json()["text"] == "Absence info: Meeting, back 12:00 — Default template"
    assert answer.json()["notes"] == [
        "Your administrator has turned the Outlook plugin off: the rules decide."
    ]


def test_preview_of_a_booking_outside_the_window_says_when_it_is_synced(client, m365, online):
    later = tomorrow(13) + timedelta(days=20)
    answer = preview(client, entra(m365), booking(later, later + timedelta(hours=1))).json()
    assert answer["synced"] is False
    assert answer["text"] == "Absence info: Meeting, back 14:00 — Default template"
    assert answer["notes"] == ["Synced to One X when the booking is within 14 days."]
    past = tomorrow(13) - timedelta(days=3)
    over = preview(client, entra(m365), booking(past, past + timedelta(hours=1))).json()
    assert (over["text"], over["synced"], over["entries"]) == (
        "This booking is over: nothing is synced.",
        False,
        [],
    )


def test_preview_of_an_all_day_booking_names_the_day_back(client, m365, online):
    start = datetime.combine(timezone.localdate() + timedelta(days=2), time(0), STOCKHOLM)
    body = booking(start, start + timedelta(days=1), show_as="oof", all_day=True)
    answer = preview(client, entra(m365), body).json()
    assert answer["text"].startswith("Absence info: Away, back ")
    assert "00:00" not in answer["text"]


@pytest.mark.parametrize(
    "change",
    [
        {"start": "2026-12-03T13:00:00"},  # no offset
        {"end": "tomorrow"},
        {"show_as": "sleeping"},
        {"choice": {"forwarding": "teleport"}},
        {"choice": "divert"},
    ],
)
def test_preview_refuses_what_it_cannot_read(client, m365, online, change):
    body = {**booking(tomorrow(13), tomorrow(14)), **change}
    response = preview(client, entra(m365), body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid" and response.json()["message"]


def test_preview_refuses_a_booking_that_ends_before_it_starts(client, m365, online):
    response = preview(client, entra(m365), booking(tomorrow(14), tomorrow(13)))
    assert response.json() == {
        "error": "invalid",
        "message": "The booking must end after it starts.",
    }
    broken = client.post(
        api("api_preview") + "?lang=en", "{", content_type="application/json", **entra(m365)
    )
    assert broken.status_code == 400 and broken.json()["message"] == "The request is not JSON."


# ----- personal rules


def put_rules(client, auth, rules, lang="en"):
    return client.put(
        api("api_personal_rules") + f"?lang={lang}",
        {"rules": rules},
        content_type="application/json",
        **auth,
    )


@pytest.fixture
def enqueued(monkeypatch):
    runs = []
    monkeypatch.setattr(
        tasks.sync_mailbox, "apply_async", lambda args, **kw: runs.append(args), raising=False
    )
    return runs


def test_personal_rules_are_read_and_saved(
    client, m365, online, enqueued, django_capture_on_commit_callbacks
):
    auth = entra(m365)
    assert client.get(api("api_personal_rules"), **auth).json() == {
        "allowed": True,
        "rules": {"busy": None, "oof": None},
    }
    rules = {"busy": {"forwarding": "divert", "reason": "MOTE"}, "oof": None}
    with django_capture_on_commit_callbacks(execute=True):
        response = put_rules(client, auth, rules)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    saved = {
        "busy": {"forwarding": "divert", "reason": "MOTE", "open_diversion": False},
        "oof": None,
    }
    assert response.json() == {"allowed": True, "rules": saved}
    online.refresh_from_db()
    assert online.personal_profile == {
        "busy": {"forwarding": "divert", "reason": "MOTE", "open_diversion": False}
    }
    # The mailbox is synced again, and the log says who changed what.
    assert enqueued == [(online.pk,)] and online.sync_requested_at is not None
    activity = Activity.objects.get(message_id="personal_rules_changed")
    assert (activity.actor_kind, activity.subject_label) == (ActorKind.OUTLOOK, ANNA)
    assert (activity.synced_user, activity.integration) == (online, online.integration)
    with translation.override("en"):
        message = activity.message
    assert message == (
        "The user changed their own rules in Outlook: Busy → Diversion (MOTE); "
        "Out of office → the administrator's rules."
    )
    assert client.get(api("api_personal_rules"), **auth).json()["rules"] == saved


def test_removing_the_user_leaves_their_address_nowhere_in_the_log(client, m365, online):
    put_rules(client, entra(m365), {"busy": {"forwarding": "skip"}})
    removal.remove_synced_user(online, writer=InMemoryAbsences())
    activity = Activity.objects.get(message_id="personal_rules_changed")
    assert activity.synced_user is None
    assert ANNA not in (activity.subject_label, activity.actor_label)


def test_saving_the_same_rules_again_changes_nothing(
    client, m365, online, enqueued, django_capture_on_commit_callbacks
):
    rules = {"oof": {"forwarding": "info", "reason": "FRANVARANDE"}}
    with django_capture_on_commit_callbacks(execute=True):
        put_rules(client, entra(m365), rules)
        SyncedUser.objects.filter(pk=online.pk).update(sync_requested_at=None)
        put_rules(client, entra(m365), rules)
    assert Activity.objects.filter(message_id="personal_rules_changed").count() == 1
    assert len(enqueued) == 1


@pytest.mark.parametrize(
    "policy", [{"plugin_enabled": False}, {"plugin_defaults_only": True}], ids=["off", "defaults"]
)
def test_personal_rules_are_refused_when_the_admin_does_not_allow_them(
    client, m365, online, policy
):
    Integration.objects.filter(pk=online.integration_id).update(**policy)
    auth = entra(m365)
    assert client.get(api("api_personal_rules"), **auth).json()["allowed"] is False
    assert client.get(api("api_context"), **auth).json()["personal_rules_allowed"] is False
    response = put_rules(client, auth, {"busy": {"forwarding": "skip"}})
    assert response.status_code == 403
    assert response.json() == {
        "error": "personal_rules_not_allowed",
        "message": (
            "Your administrator does not allow personal rules here: the administrator's "
            "rules apply."
        ),
    }
    online.refresh_from_db()
    assert online.personal_profile == {}
    assert not Activity.objects.filter(message_id="personal_rules_changed").exists()


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"busy": {"forwarding": "divert", "reason": "BOWLING"}}, "is not one of your company"),
        ({"busy": {"forwarding": "divert"}}, "Choose a reason."),
        ({"busy": {"forwarding": "teleport", "reason": "MOTE"}}, "Choose absence info"),
        ({"tentative": {"forwarding": "skip"}}, "Unknown rule: tentative."),
        ("busy", "The rules must be an object"),
    ],
)
def test_bad_personal_rules_get_a_400_that_says_why(client, m365, online, rules, message):
    response = put_rules(client, entra(m365), rules)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert message in response.json()["message"]
    online.refresh_from_db()
    assert online.personal_profile == {}


# ----- who calls: Exchange On Prem


@pytest.fixture
def on_prem_anna(on_prem, company, reasons):
    integration = on_prem(company, ON_PREM)
    subscription = Subscription.objects.create(
        company=company, onex_id="sub-op", email=ON_PREM, display_name="Anna On Prem"
    )
    return SyncedUser.objects.create(
        integration=integration, subscription=subscription, email=ON_PREM
    )


def exchange(ews, mailbox=ON_PREM, aud=None):
    return bearer(ews.identity_token(mailbox, aud or taskpane_url() + "?lang=sv"))


def own_booking(ews, mailbox=ON_PREM, **extra):
    start = tomorrow(13)
    return ews.create_event(
        mailbox,
        subject="Planering",
        start=start.isoformat(),
        end=(start + timedelta(hours=1)).isoformat(),
        **extra,
    )


def link(client, auth, mailbox, item_id):
    return client.post(
        api("api_link") + "?lang=en",
        {"mailbox": mailbox, "item_id": item_id},
        content_type="application/json",
        **auth,
    )


def test_an_unlinked_exchange_user_is_asked_to_link_once(client, ews, on_prem_anna):
    auth = exchange(ews)
    response = client.get(api("api_context") + "?lang=en", **auth)
    assert response.status_code == 403
    context = identity_token.unverified_context(auth["HTTP_AUTHORIZATION"].split()[1])
    assert response.json() == {
        "error": "not_linked",
        "message": "Confirm once that this mailbox is yours.",
        "challenge": identity.challenge(context.unique_id),
    }
    assert len(response.json()["challenge"]) == 32


def test_linking_proves_the_mailbox_through_a_booking_of_its_own(client, ews, on_prem_anna):
    auth = exchange(ews)
    challenge = client.get(api("api_context"), **auth).json()["challenge"]
    item_id = own_booking(ews)["item_id"]
    ews.set_custom_properties(ON_PREM, item_id, {"mssLink": challenge})
    ews.clear_requests()
    response = link(client, auth, ON_PREM, item_id)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {"linked": True, "user": {"email": ON_PREM}}
    # The booking was read as the mailbox, with the integration's service account.
    reads = ews.requests(operation="GetItem")
    assert [r["mailbox"] for r in reads] == [ON_PREM]
    assert reads[0]["extended_fields"] == [f"cecp-{settings.MS_ADDIN_ID}"]
    context = client.get(api("api_context"), **exchange(ews, aud=taskpane_url()))
    assert context.status_code == 200
    assert context.json()["user"] == {"email": ON_PREM, "name": "Anna On Prem"}
    assert context.json()["integration"]["kind"] == "ews"
    answer = preview(client, auth, booking(tomorrow(13), tomorrow(14)))
    assert answer.json()["text"] == "Absence info: Meeting, back 14:00 — Default template"


def test_a_wrong_or_missing_challenge_links_nothing(client, ews, on_prem_anna):
    auth = exchange(ews)
    item_id = own_booking(ews)["item_id"]
    assert link(client, auth, ON_PREM, item_id).status_code == 403  # no properties at all
    ews.set_custom_properties(ON_PREM, item_id, {"mssLink": "0" * 32})
    response = link(client, auth, ON_PREM, item_id)
    assert response.status_code == 403
    assert response.json()["error"] == "link_failed"
    assert link(client, auth, ON_PREM, "AAMkADoesNotExist").status_code == 403
    on_prem_anna.refresh_from_db()
    assert on_prem_anna.addin_identity == ""


def test_a_challenge_in_someone_elses_invitation_does_not_count(client, ews, on_prem_anna):
    # An organiser's custom properties travel with an invitation: they prove nothing about the
    # attendee's mailbox.
    auth = exchange(ews)
    challenge = client.get(api("api_context"), **auth).json()["challenge"]
    invitation = own_booking(ews, my_response_type="Accept", organizer="mallory@kund.se")["item_id"]
    ews.set_custom_properties(ON_PREM, invitation, {"mssLink": challenge})
    assert link(client, auth, ON_PREM, invitation).status_code == 403
    assert client.get(api("api_context"), **auth).json()["error"] == "not_linked"
    # The same challenge in a booking Anna organises does link.
    item_id = own_booking(ews)["item_id"]
    ews.set_custom_properties(ON_PREM, item_id, {"mssLink": challenge})
    assert link(client, auth, ON_PREM, item_id).status_code == 200


def test_another_users_challenge_does_not_link_me_as_them(client, ews, on_prem_anna, company):
    # Bo can put his own challenge into Anna's booking only if he could write her calendar.
    bo = SyncedUser.objects.create(
        integration=on_prem_anna.integration,
        subscription=Subscription.objects.create(company=company, onex_id="bo", email="bo@kund.se"),
        email="bo@kund.se",
    )
    ews.add_mailbox("bo@kund.se", "Bo")
    bo_auth = exchange(ews, "bo@kund.se")
    bo_item = own_booking(ews, "bo@kund.se")["item_id"]
    bo_challenge = client.get(api("api_context"), **bo_auth).json()["challenge"]
    ews.set_custom_properties("bo@kund.se", bo_item, {"mssLink": bo_challenge})
    # Bo names Anna's mailbox with his own booking: read as Anna, that item is not hers.
    assert link(client, bo_auth, ON_PREM, bo_item).status_code == 403
    anna_item = own_booking(ews)["item_id"]
    assert link(client, bo_auth, ON_PREM, anna_item).status_code == 403
    assert link(client, bo_auth, "bo@kund.se", bo_item).status_code == 200
    on_prem_anna.refresh_from_db()
    bo.refresh_from_db()
    assert on_prem_anna.addin_identity == "" and len(bo.addin_identity) == 64


def test_a_mailbox_that_is_not_synced_cannot_be_linked(client, ews, on_prem_anna):
    ews.add_mailbox("cecilia@kund.se", "Cecilia")
    auth = exchange(ews, "cecilia@kund.se")
    item_id = own_booking(ews, "cecilia@kund.se")["item_id"]
    challenge = client.get(api("api_context"), **auth).json()["challenge"]
    ews.set_custom_properties("cecilia@kund.se", item_id, {"mssLink": challenge})
    response = link(client, auth, "cecilia@kund.se", item_id)
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_the_memory_provider_reads_custom_properties_as_the_ews_one_does():
    calendar = InMemoryCalendar()
    item = CalendarItem(
        "item-1", None, ItemKind.SINGLE, tomorrow(13), tomorrow(14), False, ShowAs.BUSY,
        Sensitivity.NORMAL, False, Response.ORGANIZER,
    )  # fmt: skip
    calendar.put(ON_PREM, item)
    assert calendar.addin_properties(ON_PREM, "item-1") == {}
    calendar.custom_properties[(ON_PREM, "item-1")] = {"mssLink": "abc"}
    assert calendar.addin_properties(ON_PREM, "item-1") == {"mssLink": "abc"}
    assert isinstance(calendar, ReadsAddinProperties)
    with pytest.raises(ItemNotFound):
        calendar.addin_properties(ON_PREM, "item-2")
    with pytest.raises(MailboxNotFound):
        calendar.addin_properties("nobody@kund.se", "item-1")


def test_only_an_identity_token_links(client, m365, online, ews, on_prem_anna):
    response = link(client, entra(m365), ON_PREM, "whatever")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "knob",
    [{"expired": True}, {"wrong_audience": True}, {"unknown_key": True}],
    ids=["expired", "wrong-audience", "unknown-key"],
)
def test_a_spoiled_identity_token_gets_401(client, ews, on_prem_anna, knob):
    ews.spoil_identity_tokens(**knob)
    auth = exchange(ews)
    assert client.get(api("api_context"), **auth).status_code == 401
    assert link(client, auth, ON_PREM, own_booking(ews)["item_id"]).status_code == 401


@pytest.fixture
def other_exchange(tmp_path, ews_ca, ews_schema, settings):
    """A second Exchange server (another company's, or one nobody configured)."""
    server = EwsServer(port=0, ca_file=tmp_path / "other-ca.pem", ca=ews_ca).start()
    handle = EwsHandle(server, CheckedMessages(ews_schema))
    settings.OUTBOUND_ALLOWED_HOSTS = [*settings.OUTBOUND_ALLOWED_HOSTS, f"127.0.0.1:{server.port}"]
    yield handle
    handle.http.close()
    server.stop()


def test_metadata_is_never_fetched_from_the_host_a_token_names(
    client, ews, on_prem_anna, other_exchange
):
    # The token claims its metadata is on a server no integration uses.
    ews.spoil_identity_tokens(amurl=f"{other_exchange.url}/autodiscover/metadata/json/1")
    auth = exchange(ews)
    ews.clear_requests()
    assert client.get(api("api_context"), **auth).status_code == 401
    assert link(client, auth, ON_PREM, own_booking(ews)["item_id"]).status_code == 401
    assert other_exchange.requests() == []  # not one request reached the named host
    assert not ews.requests(operation="GetItem")  # and nothing was read on the claim


def test_a_token_from_one_companys_exchange_cannot_reach_anothers(
    client, ews, on_prem_anna, other_exchange, other_company
):
    other_integration = Integration.objects.create(
        company=other_company,
        kind=Integration.Kind.EWS,
        name="Annat",
        status=Integration.Status.CONNECTED,
        ews_url=other_exchange.ews_url,
        ews_username="svc",
        ews_password="pw",
    )
    other_exchange.add_mailbox("karin@annat.se", "Karin")
    SyncedUser.objects.create(
        integration=other_integration,
        subscription=Subscription.objects.create(
            company=other_company, onex_id="karin", email="karin@annat.se"
        ),
        email="karin@annat.se",
    )
    karin_item = own_booking(other_exchange, "karin@annat.se")["item_id"]
    auth = exchange(ews)
    challenge = client.get(api("api_context"), **auth).json()["challenge"]
    other_exchange.set_custom_properties("karin@annat.se", karin_item, {"mssLink": challenge})
    other_exchange.clear_requests()
    response = link(client, auth, "karin@annat.se", karin_item)
    assert response.status_code == 404
    assert other_exchange.requests() == []
    # A token claiming the other company's server is checked against that server's own
    # metadata, which does not know our server's certificate.
    ews.spoil_identity_tokens(amurl=f"{other_exchange.url}/autodiscover/metadata/json/1")
    assert client.get(api("api_context"), **exchange(ews)).status_code == 401
    fetched = [(r["method"], r["path"]) for r in other_exchange.requests()]
    assert fetched == [("GET", "/autodiscover/metadata/json/1")]
