from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .access import admin_company, get_company_object_or_404
from .models import Integration


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
@require_GET
def integration_detail(request, code):
    integration = get_company_object_or_404(request, Integration, code=code)
    return render(request, "calendarsync/integration.html", {"integration": integration})
