"""Exchange Online's connection: sign the admin in to Microsoft, then ask for admin consent.

1. `graph_consent_start` sends the admin to Microsoft's sign-in (msal's code flow).
2. `graph_signin_callback` learns from the validated ID token which tenant is theirs (`tid`) and
   whether they hold a role that can consent, and sends them to that tenant's admin consent.
3. `graph_consent_callback` connects the integration only for that same tenant.

Each step's random `state` is kept in the admin's session and bound to one integration, so an
answer can only finish what this browser started. Microsoft warns that the `tenant` in the
consent answer can be forged: it must equal the signed-in tenant, and a token for it must be
issued before the integration is connected.
"""

import logging
import secrets

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from calendarsync import actors, lifecycle
from calendarsync.access import admin_company, get_company_object_or_404
from calendarsync.models import Activity, Integration

from ..base import ConsentRevoked, ProviderError
from . import signin
from .client import confirm_tenant
from .consent import (
    MAX_PENDING_STATES,
    ROLE_HELP,
    SESSION_KEY,
    TENANT_ID,
    consent_cancelled,
    consent_error_message,
    consent_url,
    signin_redirect_uri,
)

logger = logging.getLogger(__name__)


def _remember(request, step: dict) -> str:
    """A new state for one step; keeps the few latest attempts (several tabs), never more."""
    state = secrets.token_urlsafe(32)
    states = dict(request.session.get(SESSION_KEY, {}))
    states = dict(list(states.items())[-(MAX_PENDING_STATES - 1) :])
    states[state] = step
    request.session[SESSION_KEY] = states
    return state


def _take(request, step_name: str):
    """The pending step this answer's state names (used once), with its integration."""
    state = request.GET.get("state", "")
    states = dict(request.session.get(SESSION_KEY, {}))
    step = states.pop(state, None) if state else None
    request.session[SESSION_KEY] = states
    if not isinstance(step, dict) or step.get("step") != step_name:
        logger.warning("Graph %s answer with an unknown state; ignored", step_name)
        admin_company(request)  # 404 for someone who administers no company
        messages.error(
            request,
            _(
                "The answer from Microsoft did not match a consent started in this browser. "
                "Start the consent again from the integration's page."
            ),
        )
        return None, None
    integration = get_company_object_or_404(
        request, Integration, code=step["integration"], kind=Integration.Kind.GRAPH
    )
    return step, integration


@login_required
@require_GET
def graph_consent_start(request, code):
    """Send the admin to Microsoft's sign-in, to learn which organisation is theirs."""
    integration = get_company_object_or_404(
        request, Integration, code=code, kind=Integration.Kind.GRAPH
    )
    step = {"step": "signin", "integration": str(integration.code)}
    state = _remember(request, step)
    try:
        flow = signin.start(signin_redirect_uri(), state)
    except signin.SigninFailed:
        return _failed(
            request,
            integration,
            _("Microsoft 365 could not be reached. Wait a few minutes and try again."),
            "signin_unreachable",
        )
    request.session[SESSION_KEY] = {**request.session[SESSION_KEY], state: {**step, "flow": flow}}
    return HttpResponseRedirect(flow["auth_uri"])


@login_required
@require_GET
def graph_signin_callback(request):
    """Microsoft's sign-in answer: the admin's tenant and roles, then that tenant's consent."""
    step, integration = _take(request, "signin")
    if step is None:
        return redirect("calendarsync:overview")
    error = request.GET.get("error")
    if error:
        description = request.GET.get("error_description", "")
        message = consent_error_message(error, description)
        cancelled = consent_cancelled(error, description)
        return _failed(request, integration, message, error, cancelled=cancelled)
    try:
        admin = signin.finish(step["flow"], request.GET.dict())
    except signin.SigninFailed as exc:
        cancelled = bool(exc.description) and consent_cancelled(exc.code, exc.description)
        if exc.description:
            message = consent_error_message(exc.code, exc.description)
        else:
            message = _("The sign-in to Microsoft 365 could not be verified. Try again.")
        return _failed(request, integration, message, exc.code or "signin", cancelled=cancelled)
    step = {"step": "consent", "integration": str(integration.code), "tenant": admin.tenant_id}
    state = _remember(request, step)
    url = consent_url(state, admin.tenant_id)
    if admin.may_consent:
        return HttpResponseRedirect(url)
    # Their role may come through Privileged Identity Management later: say so, let them go on.
    return render(
        request,
        "calendarsync/graph_consent_roles.html",
        {"integration": integration, "username": admin.username, "consent_url": url},
    )


def _back_to(integration) -> HttpResponseRedirect:
    return redirect("calendarsync:integration", code=integration.code)


@login_required
@require_GET
def graph_consent_callback(request):
    """Microsoft's answer: `admin_consent=True&tenant=…&state=…` or `error=…&state=…`."""
    step, integration = _take(request, "consent")
    if step is None:
        return redirect("calendarsync:overview")

    error = request.GET.get("error")
    if error or request.GET.get("admin_consent", "").lower() != "true":
        description = request.GET.get("error_description", "")
        message = consent_error_message(error or "consent_required", description)
        cancelled = consent_cancelled(error or "", description)
        return _failed(request, integration, message, error or "no_consent", cancelled=cancelled)

    tenant_id = request.GET.get("tenant", "").strip().lower()
    if not TENANT_ID.fullmatch(tenant_id):
        return _failed(
            request,
            integration,
            _("The answer from Microsoft did not name a Microsoft 365 organisation. Try again."),
            "bad_tenant",
        )
    if tenant_id != step["tenant"]:
        return _failed(
            request,
            integration,
            _(
                "The consent came from another Microsoft 365 organisation than the one you "
                "signed in to. Start again, and sign in and consent with an administrator "
                "account of your own organisation."
            ),
            "tenant_mismatch",
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
        integration, actor=actors.admin(request), event="consent_granted", tenant_id=tenant_id
    )
    messages.success(request, _("Exchange Online is connected."))
    return _back_to(integration)


def _failed(request, integration, message: str, code: str, *, cancelled=False):
    """Back to the integration with the message. A cancel is the admin's own choice, not an
    error: one line, and the pending notice (with "Try again") does not repeat it."""
    logger.info("Graph consent for integration %s failed: %s", integration.pk, code)
    last_error = "" if cancelled else message[:500]
    Integration.objects.filter(pk=integration.pk).update(last_error=last_error)
    # The admin's own attempt; `message` is the text they were shown (it quotes Microsoft).
    Activity.record(
        integration,
        "consent_failed",
        actor=actors.admin(request),
        params={"code": code, "detail": message},
        subject=Activity.Subject.INTEGRATION,
        level=Activity.Level.WARNING,
    )
    (messages.warning if cancelled else messages.error)(request, message)
    return _back_to(integration)
