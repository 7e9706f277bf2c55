"""Inställningar (name, days, active, the plugin and privacy switches) and Exchange On Prem's
Anslutning (the connection, and Testa anslutningen)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from .. import activity_changes, actors, lifecycle, providers
from ..forms import EwsConnectionForm, IntegrationSettingsForm
from ..models import Activity, Integration
from .common import get_integration, redirect_after_edit, render_tab, resync, tab_url


@login_required
@require_http_methods(["GET", "POST"])
def integration_settings(request, code):
    integration = get_integration(request, code)
    # Before the form writes into the instance: the log shows each field's before → after.
    before = activity_changes.snapshot(integration, IntegrationSettingsForm._meta.fields)
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
                _record_edit(request, integration, "settings_changed", before, fields)
            toggled = lifecycle.set_active(
                integration, form.cleaned_data["active"], actor=actors.admin(request)
            )
            count = resync(integration) if fields and integration.syncing else 0
            messages.success(request, _settings_saved_message(integration, toggled, count))
            url = tab_url(integration, "integration")
            return redirect_after_edit(request, url)
    return render_tab(
        request,
        "calendarsync/settings.html",
        integration,
        "settings",
        {"form": form},
        # Only a refused save answers with the form alone; a GET (also HTMX following the
        # HX-Location of a save) gets the whole page with its message.
        partial="settings-form" if request.method == "POST" else None,
    )


def _settings_saved_message(integration, toggled: bool, resynced: int) -> str:
    message = _("Saved.")
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


def _record_edit(request, integration, event, before: dict, fields) -> None:
    after = activity_changes.snapshot(integration, fields)
    changes = activity_changes.diff({name: before[name] for name in fields}, after)
    if changes:
        Activity.record(
            integration,
            event,
            actor=actors.admin(request),
            subject=Activity.Subject.SETTING,
            changes=changes,
        )


def _connection_form(integration, data=None):
    return EwsConnectionForm(data, instance=integration)


@login_required
@require_http_methods(["GET", "POST"])
def integration_connection(request, code):
    """Anslutning (Exchange On Prem): the EWS URL, service account and password, with the
    PowerShell set-up and the firewall openings beside them."""
    integration = get_integration(request, code)
    if integration.kind != Integration.Kind.EWS:
        return redirect("calendarsync:integration", code=integration.code)
    fields = EwsConnectionForm._meta.fields
    before = activity_changes.snapshot(integration, fields)
    connection_form = _connection_form(integration, request.POST or None)
    if request.method == "POST" and connection_form.is_valid():
        integration = connection_form.save()
        _record_edit(request, integration, "connection_changed", before, fields)
        resync(integration)
        messages.success(
            request, _("Saved.") + " " + _("The users are synced again over the new connection.")
        )
        url = tab_url(integration, "integration_connection")
        return redirect_after_edit(request, url)
    return render_tab(
        request,
        "calendarsync/connection.html",
        integration,
        "connection",
        {"connection_form": connection_form, "test_mailbox": _test_mailbox(integration)},
        partial="connection-form" if request.method == "POST" else None,
    )


def _test_mailbox(integration) -> str:
    return integration.users.order_by("pk").values_list("email", flat=True).first() or ""


@login_required
@require_POST
def integration_connection_test(request, code):
    """Testa anslutningen: every step with its answer; all passed connects the integration."""
    integration = get_integration(request, code)
    if integration.kind != Integration.Kind.EWS:
        return redirect("calendarsync:integration", code=integration.code)
    mailbox = (request.POST.get("mailbox") or "").strip().lower() or _test_mailbox(integration)
    context = {"connection_form": _connection_form(integration), "test_mailbox": mailbox}
    try:
        validate_email(mailbox)
    except ValidationError:
        context["test_error"] = _("Enter the address of a mailbox to test impersonation with.")
    else:
        steps = providers.provider_for(integration).test_connection(mailbox)
        # The steps stop at the first failure, so all passed means the whole test passed.
        passed = all(step.ok or step.warning for step in steps)
        context.update(test_steps=steps, test_passed=passed)
        if passed and lifecycle.connected(integration, actor=actors.admin(request)):
            integration.refresh_from_db()
            context["test_connected"] = True
    return render_tab(
        request,
        "calendarsync/connection.html",
        integration,
        "connection",
        context,
        partial="connection-test",
    )
