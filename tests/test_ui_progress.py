"""Live progress: the pages with pending syncs ask again every 2 s (and stop when nothing is
pending), bulk work says "Synkar 40 av 3 000 användare…", and a request no worker took for
longer than MSS_SYNC_QUEUE_ALERT_MINUTES is an error on the dashboard, with what to do."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format

from calendarsync.models import SyncedUser
from calendarsync.progress import SyncProgress, sync_progress
from calendarsync.views.common import progress_text
from onex.models import Subscription

POLL = 'hx-trigger="every 2s"'


@pytest.fixture
def three_users(integration, company):
    return [
        SyncedUser.objects.create(
            integration=integration,
            subscription=Subscription.objects.create(
                company=company, onex_id=f"p{i}", email=f"p{i}@demo.se"
            ),
            email=f"p{i}@demo.se",
            state="ok",
        )
        for i in range(3)
    ]


def _request(users, minutes_ago=0, language="en"):
    """Stamp the users' syncs as requested that long ago; returns the stamp as the pages write
    it: local HH:MM, with the day in front when it was before today's local midnight."""
    stamp = timezone.now() - timedelta(minutes=minutes_ago)
    SyncedUser.objects.filter(pk__in=[user.pk for user in users]).update(sync_requested_at=stamp)
    local = timezone.localtime(stamp)
    if local.date() == timezone.localdate():
        return local.strftime("%H:%M")
    with translation.override(language):
        return date_format(local, "j b H:i")


def _element(body, element_id):
    """The opening tag of the element with this id."""
    match = re.search(rf'<[a-z]+ id="{element_id}"[^>]*>', body)
    assert match, element_id
    return match.group(0)


def test_it_counts_pending_and_running_syncs_of_the_integration(three_users, integration):
    _request(three_users[:1])
    SyncedUser.objects.filter(pk=three_users[1].pk).update(sync_started_at=timezone.now())
    progress = sync_progress(integration.users.all())
    assert (progress.total, progress.pending, progress.done) == (3, 2, 1)
    assert progress.poll_seconds == 2 and not progress.stalled


def test_it_says_how_far_bulk_work_has_come_in_swedish_numbers():
    progress = SyncProgress(total=3000, pending=40, oldest_request=None, stalled=False)
    with translation.override("sv"):
        assert progress_text(progress) == "Synkar 40 av 3\xa0000 användare…"
    with translation.override("en"):
        assert progress_text(progress) == "Syncing 40 of 3,000 users…"


def test_every_tab_shows_a_polling_banner_while_syncs_are_pending(
    en_client, integration, three_users
):
    _request(three_users[:2])
    for name in ("integration", "users", "rules", "users_import"):
        body = en_client.get(reverse(f"calendarsync:{name}", args=[integration.code])).content
        banner = _element(body.decode(), "sync-progress")
        assert POLL in banner, name
        assert "Syncing 2 of 3 users…" in body.decode(), name


def test_the_banner_says_once_when_all_is_done_and_stops_asking(
    en_client, integration, three_users
):
    url = reverse("calendarsync:sync_progress", args=[integration.code])
    _request(three_users)
    assert POLL in en_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    SyncedUser.objects.update(sync_requested_at=None)
    body = en_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Sync finished: all 3 users are synced." in body and "hx-trigger" not in body
    # A full page without pending work has no banner at all, so nothing polls.
    page = en_client.get(reverse("calendarsync:users", args=[integration.code])).content
    assert 'id="sync-progress"' not in page.decode()
    # Without HTMX the fragment's address leads to a page.
    assert en_client.get(url).status_code == 302


def test_the_rules_tab_banner_wakes_on_a_rule_change(en_client, integration, three_users):
    body = en_client.get(reverse("calendarsync:rules", args=[integration.code])).content.decode()
    banner = _element(body, "sync-progress")
    assert 'hx-trigger="rulesChanged from:body"' in banner and "every" not in banner


def test_the_users_list_polls_while_a_user_on_it_waits_for_a_sync(
    en_client, integration, three_users
):
    url = reverse("calendarsync:users", args=[integration.code])
    assert "hx-trigger" not in _element(en_client.get(url).content.decode(), "user-list")
    _request(three_users[:1])
    SyncedUser.objects.filter(pk=three_users[0].pk).update(state="pending")
    page = en_client.get(url, {"q": "p", "page": "1"}).content.decode()
    user_list = _element(page, "user-list")
    assert POLL in user_list and 'hx-swap="outerHTML"' in user_list
    assert "q=p&amp;state=&amp;page=1" in user_list  # the same search and page again
    # What it fetches: the list alone, still polling until the sync is done.
    fragment = en_client.get(
        url, {"q": "p"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="user-list"
    ).content.decode()
    assert fragment.lstrip().startswith('<div id="user-list"') and POLL in fragment
    assert "waiting for first sync" in fragment
    SyncedUser.objects.update(sync_requested_at=None, state="ok")
    fragment = en_client.get(
        url, {"q": "p"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="user-list"
    ).content.decode()
    assert "hx-trigger" not in _element(fragment, "user-list") and "synced" in fragment


def test_the_dashboard_polls_its_queue_and_counts_while_syncs_are_pending(
    en_client, integration, three_users
):
    url = reverse("calendarsync:dashboard", args=[integration.code])
    _request(three_users)
    page = en_client.get(url).content.decode()
    assert POLL in _element(page, "dashboard-status")
    assert 'id="sync-progress"' not in page  # the sync card says it; no second banner
    assert "now (3 users queued)" in page and "Syncing 3 of 3 users…" in page
    status_url = reverse("calendarsync:dashboard_status", args=[integration.code])
    fragment = en_client.get(status_url, HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<div id="dashboard-status"')
    assert '<dd id="count-users">3</dd>' in fragment and "page-head" not in fragment
    SyncedUser.objects.update(sync_requested_at=None)
    fragment = en_client.get(status_url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in _element(fragment, "dashboard-status")
    assert "queued" not in fragment


def test_a_sync_nobody_took_for_too_long_is_an_error_on_the_dashboard(
    en_client, integration, three_users, settings
):
    url = reverse("calendarsync:dashboard", args=[integration.code])
    since = _request(three_users[:1], minutes_ago=11)
    page = en_client.get(url).content.decode()
    assert f"Sync queued since {since}" in page
    assert "Check that the Celery workers" in page and 'id="queue-stalled"' in page
    assert "now (1 user queued)" not in page
    # It still notices when the workers come back, but asks less often.
    assert 'hx-trigger="every 30s"' in _element(page, "dashboard-status")
    # The limit is a setting.
    settings.MSS_SYNC_QUEUE_ALERT_MINUTES = 30
    page = en_client.get(url).content.decode()
    assert "queue-stalled" not in page and "now (1 user queued)" in page


def test_other_tabs_say_a_stalled_queue_too(en_client, integration, three_users):
    _request(three_users, minutes_ago=15)
    body = en_client.get(reverse("calendarsync:users", args=[integration.code])).content.decode()
    banner = _element(body, "sync-progress")
    assert "notice bad" in banner and 'hx-trigger="every 30s"' in banner
    assert "check that the Celery workers are running" in body


def test_a_stalled_queue_reads_in_swedish(admin_client, integration, three_users):
    since = _request(three_users[:1], minutes_ago=12, language="sv")
    url = reverse("calendarsync:dashboard", args=[integration.code])
    page = admin_client.get(url).content.decode()
    assert f"Synk i kö sedan {since}" in page
    assert "Kontrollera att Celery-arbetarna" in page and "nu (1 användare i kö)" not in page


def test_a_request_from_an_earlier_day_says_the_day(en_client, integration, three_users):
    since = _request(three_users[:1], minutes_ago=26 * 60)
    assert " " in since  # the day is written in front of the time
    url = reverse("calendarsync:dashboard", args=[integration.code])
    assert f"Sync queued since {since}" in en_client.get(url).content.decode()
