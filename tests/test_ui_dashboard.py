"""Instrumentpanel: connection state with a fix, notification health, sync times, counts,
users with errors, latest activity and one user's 14-day timeline."""

import itertools
import re
from datetime import datetime, time, timedelta

from django.urls import reverse
from django.utils import timezone

from calendarsync import actors
from calendarsync.models import Activity, Booking, MailboxSubscription, SyncedUser
from calendarsync.views.dashboard import timeline
from onex.models import Subscription

_ids = itertools.count(1)


def _booking(synced_user, start, hours=1, forwarding="info", reason="MOTE"):
    n = next(_ids)
    return Booking.objects.create(
        synced_user=synced_user,
        external_id=f"mss-{n}",
        provider_item_id=f"item-{n}",
        start=start,
        end=start + timedelta(hours=hours),
        forwarding=forwarding,
        reason_code=reason,
        return_at=start + timedelta(hours=hours),
        fingerprint="x",
        pushed_at=timezone.now(),
    )


def _today_at(hour, days=0):
    day = timezone.localdate() + timedelta(days=days)
    return timezone.make_aware(datetime.combine(day, time(hour)))


def test_it_shows_counts_health_errors_and_activity(en_client, integration, company, reasons):
    users = []
    for i in range(3):
        sub = Subscription.objects.create(company=company, onex_id=f"s{i}", email=f"u{i}@demo.se")
        users.append(
            SyncedUser.objects.create(
                integration=integration,
                subscription=sub,
                email=sub.email,
                state="error" if i == 2 else "ok",
                last_error="postlådan hittades inte" if i == 2 else "",
                last_synced_at=timezone.now() - timedelta(minutes=5 * i),
            )
        )
    now = timezone.now()
    _booking(users[0], now + timedelta(hours=1), forwarding="divert")
    _booking(users[0], now + timedelta(days=3))
    _booking(users[1], now - timedelta(days=3))  # past: not upcoming
    for i, (status, expires) in enumerate(
        [
            ("active", now + timedelta(days=2)),
            ("active", now + timedelta(hours=3)),
            ("failed", None),
        ]
    ):
        MailboxSubscription.objects.create(
            synced_user=users[i],
            provider_subscription_id=f"sub-{i}",
            status=status,
            expires_at=expires,
        )
    Activity.record(integration, "synced", actor=actors.SYSTEM, params={"written": 3})
    body = en_client.get(
        reverse("calendarsync:dashboard", args=[integration.code])
    ).content.decode()
    assert '<dd id="count-users">3</dd>' in body
    assert '<dd id="count-upcoming">2</dd>' in body
    assert '<dd id="count-errors">1</dd>' in body
    # "Today" is the Stockholm day the dashboard shows, not the UTC date.
    soon = now + timedelta(hours=1)
    diversions_today = 1 if timezone.localdate(soon) == timezone.localdate(now) else 0
    assert f'<dd id="count-diversions">{diversions_today}</dd>' in body
    assert "<dt>Active</dt><dd>1</dd>" in body
    assert "<dt>Expiring within 24 h</dt><dd>1</dd>" in body
    assert '<dt>Failed</dt><dd class="error-text">1</dd>' in body
    assert "u2@demo.se" in body and "postlådan hittades inte" in body
    assert "3 absences written" in body


def test_it_tells_how_to_fix_a_revoked_consent(en_client, integration):
    integration.status = "needs_attention"
    integration.attention = "consent_revoked"
    integration.save()
    body = en_client.get(
        reverse("calendarsync:dashboard", args=[integration.code])
    ).content.decode()
    assert "Enterprise Applications" in body
    assert reverse("calendarsync:graph_consent_start", args=[integration.code]) in body
    assert "paused" in body


def test_it_tells_how_to_fix_an_on_prem_error(en_client, integration):
    integration.kind, integration.status = "ews", "error"
    integration.save()
    body = en_client.get(
        reverse("calendarsync:dashboard", args=[integration.code])
    ).content.decode()
    assert "firewall" in body and "EWS URL" in body


def test_it_draws_a_14_day_timeline_of_synced_absences(
    en_client, integration, synced_user, reasons
):
    _booking(synced_user, _today_at(12, days=1), hours=6, forwarding="divert", reason="LUNCH")
    _booking(synced_user, _today_at(9, days=20))  # beyond 14 days
    days = timeline(synced_user, {"LUNCH": "Lunch"})
    assert len(days) == 14
    [bar] = days[1]["bars"]
    assert (bar["left"], bar["width"], bar["divert"], bar["reason"]) == (50.0, 25.0, True, "Lunch")
    assert all(not day["bars"] for i, day in enumerate(days) if i != 1)

    url = reverse("calendarsync:dashboard_timeline", args=[integration.code])
    body = en_client.get(url, {"user": synced_user.email}, HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<div id="timeline-body"')
    assert "left:50.0%;width:25.0%" in body and "12:00–18:00 Lunch" in body
    body = en_client.get(url, {"user": "x@demo.se"}, HTTP_HX_REQUEST="true").content.decode()
    assert "x@demo.se is not a user of this integration." in body


def test_it_names_an_all_day_absence_instead_of_midnight_times(
    en_client, integration, synced_user, reasons
):
    booking = _booking(synced_user, _today_at(0, days=1), hours=24, reason="FRANVARANDE")
    Booking.objects.filter(pk=booking.pk).update(all_day=True)
    url = reverse("calendarsync:dashboard_timeline", args=[integration.code])
    body = en_client.get(url, {"user": synced_user.email}, HTTP_HX_REQUEST="true").content.decode()
    assert "all day Away" in body and "00:00–00:00" not in body


def test_a_multi_day_absence_spans_its_days(integration, synced_user):
    _booking(synced_user, _today_at(12, days=2), hours=36)
    days = timeline(synced_user, {})
    assert [len(day["bars"]) for day in days[2:5]] == [1, 1, 0]
    assert days[3]["bars"][0]["left"] == 0.0


def test_it_shows_when_the_periodic_sync_runs_next(en_client, integration):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    url = reverse("calendarsync:dashboard", args=[integration.code])
    assert "on the next change in Outlook" in en_client.get(url).content.decode()
    every = IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(
        name="Reconcile", task="calendarsync.tasks.reconcile_all_mailboxes", interval=every
    )
    response = en_client.get(url)
    next_sync = response.context["next_sync"]
    assert timezone.now() < next_sync <= timezone.now() + timedelta(minutes=15)
    integration.active = False
    integration.save()
    assert "paused" in en_client.get(url).content.decode()


def test_the_timeline_follows_antal_dagar(en_client, integration, synced_user, reasons):
    integration.days_ahead = 5
    integration.save()
    _booking(synced_user, _today_at(9, days=4))
    _booking(synced_user, _today_at(9, days=6))  # beyond 5 days
    url = reverse("calendarsync:dashboard", args=[integration.code])
    body = en_client.get(url, {"user": synced_user.email}).content.decode()
    assert "Timeline, 5 days" in body and "14 days" not in body
    assert body.count('<span class="day">') == 5
    assert body.count('data-symbol="info" style=') == 1
    assert "for the coming 5 days" in en_client.get(url).content.decode()


def test_the_timeline_has_an_hour_axis_a_now_marker_and_a_legend_for_every_symbol(
    en_client, integration, synced_user, reasons
):
    _booking(synced_user, _today_at(9, days=1), forwarding="info")
    _booking(synced_user, _today_at(12, days=1), forwarding="divert", reason="LUNCH")
    opened = _booking(synced_user, _today_at(15, days=2), forwarding="divert")
    Booking.objects.filter(pk=opened.pk).update(open_diversion=True)
    url = reverse("calendarsync:dashboard_timeline", args=[integration.code])
    body = en_client.get(url, {"user": synced_user.email}, HTTP_HX_REQUEST="true").content.decode()
    legend = re.search(r'<ul class="legend" id="timeline-legend".*?</ul>', body, re.S).group(0)
    drawn = body.replace(legend, "")
    used = set(re.findall(r'data-symbol="([a-z-]+)"', drawn))
    assert used == {"info", "divert", "open", "divert-mark", "now"}
    assert used <= set(re.findall(r'data-symbol="([a-z-]+)"', legend))
    assert "↪" in legend and "Open diversion" in legend and "now" in legend
    # Hour ticks 00, 03 … 21 across the track; one "now" line, on today's row.
    ticks = re.findall(r'<span class="tick" style="left:([0-9.]+)%">(\d\d)</span>', body)
    assert [hour for _, hour in ticks] == ["00", "03", "06", "09", "12", "15", "18", "21"]
    assert ticks[4][0] == "50.0"
    assert drawn.count('class="now"') == 1


def test_the_now_marker_sits_where_the_time_of_day_is(integration, synced_user):
    now = _today_at(18)
    days = timeline(synced_user, {}, now=now, days=3)
    assert days[0]["now_left"] == 75.0 and days[1]["now_left"] is None
