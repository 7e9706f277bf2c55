"""Inställningar: name, days, active and the three plugin/privacy switches."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from ..forms import IntegrationSettingsForm
from .common import get_integration, hx_location, render_tab, resync, tab_url


@login_required
@require_http_methods(["GET", "POST"])
def integration_settings(request, code):
    integration = get_integration(request, code)
    form = IntegrationSettingsForm(request.POST or None, instance=integration)
    if request.method == "POST":
        if form.is_valid():
            integration = form.save()
            count = resync(integration) if form.has_changed() else 0
            messages.success(
                request,
                _("Settings saved.")
                + (" " + _("The users are being synced again.") if count else ""),
            )
            url = tab_url(integration, "integration")
            return hx_location(url) if request.htmx else redirect(url)
    return render_tab(
        request,
        "calendarsync/settings.html",
        integration,
        "settings",
        {"form": form},
        partial="settings-form",
    )
