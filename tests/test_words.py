"""Words and formats: Swedish dates in lower case, "åter" naming the day of an all-day absence,
one word (integration) and one message per thing, Excel's CSV, the app's one display name."""

import csv
import gettext
import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template import Context, Template
from django.urls import reverse
from django.utils import translation

from calendarsync.forms import IntegrationSettingsForm
from calendarsync.models import Integration
from calendarsync.return_text import back_text
from onex.models import Subscription
from sandbox.onex.page import _return_text

STOCKHOLM = ZoneInfo("Europe/Stockholm")
WED_9 = datetime(2025, 12, 3, 9, 0, tzinfo=STOCKHOLM)


def _render(text, **context):
    return Template("{% load i18n %}" + text).render(Context(context))


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("sv", "3 dec | ons 3 dec | ons 3 dec 09:00 | 3 dec 09:00"),
        ("en", "3 Dec | Wed 3 Dec | Wed 3 Dec 09:00 | 3 Dec 09:00"),
    ],
)
def test_named_date_formats_are_lower_case_in_swedish_only(language, expected):
    with translation.override(language):
        text = _render(
            '{{ d|date:"DAY_MONTH_FORMAT" }} | {{ d|date:"WEEKDAY_DATE_FORMAT" }} | '
            '{{ d|date:"WEEKDAY_DATETIME_FORMAT" }} | {{ d|date:"DAY_MONTH_TIME_FORMAT" }}',
            d=WED_9,
        )
    assert text == expected


def test_back_text_names_the_day_after_an_all_day_absence():
    with translation.override("sv"):
        # All day Friday 12 Dec: back at midnight, i.e. that day; never "00:00".
        friday = datetime(2025, 12, 12, 0, 0, tzinfo=STOCKHOLM)
        assert (
            back_text(datetime(2025, 12, 13, 0, 0, tzinfo=STOCKHOLM), friday) == "åter lör 13 dec"
        )
        monday = datetime(2025, 12, 15, 0, 0, tzinfo=STOCKHOLM)
        assert back_text(monday, WED_9) == "åter mån 15 dec"


def test_back_text_gives_the_time_the_same_day_and_day_and_time_later():
    with translation.override("sv"):
        assert back_text(datetime(2025, 12, 3, 14, 0, tzinfo=STOCKHOLM), WED_9) == "åter 14:00"
        later = datetime(2025, 12, 4, 9, 30, tzinfo=STOCKHOLM)
        assert back_text(later, WED_9) == "åter tor 4 dec 09:30"
    with translation.override("en"):
        assert back_text(datetime(2025, 12, 15, 0, 0, tzinfo=STOCKHOLM), WED_9) == "back Mon 15 Dec"


def test_back_text_works_in_utc_too():
    """The planner hands over UTC; the text is in Stockholm's time (23:00 UTC = midnight)."""
    with translation.override("sv"):
        utc_midnight_cet = datetime(2025, 12, 14, 23, 0, tzinfo=ZoneInfo("UTC"))
        assert back_text(utc_midnight_cet, WED_9) == "åter mån 15 dec"


def test_the_one_x_sandbox_also_names_the_day_of_an_all_day_return():
    now = datetime(2025, 12, 12, 10, 0, tzinfo=STOCKHOLM)
    assert _return_text(datetime(2025, 12, 15, 0, 0, tzinfo=STOCKHOLM), now) == "åter mån 15/12"
    assert _return_text(datetime(2025, 12, 12, 14, 0, tzinfo=STOCKHOLM), now) == "åter 14:00"
    assert (
        _return_text(datetime(2025, 12, 16, 8, 0, tzinfo=STOCKHOLM), now) == "åter tis 16/12 08:00"
    )


def test_swedish_says_integration_never_instans_or_installation(settings):
    mo = settings.LOCALE_PATHS[0] / "sv" / "LC_MESSAGES" / "django.mo"
    with open(mo, "rb") as file:
        catalog = gettext.GNUTranslations(file)._catalog
    offenders = [
        msgid
        for msgid, msgstr in catalog.items()
        if any(word in str(msgstr).lower() for word in ("instans", "installation"))
    ]
    assert offenders == []
    with translation.override("sv"):
        assert _render('{% translate "Verifying the installation" %}') == "Verifiera integrationen"


@pytest.mark.parametrize("value", ["0", "-3", "61", "x"])
def test_number_of_days_has_one_message_naming_the_range(integration, value):
    with translation.override("sv"):
        form = IntegrationSettingsForm(
            {"name": "Exchange Online", "days_ahead": value}, instance=integration
        )
        assert not form.is_valid()
        assert form.errors["days_ahead"] == ["Ange 1–60 dagar."]
    with translation.override("en"):
        form = IntegrationSettingsForm(
            {"name": "Exchange Online", "days_ahead": value}, instance=integration
        )
        assert form.errors["days_ahead"] == ["Enter 1–60 days."]


def test_number_of_days_tells_the_browser_the_range_too(integration):
    widget = IntegrationSettingsForm(instance=integration)["days_ahead"].as_widget()
    assert 'min="1"' in widget and 'max="60"' in widget


def test_the_settings_page_shows_the_days_message(admin_client, integration):
    url = reverse("calendarsync:integration", args=[integration.code])
    body = admin_client.post(url, {"name": "Exchange Online", "days_ahead": "0"}).content.decode()
    assert "Ange 1–60 dagar." in body and "större än eller lika med" not in body


@pytest.fixture
def bo(company):
    return Subscription.objects.create(company=company, onex_id="bo", email="bo@demo.se")


def test_an_invalid_address_gets_the_same_words_when_added_and_imported(
    admin_client, integration, bo
):
    added = admin_client.post(
        reverse("calendarsync:user_add", args=[integration.code]), {"email": "inte-en-adress"}
    ).content.decode()
    upload = SimpleUploadedFile("u.csv", b"email\ninte-en-adress\n", content_type="text/csv")
    imported = admin_client.post(
        reverse("calendarsync:users_import", args=[integration.code]), {"file": upload}
    ).content.decode()
    assert "Fyll i en giltig e-postadress." in added
    assert "Fyll i en giltig e-postadress." in imported
    assert "Inte en giltig e-postadress." not in imported


def test_the_export_opens_in_swedish_excel_and_imports_back(
    admin_client, integration, bo, company, monkeypatch
):
    from calendarsync import tasks

    monkeypatch.setattr(tasks, "start_syncing", lambda users: None)
    Subscription.objects.create(company=company, onex_id="cia", email="cia@demo.se")
    other = Integration.objects.create(company=company, kind="ews", name="On Prem")
    admin_client.post(reverse("calendarsync:user_add", args=[other.code]), {"email": "bo@demo.se"})
    response = admin_client.get(reverse("calendarsync:users_export", args=[other.code]))
    raw = b"".join(response.streaming_content)
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][0] == "e-post" or rows[0][0] == "email"
    assert rows[1][0] == "bo@demo.se" and len(rows[1]) == 5
    # The same file (semicolons, BOM) goes back in; commas work as well.
    other.users.all().delete()
    for body in (raw, b"email,name\nbo@demo.se,Bo\n"):
        other.users.all().delete()
        upload = SimpleUploadedFile("u.csv", body, content_type="text/csv")
        admin_client.post(reverse("calendarsync:users_import", args=[other.code]), {"file": upload})
        assert list(other.users.values_list("email", flat=True)) == ["bo@demo.se"]


def test_the_revoke_help_names_the_configured_app(admin_client, integration, settings):
    settings.MS_APP_DISPLAY_NAME = "Kalenderkoppling Test"
    body = admin_client.get(
        reverse("calendarsync:integration", args=[integration.code])
    ).content.decode()
    assert "Hitta ”Kalenderkoppling Test”" in body
    assert "Telenor MSS integration" not in body


def test_the_default_app_name_matches_the_m365_sandbox_consent_page(settings):
    from sandbox.m365.server import DEFAULT_APP_NAME

    assert settings.MS_APP_DISPLAY_NAME == DEFAULT_APP_NAME == "MSS Kalenderkoppling"
