"""The one place that decides what a company admin may see: their own company's objects."""

from django.http import Http404
from django.shortcuts import get_object_or_404

from onex.models import Company


def administers_a_company(user) -> bool:
    return user.is_authenticated and user.memberships.exists()


def admin_company(request) -> Company:
    """The company the signed-in user administers; 404 for anyone who administers none."""
    membership = (
        request.user.memberships.select_related("company").order_by("id").first()
        if request.user.is_authenticated
        else None
    )
    if membership is None:
        raise Http404("No company")
    return membership.company


def get_company_object_or_404(request, model_or_queryset, **lookup):
    """An object of the admin's company, or 404 — for another company's object too.

    Models name the path to their company in `company_lookup` (e.g. "integration__company").
    """
    queryset = (
        model_or_queryset
        if hasattr(model_or_queryset, "model")
        else model_or_queryset._default_manager.all()
    )
    company = admin_company(request)
    return get_object_or_404(queryset, **{queryset.model.company_lookup: company}, **lookup)
