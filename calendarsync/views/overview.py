"""Översikt and Lägg till leverantör."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from ..access import admin_company
from ..forms import EwsIntegrationForm
from ..models import Integration
from .common import consent_url


@login_required
@require_GET
def overview(request):
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
@require_http_methods(["GET", "POST"])
def integration_add(request):
    """Lägg till leverantör: pick Exchange Online (consent) or Exchange On Prem (a form)."""
    company = admin_company(request)
    if request.method == "POST":
        kind = request.POST.get("kind")
        if kind == Integration.Kind.EWS:
            return redirect("calendarsync:integration_add_ews")
        if kind == Integration.Kind.GRAPH:
            integration = Integration.objects.create(
                company=company,
                kind=Integration.Kind.GRAPH,
                status=Integration.Status.PENDING_CONSENT,
                name=_("Exchange Online"),
            )
            return redirect(consent_url(integration))
        messages.error(request, _("Choose Exchange Online / O365 or Exchange On Prem."))
    return render(request, "calendarsync/add.html", {"company": company})


@login_required
@require_http_methods(["GET", "POST"])
def integration_add_ews(request):
    """Exchange On Prem: EWS URL, service account and password (stored encrypted)."""
    company = admin_company(request)
    form = EwsIntegrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        integration = form.save(commit=False)
        integration.company = company
        integration.kind = Integration.Kind.EWS
        # The EWS connection itself is checked by a later issue's provider; until then the
        # instance is saved but does not sync.
        integration.status = Integration.Status.UNVERIFIED
        integration.save()
        messages.success(
            request,
            _("%(name)s is saved. The On Prem instance is now visible in the list.")
            % {"name": integration.name},
        )
        return redirect("calendarsync:integration", code=integration.code)
    return render(request, "calendarsync/add_ews.html", {"company": company, "form": form})
