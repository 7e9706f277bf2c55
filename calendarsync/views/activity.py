"""The dashboard's activity log: the latest entries, filtered by user and by kind (GET).

The dashboard includes the log (templates/calendarsync/activity_log.html); its filter form
works as a plain GET of the dashboard, and with HTMX swaps only the list (`dashboard_activity`).
"""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from .. import activity_display
from ..activity_messages import Kind
from ..models import Activity
from .common import get_integration

ACTIVITY_SHOWN = 10
# The dashboard's own parameters (the timeline's user) that the log's form carries along.
KEPT_PARAMS = ("user",)


def activity_log_context(integration, params) -> dict:
    email = params.get("log_user", "").strip().lower()
    kind = params.get("log_kind", "")
    if kind not in Kind.values:
        kind = ""
    entries = integration.activities.select_related("synced_user")
    if kind:
        entries = entries.filter(kind=kind)
    if email:
        # A removed user's entries name them in the label only.
        entries = entries.filter(
            Q(synced_user__email=email) | Q(subject=Activity.Subject.USER, subject_label=email)
        )
    shown = entries.order_by("-created_at", "-id")[:ACTIVITY_SHOWN]
    return {
        "log_entries": [activity_display.present(activity) for activity in shown],
        "log_user": email,
        "log_kind": kind,
        "log_kinds": Kind.choices,
        "log_filtered": bool(email or kind),
        "log_kept": {name: params[name] for name in KEPT_PARAMS if params.get(name)},
    }


def _dashboard_url(integration, params) -> str:
    query = {
        name: params[name] for name in ("log_user", "log_kind", *KEPT_PARAMS) if params.get(name)
    }
    url = reverse("calendarsync:dashboard", args=[integration.code])
    return f"{url}?{urlencode(query)}" if query else url


@login_required
@require_GET
def dashboard_activity(request, code):
    """The log's list alone, for the filter form (HTMX); the address bar shows the dashboard
    with the same filter, so a reload or a shared link shows the same list."""
    integration = get_integration(request, code)
    if not request.htmx:
        return redirect(_dashboard_url(integration, request.GET) + "#activity")
    context = {"integration": integration, **activity_log_context(integration, request.GET)}
    response = render(request, "calendarsync/activity_log.html#log-list", context)
    response["HX-Push-Url"] = _dashboard_url(integration, request.GET)
    return response
