"""Inställningar: name, days, active and the three plugin/privacy switches."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from .. import lifecycle
from ..forms import EwsConnectionForm, IntegrationSettingsForm
from ..models import Integration
from .common import get_integration, redirect_after_edit, render_tab, resync, tab_url


@login_required
@require_http_methods(["GET", "POST"])
def integration_settings(request, code):
    integration = get_integration(request, code)
    form = IntegrationSettingsForm(request.POST or None, instance=integration)
    if request.method == "POST":
        if form.is_valid():
            integration = form.save(commit=False)
            # Only the form's own fields: a worker may have changed the status meanwhile.
            # Aktiv is a transition of its own (it removes or restores One X entries).
            fields = [name for name in form.changed_data if name != "active"]
            integration.active = form.initial["active"]
            if fields:
                integration.save(update_fields=[*fields, "updated_at"])
            toggled = lifecycle.set_active(integration, form.cleaned_data["active"])
            count = resync(integration) if fields and integration.syncing else 0
            messages.success(request, _settings_saved_message(integration, toggled, count))
            url = tab_url(integration, "integration")
            return redirect_after_edit(request, url)
    return render_tab(
        request,
        "calendarsync/settings.html",
        integration,
        "settings",
        {"form": form, "connection_form": _connection_form(integration)},
        partial="settings-form",
    )


def _settings_saved_message(integration, toggled: bool, resynced: int) -> str:
    message = _("Settings saved.")
    if toggled and not integration.active:
        return (
            message
            + " "
            + _(
                "Syncing is off: the integration's One X entries and change notifications are "
                "being removed."
            )
        )
    if (toggled and integration.syncing) or resynced:
        return message + " " + _("The users are being synced again.")
    return message


def _connection_form(integration, data=None):
    if integration.kind != Integration.Kind.EWS:
        return None
    return EwsConnectionForm(data, instance=integration)


@login_required
@require_http_methods(["POST"])
def integration_connection(request, code):
    """Exchange On Prem: change the EWS URL, service account or password."""
    integration = get_integration(request, code)
    if integration.kind != Integration.Kind.EWS:
        return redirect("calendarsync:integration", code=integration.code)
    connection_form = _connection_form(integration, request.POST)
    if connection_form.is_valid():
        integration = connection_form.save()
        resync(integration)
        messages.success(request, _("The connection is saved."))
        url = tab_url(integration, "integration")
        return redirect_after_edit(request, url)
    return render_tab(
        request,
        "calendarsync/settings.html",
        integration,
        "settings",
        {"form": IntegrationSettingsForm(instance=integration), "connection_form": connection_form},
        partial="connection-form",
    )
