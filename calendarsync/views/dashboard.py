"""Instrumentpanel: connection state, notification health, sync times, counts, errors,
activity, and one user's 14-day timeline of synced absences."""

from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, Q
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.http import require_GET
from django_celery_beat.models import PeriodicTask

from onex.models import AbsenceReason

from .. import membership
from ..models import Booking, Forwarding, MailboxSubscription, MembershipReport, SyncedUser
from ..progress import sync_progress
from ..rules import DecidedBy
from .activity import activity_log_context
from .common import attention_hint, banner_context, get_integration, render_tab

TIMELINE_DAYS = 14
EXPIRING_WITHIN = timedelta(hours=24)
ERROR_USERS_SHOWN = 10
PERIODIC_SYNC_TASK = "calendarsync.tasks.reconcile_all_mailboxes"  # mss/schedules.py


def _next_periodic_sync():
    """When beat next runs the periodic sync (the sync core's schedule), if one is installed."""
    task = (
        PeriodicTask.objects.filter(enabled=True, task=PERIODIC_SYNC_TASK)
        .select_related("interval", "crontab")
        .order_by("id")
        .first()
    )
    if task is None or (task.interval is None and task.crontab is None):
        return None
    schedule = task.schedule
    last = task.last_run_at or timezone.now()
    return timezone.now() + schedule.remaining_estimate(last)


def _fix_hint(integration):
    """One sentence on how to fix the connection, for each state that needs fixing."""
    status = integration.Status
    if integration.status == status.PENDING_CONSENT:
        return _(
            "Consent has not come back from Microsoft. An administrator with the role Global "
            "Administrator or Privileged Role Administrator must approve it."
        )
    if integration.status == status.UNVERIFIED:
        return _("The Exchange On Prem connection has not been verified yet.")
    if integration.status == status.NEEDS_ATTENTION:
        return attention_hint(integration)
    if integration.status == status.REMOVING:
        return _("The integration is being removed.")
    if integration.status == status.ERROR:
        if integration.kind == integration.Kind.EWS:
            return _(
                "Check the EWS URL, the service account's password and that the firewall lets "
                "MSS reach the Exchange server (TCP 443)."
            )
        return _("The last sync failed. It is retried automatically; the error is shown below.")
    if not integration.active:
        return _("The integration is not active: turn on Active under Settings to sync.")
    return ""


TIMELINE_TICKS = range(0, 24, 3)  # hours labelled on the axis; the track marks every hour


def timeline(synced_user, reasons, today=None, *, days=TIMELINE_DAYS, now=None):
    """`days` days from today (the integration's Antal dagar), each with the user's synced
    absences placed on a 24h bar, and today's with where "now" is."""
    tz = timezone.get_current_timezone()
    now = now or timezone.now()
    today = today or timezone.localdate(now)
    start = timezone.make_aware(datetime.combine(today, time.min), tz)
    end = start + timedelta(days=days)
    bookings = list(
        Booking.objects.filter(synced_user=synced_user, start__lt=end, end__gt=start).order_by(
            "start"
        )
    )
    timeline_days = []
    for offset in range(days):
        day = today + timedelta(days=offset)
        day_start = timezone.make_aware(datetime.combine(day, time.min), tz)
        day_end = timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min), tz)
        length = (day_end - day_start).total_seconds()  # 23 or 25 hours on DST days
        bars = []
        for booking in bookings:
            if booking.start >= day_end or booking.end <= day_start:
                continue
            left = max(booking.start, day_start)
            right = min(booking.end, day_end)
            bars.append(
                {
                    "booking": booking,
                    "when": _when(booking, tz),
                    "reason": reasons.get(booking.reason_code, booking.reason_code),
                    "divert": booking.forwarding == Forwarding.DIVERT,
                    "kind": _bar_kind(booking),
                    "left": round((left - day_start).total_seconds() / length * 100, 2),
                    "width": max(round((right - left).total_seconds() / length * 100, 2), 1),
                }
            )
        now_left = None
        if day_start <= now < day_end:
            now_left = round((now - day_start).total_seconds() / length * 100, 2)
        timeline_days.append({"date": day, "bars": bars, "now_left": now_left})
    return timeline_days


def _bar_kind(booking) -> str:
    """The legend entry a bar belongs to: Frånvaro, Hänvisning or Öppen hänvisning."""
    if booking.forwarding != Forwarding.DIVERT:
        return "info"
    return "open" if booking.open_diversion else "divert"


def _when(booking, tz) -> str:
    """An all-day booking is "all day", not midnight to midnight."""
    if booking.all_day:
        return pgettext("booking", "all day")
    start, end = booking.start.astimezone(tz), booking.end.astimezone(tz)
    return f"{start:%H:%M}–{end:%H:%M}"


def _reasons(integration):
    return {
        reason.code: reason.label
        for reason in AbsenceReason.objects.filter(company_id=integration.company_id)
    }


@login_required
@require_GET
def dashboard(request, code):
    integration = get_integration(request, code)

    email = request.GET.get("user", "").strip().lower()
    context = {
        **_status_context(integration),
        **activity_log_context(integration, request.GET),
        "timeline_user": email,
    }
    context.update(_timeline_context(integration, email))
    context.update(_held_removals_context(integration))
    return render_tab(request, "calendarsync/dashboard.html", integration, "dashboard", context)


HELD_SHOWN = 20  # of the held removals' addresses on the dashboard (the count is whole)


def _held_removals_context(integration) -> dict:
    """Katalog Synk's removals a run held for the admin's word (membership.must_hold)."""
    report = MembershipReport.objects.filter(integration=integration).first()
    if report is None or not report.held_removals or not membership.follows_groups(integration):
        return {}
    held = integration.users.filter(pk__in=report.held_removals)
    return {
        "held_count": held.count(),
        "held_emails": list(held.order_by("email").values_list("email", flat=True)[:HELD_SHOWN]),
        "held_users": integration.users.count(),
        "hold_count": settings.MSS_GROUP_REMOVAL_HOLD_COUNT,
        "hold_percent": round(settings.MSS_GROUP_REMOVAL_HOLD_SHARE * 100),
    }


@login_required
@require_GET
def dashboard_status(request, code):
    """The connection, sync, counts and error cards alone: what the dashboard polls (HTMX)
    while syncs are pending."""
    integration = get_integration(request, code)
    if not request.htmx:
        return redirect("calendarsync:dashboard", code=integration.code)
    return render_tab(
        request,
        "calendarsync/dashboard.html",
        integration,
        "dashboard",
        _status_context(integration),
        partial="status",
    )


def _status_context(integration):
    now = timezone.now()
    today = timezone.localdate()
    tz = timezone.get_current_timezone()
    day_start = timezone.make_aware(datetime.combine(today, time.min), tz)
    day_end = day_start + timedelta(days=1)

    users = integration.users.aggregate(
        total=Count("id"),
        errors=Count("id", filter=Q(state=SyncedUser.State.ERROR)),
        pending=Count("id", filter=Q(state=SyncedUser.State.PENDING)),
        last_sync=Max("last_synced_at"),
        # The add-in's personal rules ("Mina regler"); an empty dict is none.
        personal_rules=Count("id", filter=~Q(personal_profile={})),
    )
    bookings = Booking.objects.filter(synced_user__integration=integration).aggregate(
        upcoming=Count("id", filter=Q(end__gt=now)),
        diversions_today=Count(
            "id",
            filter=Q(forwarding=Forwarding.DIVERT, start__lt=day_end, end__gt=day_start),
        ),
        # Users whose choice in Outlook decided at least one of their coming bookings.
        addin_users=Count(
            "synced_user", filter=Q(decided_by=DecidedBy.ADDIN, end__gt=now), distinct=True
        ),
    )
    # An EWS subscription's expiry is when it counts as lost (no status event for twice the
    # status frequency): it is "expiring" only once that has passed, never a day ahead.
    soon = now + (timedelta(0) if integration.kind == integration.Kind.EWS else EXPIRING_WITHIN)
    health = MailboxSubscription.objects.filter(synced_user__integration=integration).aggregate(
        active=Count(
            "id",
            filter=Q(status=MailboxSubscription.Status.ACTIVE)
            & (Q(expires_at__isnull=True) | Q(expires_at__gt=soon)),
        ),
        expiring=Count(
            "id",
            filter=Q(status=MailboxSubscription.Status.ACTIVE, expires_at__lte=soon),
        ),
        failed=Count("id", filter=Q(status=MailboxSubscription.Status.FAILED)),
    )
    error_users = list(
        integration.users.filter(state=SyncedUser.State.ERROR).order_by("email")[:ERROR_USERS_SHOWN]
    )
    return {
        "users": users,
        "bookings": bookings,
        "health": health,
        "error_users": error_users,
        "fix_hint": _fix_hint(integration),
        "next_sync": _next_periodic_sync() if integration.syncing else None,
        **banner_context(integration, sync_progress(integration.users.all(), now)),
    }


def _timeline_context(integration, email):
    if not email:
        return {}
    synced_user = integration.users.filter(email=email).first()
    if synced_user is None:
        return {
            "timeline_error": _("%(email)s is not a user of this integration.") % {"email": email}
        }
    return {
        "timeline_for": synced_user,
        "timeline": timeline(synced_user, _reasons(integration), days=integration.days_ahead),
        "timeline_ticks": [{"hour": hour, "left": hour / 24 * 100} for hour in TIMELINE_TICKS],
    }


@login_required
@require_GET
def dashboard_timeline(request, code):
    """The timeline fragment alone, for the dashboard's user picker (HTMX)."""
    integration = get_integration(request, code)
    email = request.GET.get("user", "").strip().lower()
    context = {"integration": integration, "timeline_user": email}
    context.update(_timeline_context(integration, email))
    return render(request, "calendarsync/dashboard.html#timeline", context)
