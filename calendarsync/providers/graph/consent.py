"""Admin consent for Exchange Online: the consent URL and what Microsoft's answers mean."""

import re
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

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

# The admin chose Cancel on Microsoft's page: said in one line, no role lecture, no code.
CANCELLED = gettext_lazy("You cancelled the consent in Microsoft 365.")
CANCELLED_CODE = 65004  # AADSTS65004: "User declined to consent to access the app."

# error / AADSTS code → what the admin should do.
ERROR_MESSAGES = {
    # access_denied with a code about something else (a plain cancel is CANCELLED).
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
    CANCELLED_CODE: CANCELLED,
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


def _codes(description: str) -> list[int]:
    return [int(code) for code in re.findall(r"AADSTS(\d+)", description or "")]


def consent_cancelled(error: str, description: str) -> bool:
    """The admin cancelled on purpose: access_denied without a code about something else."""
    codes = _codes(description)
    return CANCELLED_CODE in codes or (error == "access_denied" and not codes)


def consent_error_message(error: str, description: str) -> str:
    """A clear message for an error answer, with the role hint where it may be about roles."""
    if consent_cancelled(error, description):
        return str(CANCELLED)
    codes = _codes(description)
    message = next((AADSTS_MESSAGES[c] for c in codes if c in AADSTS_MESSAGES), None)
    message = message or ERROR_MESSAGES.get(error) or _("Microsoft 365 did not give consent.")
    parts = [str(message)]
    if error in ("consent_required", "access_denied") or set(codes) & ROLE_CODES:
        parts.append(str(ROLE_HELP))
    if codes:
        parts.append(_("(Microsoft error code AADSTS%(code)s)") % {"code": codes[0]})
    return " ".join(parts)


def consent_url(state: str, tenant_id: str) -> str:
    """Admin consent asked of the tenant the admin signed in to, never of "organizations"."""
    params = {
        "client_id": settings.MS_CLIENT_ID,
        "scope": GRAPH_SCOPE,
        "redirect_uri": redirect_uri(),
        "state": state,
    }
    return f"{settings.MS_LOGIN_URL.rstrip('/')}/{tenant_id}/v2.0/adminconsent?{urlencode(params)}"


# Both must equal redirect URIs of the app registration exactly: fixed addresses for all.
def redirect_uri() -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("calendarsync:graph_consent_callback")


def signin_redirect_uri() -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("calendarsync:graph_signin_callback")
