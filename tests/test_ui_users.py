"""Användare: add by email with clear errors, remove with confirmation, CSV import/export,
search and pages."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from calendarsync import claims, providers, sync, tasks
from calendarsync.models import Activity, Integration, MailboxSubscription, SyncedUser
from calendarsync.providers.memory import InMemoryCalendar
from onex.models import Subscription
from onex.operations import InMemoryAbsences


@pytest.fixture
def sync_core(monkeypatch):
    """The real request and removal paths, with what they enqueue recorded at the Celery
    tasks and One X in memory (the sync core's own tests cover the runs)."""
    calls = {"requested": [], "subscribed": [], "onex": InMemoryAbsences()}

    def emails(ids):
        return list(
            SyncedUser.objects.filter(pk__in=ids).order_by("email").values_list("email", flat=True)
        )

    monkeypatch.setattr(
        tasks.sync_mailboxes,
        "apply_async",
        lambda args, **kw: calls["requested"].extend(emails(args[0])),
    )
    monkeypatch.setattr(
        tasks.ensure_subscriptions, "delay", lambda ids, *a: calls["subscribed"].extend(emails(ids))
    )
    monkeypatch.setattr(sync, "default_writer", lambda lane=None: calls["onex"])
    return calls


@pytest.fixture
def people(company, other_company):
    make = Subscription.objects.create
    return {
        "bo": make(company=company, onex_id="bo", email="bo@demo.se", display_name="Bo Berg"),
        "cia": make(company=company, onex_id="cia", email="cia@demo.se"),
        "gone": make(company=company, onex_id="gone", email="gone@demo.se", active=False),
        "eva": make(company=other_company, onex_id="eva", email="eva@annat.se"),
    }


def _add(client, integration, email, **headers):
    return client.post(
        reverse("calendarsync:user_add", args=[integration.code]), {"email": email}, **headers
    )


def test_it_adds_a_user_by_email_and_requests_a_sync(
    en_client, integration, people, sync_core, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _add(en_client, integration, "  Bo@Demo.se ", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Location"] == reverse("calendarsync:users", args=[integration.code])
    synced_user = integration.users.get()
    assert (synced_user.email, synced_user.subscription) == ("bo@demo.se", people["bo"])
    assert sync_core["requested"] == ["bo@demo.se"]
    assert sync_core["subscribed"] == ["bo@demo.se"]
    page = en_client.get(response["HX-Location"]).content.decode()
    assert "bo@demo.se is added and will be synced." in page and "Bo Berg" in page


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("okand@demo.se", "No One X subscription in the company has the address okand@demo.se."),
        # Another company's address is answered like an unknown one (no address oracle).
        ("eva@annat.se", "No One X subscription in the company has the address eva@annat.se."),
        ("gone@demo.se", "The One X subscription for gone@demo.se is deactivated."),
        ("not-an-email", "Enter a valid email address."),
    ],
)
def test_it_explains_why_an_email_cannot_be_added(
    en_client, integration, people, sync_core, email, message
):
    response = _add(en_client, integration, email, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<form id="add-user-form"')
    assert message in body
    assert not SyncedUser.objects.exists()


def test_it_refuses_a_user_already_added_here_or_elsewhere(
    en_client, integration, company, people, sync_core
):
    _add(en_client, integration, "bo@demo.se")
    body = _add(en_client, integration, "bo@demo.se").content.decode()
    assert "bo@demo.se is already added." in body
    other = Integration.objects.create(company=company, kind="ews", name="Lokalt")
    body = _add(en_client, other, "bo@demo.se").content.decode()
    assert "bo@demo.se is already synced by the integration Exchange Online." in body
    assert SyncedUser.objects.count() == 1


def test_it_removes_a_user_only_after_confirmation(en_client, integration, people, sync_core):
    _add(en_client, integration, "bo@demo.se")
    synced_user = integration.users.get()
    url = reverse("calendarsync:user_remove", args=[integration.code, synced_user.pk])
    confirm = en_client.get(url).content.decode()
    assert "Remove bo@demo.se?" in confirm and "are deleted" in confirm
    assert integration.users.exists()
    response = en_client.post(url)
    assert response["Location"] == reverse("calendarsync:users", args=[integration.code])
    assert not integration.users.exists()
    assert Activity.objects.filter(event="user_removed").count() == 1


def test_it_says_when_removal_must_wait(en_client, integration, people, sync_core):
    _add(en_client, integration, "bo@demo.se")
    synced_user = integration.users.get()

    claims.claim(synced_user, timezone.now())  # a run holds the mailbox
    url = reverse("calendarsync:user_remove", args=[integration.code, synced_user.pk])
    page = en_client.post(url, follow=True).content.decode()
    assert "being synced right now" in page
    assert integration.users.exists()


def test_it_imports_a_csv_with_a_report_per_line(
    en_client, integration, people, sync_core, django_capture_on_commit_callbacks
):
    _add(en_client, integration, "cia@demo.se")
    sync_core["requested"].clear()
    sync_core["subscribed"].clear()
    csv_text = (
        "email;name\nbo@demo.se;Bo\n\nokand@demo.se;X\n"
        "eva@annat.se;Eva\ncia@demo.se;Cia\nnonsense\n"
    )
    upload = SimpleUploadedFile("users.csv", csv_text.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = en_client.post(
            reverse("calendarsync:users_import", args=[integration.code]), {"file": upload}
        )
    body = response.content.decode()
    assert "1 of 5 lines added." in body
    assert "4 lines could not be added." in body
    for line, text in [
        (2, "Added"),
        (4, "No One X subscription in the company has the address okand@demo.se."),
        (5, "No One X subscription in the company has the address eva@annat.se."),
        (6, "cia@demo.se is already added."),
        (7, "Enter a valid email address."),  # the add form's own words
    ]:
        assert f'<td data-label="Line">{line}</td>' in body and text in body
    assert sorted(integration.users.values_list("email", flat=True)) == [
        "bo@demo.se",
        "cia@demo.se",
    ]
    assert sync_core["requested"] == ["bo@demo.se"]
    assert sync_core["subscribed"] == ["bo@demo.se"]


def test_users_added_by_csv_import_get_change_notification_subscriptions(
    en_client, integration, people, monkeypatch, eager_celery, django_capture_on_commit_callbacks
):
    calendar = InMemoryCalendar(mailboxes={"bo@demo.se": [], "cia@demo.se": []})
    monkeypatch.setattr(providers, "provider_for", lambda integration: calendar)
    monkeypatch.setattr(sync, "default_writer", lambda lane=None: InMemoryAbsences())
    upload = SimpleUploadedFile("users.csv", b"bo@demo.se\ncia@demo.se\n", content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        en_client.post(
            reverse("calendarsync:users_import", args=[integration.code]), {"file": upload}
        )
    subscribed = MailboxSubscription.objects.filter(synced_user__integration=integration)
    assert sorted(subscribed.values_list("synced_user__email", flat=True)) == [
        "bo@demo.se",
        "cia@demo.se",
    ]
    assert set(subscribed.values_list("provider_subscription_id", flat=True)) == set(
        calendar.subscriptions
    )
    assert sorted(calendar.subscriptions.values()) == ["bo@demo.se", "cia@demo.se"]


def test_it_rejects_a_file_that_is_not_text(en_client, integration):
    upload = SimpleUploadedFile("users.csv", b"\xff\xfe\x00bad", content_type="text/csv")
    response = en_client.post(
        reverse("calendarsync:users_import", args=[integration.code]), {"file": upload}
    )
    assert "The file must be UTF-8 text." in response.content.decode()


def test_it_exports_the_users_as_csv(en_client, integration, people, sync_core):
    _add(en_client, integration, "bo@demo.se")
    integration.users.update(state="error", last_error="postlådan hittades inte")
    response = en_client.get(reverse("calendarsync:users_export", args=[integration.code]))
    assert response["Content-Type"].startswith("text/csv")
    raw = b"".join(response.streaming_content)
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    lines = raw.decode("utf-8-sig").splitlines()
    # Semicolons: what Swedish Excel splits columns at.
    assert lines[0] == "email;name;state;last synced;last error"
    assert lines[1] == "bo@demo.se;Bo Berg;error;;postlådan hittades inte"


def test_it_searches_filters_and_pages(en_client, integration, company):
    subscriptions = Subscription.objects.bulk_create(
        Subscription(company=company, onex_id=f"s{i}", email=f"user{i:03}@demo.se")
        for i in range(120)
    )
    SyncedUser.objects.bulk_create(
        SyncedUser(
            integration=integration,
            subscription=sub,
            email=sub.email,
            state="error" if i % 10 == 0 else "ok",
        )
        for i, sub in enumerate(subscriptions)
    )
    url = reverse("calendarsync:users", args=[integration.code])
    first = en_client.get(url).content.decode()
    assert "120 users" in first and "Page 1 of 3" in first
    assert "user000@demo.se" in first and "user050@demo.se" not in first
    third = en_client.get(url, {"page": 3}).content.decode()
    assert "user119@demo.se" in third
    found = en_client.get(url, {"q": "user07"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="user-list")
    body = found.content.decode()
    assert body.lstrip().startswith('<div id="user-list">')
    assert "10 users" in body and "user075@demo.se" in body and "user080@demo.se" not in body
    errors = en_client.get(url, {"state": "error"}).content.decode()
    assert "12 users" in errors and "user010@demo.se" in errors and "user011@demo.se" not in errors


def test_it_finds_users_by_name_too(en_client, integration, people, sync_core):
    _add(en_client, integration, "bo@demo.se")
    _add(en_client, integration, "cia@demo.se")
    url = reverse("calendarsync:users", args=[integration.code])
    found = en_client.get(url, {"q": "berg"}).context["page"].object_list
    assert [user.email for user in found] == ["bo@demo.se"]


def test_it_suggests_matching_users_for_a_picker(en_client, integration, people, sync_core):
    _add(en_client, integration, "bo@demo.se")
    _add(en_client, integration, "cia@demo.se")
    url = reverse("calendarsync:user_suggestions", args=[integration.code])
    body = en_client.get(url, {"user": "ci", "list": "preview-users"}).content.decode()
    assert body.strip().startswith('<datalist id="preview-users">')
    assert '<option value="cia@demo.se">' in body and "bo@demo.se" not in body


def test_the_export_neutralises_cells_a_spreadsheet_would_run(en_client, integration, company):
    for n, name in enumerate(['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "Bo"]):
        sub = Subscription.objects.create(
            company=company, onex_id=f"f{n}", email=f"f{n}@demo.se", display_name=name
        )
        SyncedUser.objects.create(integration=integration, subscription=sub, email=sub.email)
    response = en_client.get(reverse("calendarsync:users_export", args=[integration.code]))
    body = b"".join(response.streaming_content).decode()
    for dangerous in ['=HYPERLINK(""http://x"")', "+1", "-2", "@SUM(A1)"]:
        assert f";'{dangerous}" in body or f";\"'{dangerous}" in body, dangerous
    assert ";'\tx" in body or ";\"'\tx" in body
    assert ";Bo;" in body


def test_an_integration_name_with_a_line_break_does_not_break_the_export(en_client, integration):
    Integration.objects.filter(pk=integration.pk).update(name="Evil\r\nSet-Cookie: x=1")
    response = en_client.get(reverse("calendarsync:users_export", args=[integration.code]))
    assert response.status_code == 200
    assert "\n" not in response["Content-Disposition"] and "Set-Cookie: x=1" not in str(
        response.cookies
    )
