"""Användare → Synka användare från grupper (Katalog Synk): where the users come from, the
followed groups and a search for more, Synka nu, the last run's report, and the dashboard's
confirmation of the removals a run held (calendarsync/membership.py does the work)."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from .. import actors, membership, providers, tasks
from ..forms import FollowGroupForm, UserSourceForm
from ..models import Activity, FollowedGroup, MembershipReport
from ..providers.base import ProviderError
from .common import get_integration, redirect_after_edit, tab_url

MAX_GROUPS = 20  # followed groups per integration: each is read on every run
MIN_SEARCH = 2  # characters before a search asks the directory


def groups_context(integration, query: str = "") -> dict:
    """What the Användare tab's group card needs; `query`: a group search's text."""
    return {
        "source_form": UserSourceForm(initial={"user_source": integration.user_source}),
        "follows_groups": membership.follows_groups(integration),
        "followed_groups": list(integration.groups.all()),
        "membership_report": MembershipReport.objects.filter(integration=integration).first(),
        "groups_only": integration.user_source == integration.UserSource.GROUPS_ONLY,
        **search_context(integration, query),
    }


def search_context(integration, query: str) -> dict:
    """The directory's groups whose name matches `query`, each with whether it is followed."""
    query = query.strip()
    context = {"group_q": query, "found_groups": [], "search_error": ""}
    if len(query) < MIN_SEARCH or not membership.follows_groups(integration):
        return context
    try:
        found = providers.groups_for(integration).find_groups(query)
    except ProviderError as error:
        context["search_error"] = _search_error(error)
    else:
        followed = set(integration.groups.values_list("provider_id", flat=True))
        context["found_groups"] = [(group, group.provider_id in followed) for group in found]
    return context


@login_required
@require_POST
def user_source(request, code):
    integration = get_integration(request, code)
    form = UserSourceForm(request.POST)
    url = tab_url(integration, "users")
    if not form.is_valid():
        messages.error(request, _("Choose where the users come from."))
        return redirect_after_edit(request, url)
    source = form.cleaned_data["user_source"]
    if source != integration.user_source:
        with transaction.atomic():
            integration.user_source = source
            integration.save(update_fields=["user_source", "updated_at"])
            Activity.record(
                integration,
                "user_source_changed",
                actor=actors.admin(request),
                params={"source": source},
            )
            if membership.follows_groups(integration) and integration.groups.exists():
                tasks.request_membership_run(integration, actor=actors.admin(request))
        messages.success(request, _("Saved."))
    return redirect_after_edit(request, url)


@login_required
@require_GET
def group_search(request, code):
    """The search's results as an HTMX fragment; without HTMX, the tab shows them."""
    integration = get_integration(request, code)
    query = request.GET.get("group_q", "")
    if not request.htmx:
        return redirect(f"{tab_url(integration, 'users')}?{urlencode({'group_q': query})}")
    return render(
        request,
        "calendarsync/users_groups.html#group-results",
        {"integration": integration, **search_context(integration, query)},
    )


def _search_error(error: ProviderError) -> str:
    if error.code == "group_permission_missing":
        return _(
            "Microsoft 365 has not granted the permission to read groups (GroupMember.Read.All). "
            "Give consent again on the Connection tab, then search again."
        )
    return _("The groups could not be searched right now. Try again in a minute.")


@login_required
@require_POST
def group_follow(request, code):
    integration = get_integration(request, code)
    form = FollowGroupForm(request.POST, kind=integration.kind)
    url = tab_url(integration, "users")
    if not form.is_valid():
        messages.error(request, _("Choose a group from the search results."))
        return redirect_after_edit(request, url)
    if integration.groups.count() >= MAX_GROUPS:
        messages.error(request, _("At most %(n)d groups can be followed.") % {"n": MAX_GROUPS})
        return redirect_after_edit(request, url)
    with transaction.atomic():
        group, created = FollowedGroup.objects.get_or_create(
            integration=integration,
            provider_id=form.cleaned_data["provider_id"],
            defaults={"name": form.cleaned_data["name"]},
        )
        if created:
            Activity.record(
                integration,
                "group_followed",
                actor=actors.admin(request),
                params={"name": group.name},
            )
            tasks.request_membership_run(integration, actor=actors.admin(request))
    messages.success(request, _("The users are synced from %(name)s.") % {"name": group.name})
    return redirect_after_edit(request, url)


@login_required
@require_POST
def group_unfollow(request, code, pk):
    integration = get_integration(request, code)
    group = get_object_or_404(integration.groups, pk=pk)
    with transaction.atomic():
        group.delete()
        Activity.record(
            integration,
            "group_unfollowed",
            actor=actors.admin(request),
            params={"name": group.name},
        )
        tasks.request_membership_run(integration, actor=actors.admin(request))
    messages.success(
        request,
        _("%(name)s is no longer followed; its members who are in no other group are removed.")
        % {"name": group.name},
    )
    return redirect_after_edit(request, tab_url(integration, "users"))


@login_required
@require_POST
def groups_sync(request, code):
    """Synka nu: a membership run now, besides the beat's every 15 minutes."""
    integration = get_integration(request, code)
    if membership.follows_groups(integration) and integration.groups.exists():
        tasks.request_membership_run(integration, actor=actors.admin(request))
        messages.success(request, _("The users are being synced from the groups."))
    return redirect_after_edit(request, tab_url(integration, "users"))


@login_required
@require_POST
def removals_confirm(request, code):
    """The admin agrees to the removals a run held; the next run (now) makes them."""
    integration = get_integration(request, code)
    with transaction.atomic():
        report = (
            MembershipReport.objects.select_for_update().filter(integration=integration).first()
        )
        held = list(report.held_removals) if report else []
        if held:
            report.held_removals = []
            report.save(update_fields=["held_removals"])
            Activity.record(
                integration,
                "group_removals_confirmed",
                actor=actors.admin(request),
                params={"n": len(held)},
            )
            tasks.request_membership_run(integration, actor=actors.admin(request), confirmed=held)
            messages.success(request, _("The users who left the groups are being removed."))
    return redirect_after_edit(request, tab_url(integration, "dashboard"))
