"""Admin consent for Exchange Online: send the admin to Microsoft and take the answer back.

The `state` parameter is random, kept in the admin's session and bound to one integration, so
an answer can only finish the consent this browser started. Microsoft warns that the `tenant`
in the answer can be forged: the integration is connected only after a token for that tenant
was actually issued.
"""

import logging
import re
import secrets
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from .access import admin_company, get_company_object_or_404
from .models import Activity, Integration
from .providers.base import ConsentRevoked, ProviderError

logger = logging.getLogger(__name__)

SESSION_KEY = "graph_consent_states"
# Microsoft answers with the tenant's GUID; anything else never reaches a token request URL.
TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_PENDING_STATES = 5
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# Added to every failure that may be about roles (the pages' consent help must say the same).
ROLE_HELP = gettext_lazy(
    "Microsoft Graph application permissions can only be granted by a Global Administrator or a "
    "Privileged Role Administrator. Application Administrator and Cloud Application "
    "Administrator are not enough for this permission."
)

# error / AADSTS code → what the admin should do.
ERROR_MESSAGES = {
    "access_denied": gettext_lazy(
        "The consent was declined in Microsoft 365. Start again and choose Accept."
    ),
    "consent_required": gettext_lazy(
        "Microsoft 365 requires an administrator's consent that was not given."
    ),
    "invalid_request": gettext_lazy(
        "Microsoft 365 rejected the consent request. Contact Telenor support."
    ),
    "unauthorized_client": gettext_lazy(
        "Microsoft 365 does not know this application. Contact Telenor support."
    ),
    "server_error": gettext_lazy(
        "Microsoft 365 had a temporary problem. Wait a few minutes and try again."
    ),
    "temporarily_unavailable": gettext_lazy(
        "Microsoft 365 had a temporary problem. Wait a few minutes and try again."
    ),
}
AADSTS_MESSAGES = {
    65004: ERROR_MESSAGES["access_denied"],
    90094: gettext_lazy(
        "Your account is not allowed to grant this consent (it needs admin approval)."
    ),
    90008: gettext_lazy("Your account is not allowed to grant this consent."),
    50020: gettext_lazy(
        "The account you signed in with does not belong to the organisation. Sign in with an "
        "administrator account of your own organisation."
    ),
    50034: gettext_lazy(
        "The account you signed in with does not exist in the organisation. Sign in with an "
        "administrator account of your own organisation."
    ),
    50011: gettext_lazy(
        "The return address does not match the application's registration. Contact Telenor support."
    ),
    700016: ERROR_MESSAGES["unauthorized_client"],
    50105: gettext_lazy(
        "Your account is not assigned to this application. Sign in as a Global Administrator."
    ),
}
ROLE_CODES = {90094, 90008, 65001, 50105}


def consent_error_message(error: str, description: str) -> str:
    """A clear message for an error answer, with the role hint where it may be about roles."""
    codes = [int(code) for code in re.findall(r"AADSTS(\d+)", description or "")]
    message = next((AADSTS_MESSAGES[c] for c in codes if c in AADSTS_MESSAGES), None)
    message = message or ERROR_MESSAGES.get(error) or _("Microsoft 365 did not give consent.")
    parts = [str(message)]
    if error == "consent_required" or set(codes) & ROLE_CODES or error == "access_denied":
        parts.append(str(ROLE_HELP))
    if codes:
        parts.append(_("(Microsoft error code AADSTS%(code)s)") % {"code": codes[0]})
    return " ".join(parts)


def consent_url(state: str) -> str:
    params = {
        "client_id": settings.MS_CLIENT_ID,
        "scope": GRAPH_SCOPE,
        "redirect_uri": redirect_uri(),
        "state": state,
    }
    return (
        f"{settings.MS_LOGIN_URL.rstrip('/')}/organizations/v2.0/adminconsent?{urlencode(params)}"
    )


def redirect_uri() -> str:
    # Must equal the app registration's redirect URI exactly: one fixed address for all.
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("calendarsync:graph_consent_callback")


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
    if (
        Integration.objects.filter(tenant_id=tenant_id)
        .exclude(company_id=integration.company_id)
        .exists()
    ):
        return _failed(
            request,
            integration,
            _("This Microsoft 365 organisation is already connected to another company."),
            "tenant_taken",
        )
    from .providers.graph_api import confirm_tenant

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

    integration.tenant_id = tenant_id
    integration.status = Integration.Status.CONNECTED
    integration.consented_at = timezone.now()
    integration.last_error = ""
    integration.save(
        update_fields=["tenant_id", "status", "consented_at", "last_error", "updated_at"]
    )
    Activity.record(
        integration,
        "consent_granted",
        _("An administrator gave consent in Microsoft 365; syncing is on."),
    )
    from .notifications import resume_integration

    resume_integration(integration)  # nothing to do for an integration without users yet
    messages.success(request, _("Exchange Online is connected."))
    return _back_to(integration)


def _failed(request, integration, message: str, code: str):
    logger.info("Graph consent for integration %s failed: %s", integration.pk, code)
    Integration.objects.filter(pk=integration.pk).update(last_error=message[:500])
    Activity.record(integration, "consent_failed", message, level=Activity.Level.WARNING)
    messages.error(request, message)
    return _back_to(integration)
