"""The sync-progress banner every tab shows while an integration's requested syncs run: it asks
again every few seconds while something is pending and says once when all is done."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.formats import number_format
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET

from ..models import SyncedUser
from .common import banner_context, get_integration, tab_url


def finished_text(integration) -> str:
    errors = integration.users.filter(state=SyncedUser.State.ERROR).count()
    if errors:
        return ngettext(
            "Sync finished. %(errors)s user has an error: see Users.",
            "Sync finished. %(errors)s users have an error: see Users.",
            errors,
        ) % {"errors": number_format(errors, force_grouping=True)}
    total = integration.users.count()
    return ngettext(
        "Sync finished: %(total)s user is synced.",
        "Sync finished: all %(total)s users are synced.",
        total,
    ) % {"total": number_format(total, force_grouping=True)}


@login_required
@require_GET
def sync_progress_banner(request, code):
    """The banner alone (HTMX polling); once nothing is pending it says so and stops asking."""
    integration = get_integration(request, code)
    if not request.htmx:
        return redirect(tab_url(integration, "dashboard"))
    # Synkregler's banner keeps listening for the next rule change.
    tab = "rules" if request.GET.get("tab") == "rules" else ""
    context = {"integration": integration, "tab": tab, **banner_context(integration)}
    if not context["progress"].pending:
        context["finished_text"] = finished_text(integration)
    return render(request, "calendarsync/sync_progress.html", context)
