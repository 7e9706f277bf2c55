"""Admin consent for Exchange Online: send the admin to Microsoft and take the answer back.

The `state` parameter is random, kept in the admin's session and bound to one integration, so
an answer can only finish the consent this browser started. Microsoft warns that the `tenant`
in the answer can be forged: the integration is connected only after a token for that tenant
was actually issued.
"""

import logging
import secrets

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from calendarsync import lifecycle
from calendarsync.access import admin_company, get_company_object_or_404
from calendarsync.models import Activity, Integration

from ..base import ConsentRevoked, ProviderError
from .client import confirm_tenant
from .consent import (
    MAX_PENDING_STATES,
    ROLE_HELP,
    SESSION_KEY,
    TENANT_ID,
    consent_error_message,
    consent_url,
)

logger = logging.getLogger(__name__)


@login_required
@require_GET
def graph_consent_start(request, code):
    """Send the admin to Microsoft's admin-consent page for this integration."""
    integration = get_company_object_or_404(
        request, Integration, code=code, kind=Integration.Kind.GRAPH
    )
    state = secrets.token_urlsafe(32)
    states = dict(request.session.get(SESSION_KEY, {}))
    # Keep the few latest attempts (several tabs), never an unbounded list.
    states = dict(list(states.items())[-(MAX_PENDING_STATES - 1) :])
    states[state] = str(integration.code)
    request.session[SESSION_KEY] = states
    return HttpResponseRedirect(consent_url(state))


def _back_to(integration) -> HttpResponseRedirect:
    return redirect("calendarsync:integration", code=integration.code)


@login_required
@require_GET
def graph_consent_callback(request):
    """Microsoft's answer: `admin_consent=True&tenant=…&state=…` or `error=…&state=…`."""
    state = request.GET.get("state", "")
    states = dict(request.session.get(SESSION_KEY, {}))
    integration_code = states.pop(state, None) if state else None
    request.session[SESSION_KEY] = states
    if integration_code is None:
        logger.warning("Graph consent answer with an unknown state; ignored")
        admin_company(request)  # 404 for someone who administers no company
        messages.error(
            request,
            _(
                "The answer from Microsoft did not match a consent started in this browser. "
                "Start the consent again from the integration's page."
            ),
        )
        return redirect("calendarsync:overview")
    integration = get_company_object_or_404(
        request, Integration, code=integration_code, kind=Integration.Kind.GRAPH
    )

    error = request.GET.get("error")
    if error or request.GET.get("admin_consent", "").lower() != "true":
        message = consent_error_message(
            error or "consent_required", request.GET.get("error_description", "")
        )
        return _failed(request, integration, message, error or "no_consent")

    tenant_id = request.GET.get("tenant", "").strip().lower()
    if not TENANT_ID.fullmatch(tenant_id):
        return _failed(
            request,
            integration,
            _("The answer from Microsoft did not name a Microsoft 365 organisation. Try again."),
            "bad_tenant",
        )
    holder = (
        Integration.objects.filter(tenant_id=tenant_id)
        .exclude(pk=integration.pk)
        .values_list("company_id", "name")
        .first()
    )
    if holder and holder[0] != integration.company_id:
        return _failed(
            request,
            integration,
            _("This Microsoft 365 organisation is already connected to another company."),
            "tenant_taken",
        )
    if holder:
        return _failed(
            request,
            integration,
            _(
                "This Microsoft 365 organisation is already connected as %(name)s. Use that "
                "integration, or remove this one."
            )
            % {"name": holder[1]},
            "tenant_connected",
        )
    try:
        confirm_tenant(tenant_id)
    except ConsentRevoked:
        return _failed(
            request,
            integration,
            _(
                "Microsoft 365 did not confirm the consent: no access was granted for the "
                "organisation yet. It can take a few minutes to take effect; try again soon."
            )
            + " "
            + str(ROLE_HELP),
            "not_confirmed",
        )
    except ProviderError as exc:
        return _failed(
            request,
            integration,
            _("Microsoft 365 could not be reached to confirm the consent (%(code)s). Try again.")
            % {"code": exc.code or "error"},
            "not_confirmed",
        )

    lifecycle.connected(
        integration,
        _("An administrator gave consent in Microsoft 365; syncing is on."),
        event="consent_granted",
        tenant_id=tenant_id,
    )
    messages.success(request, _("Exchange Online is connected."))
    return _back_to(integration)


def _failed(request, integration, message: str, code: str):
    logger.info("Graph consent for integration %s failed: %s", integration.pk, code)
    Integration.objects.filter(pk=integration.pk).update(last_error=message[:500])
    Activity.record(integration, "consent_failed", message, level=Activity.Level.WARNING)
    messages.error(request, message)
    return _back_to(integration)
