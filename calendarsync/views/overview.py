"""Översikt, Lägg till leverantör, Ta bort integration, and the page for non-admins."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from .. import actors, lifecycle
from ..access import admin_company, administers_a_company
from ..forms import EwsIntegrationForm, unique_name
from ..models import Activity, Booking, Integration, MailboxSubscription
from .common import (
    consent_url,
    ews_firewall,
    get_integration,
    redirect_after_edit,
    render_tab,
)


@login_required
@require_GET
def overview(request):
    if not administers_a_company(request.user):
        return redirect("calendarsync:no_access")  # signed in, but One X marks them no admin
    company = admin_company(request)
    integrations = company.integrations.annotate(
        user_count=Count("users"), last_sync=Max("users__last_synced_at")
    ).order_by("name")
    return render(
        request,
        "calendarsync/overview.html",
        {"company": company, "integrations": integrations},
    )


@login_required
@require_GET
def no_access(request):
    """Signed in (Telenor ID) but no company's administrator: why, and who can change it."""
    if administers_a_company(request.user):
        return redirect("calendarsync:overview")
    return render(request, "calendarsync/no_access.html", status=403)


@login_required
@require_http_methods(["GET", "POST"])
def integration_add(request):
    """Lägg till leverantör: pick Exchange Online (consent) or Exchange On Prem (a form)."""
    company = admin_company(request)
    if request.method == "POST":
        kind = request.POST.get("kind")
        if kind == Integration.Kind.EWS:
            return redirect("calendarsync:integration_add_ews")
        if kind == Integration.Kind.GRAPH:
            return redirect(consent_url(_unconsented_graph(company)))
        messages.error(request, _("Choose Exchange Online / O365 or Exchange On Prem."))
    return render(request, "calendarsync/add.html", {"company": company})


@login_required
@require_http_methods(["GET", "POST"])
def integration_add_ews(request):
    """Exchange On Prem: EWS URL, service account and password (stored encrypted)."""
    company = admin_company(request)
    form = EwsIntegrationForm(
        request.POST or None, instance=Integration(company=company, kind=Integration.Kind.EWS)
    )
    if request.method == "POST" and form.is_valid():
        integration = form.save(commit=False)
        # The EWS connection itself is checked by a later issue's provider; until then the
        # instance is saved but does not sync.
        integration.status = Integration.Status.UNVERIFIED
        integration.save()
        Activity.record(
            integration,
            "integration_added",
            actor=actors.admin(request),
            params={"name": integration.name},
            subject=Activity.Subject.INTEGRATION,
            subject_label=integration.name,
        )
        messages.success(
            request,
            _("%(name)s is saved. The On Prem instance is now visible in the list.")
            % {"name": integration.name},
        )
        # On to Anslutning: the PowerShell set-up and firewall openings are still to be done.
        return redirect("calendarsync:integration_connection", code=integration.code)
    return render(
        request, "calendarsync/add_ews.html", {"company": company, "form": form, **ews_firewall()}
    )


def _unconsented_graph(company) -> Integration:
    """The company's Exchange Online integration that never got consent (a cancelled or
    failed first attempt), so trying again adds no duplicate; else a new one, named uniquely."""
    waiting = (
        company.integrations.filter(
            kind=Integration.Kind.GRAPH, status=Integration.Status.PENDING_CONSENT, tenant_id=""
        )
        .order_by("id")
        .first()
    )
    return waiting or Integration.objects.create(
        company=company,
        kind=Integration.Kind.GRAPH,
        status=Integration.Status.PENDING_CONSENT,
        name=unique_name(company, _("Exchange Online")),
    )


@login_required
@require_http_methods(["GET", "POST"])
def integration_remove(request, code):
    """Ta bort integration: a confirmation that says what goes, then a removal task."""
    integration = get_integration(request, code)
    if request.method == "POST":
        if lifecycle.remove(integration, actor=actors.admin(request)):
            messages.success(
                request,
                _("%(name)s is being removed. Its One X entries are deleted first.")
                % {"name": integration.name},
            )
        return redirect_after_edit(request, reverse("calendarsync:overview"))
    counts = {
        "users": integration.users.count(),
        "entries": Booking.objects.filter(synced_user__integration=integration).count(),
        "subscriptions": MailboxSubscription.objects.filter(
            synced_user__integration=integration
        ).count(),
        "rules": integration.rules.count(),
    }
    return render_tab(
        request, "calendarsync/integration_remove.html", integration, "settings", counts
    )
