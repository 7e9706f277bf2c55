"""Synkregler: the ordered rule editor (inline with HTMX) and the side-by-side preview."""

import copy

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from onex.models import AbsenceReason

from .. import rule_text
from ..forms import SyncRuleForm
from ..models import SyncRule
from ..rules import AWAY_REASON, MEETING_REASON
from . import preview as preview_logic
from .common import get_integration, render_tab, resync, tab_url

PREVIEW_USER_CHOICES = 50


def _rules(integration):
    return list(integration.rules.select_related("reason").order_by("position", "id"))


def _rule_or_404(integration, pk):
    # The integration was already scoped to the admin's company; its rules are its own.
    return get_object_or_404(
        SyncRule.objects.select_related("reason"), integration=integration, pk=pk
    )


def default_template_lines(integration):
    """The built-in standardmall, read back like the admin's rules (with One X's labels)."""
    labels = {
        reason.code: reason.label
        for reason in AbsenceReason.objects.filter(
            company_id=integration.company_id, code__in=[MEETING_REASON, AWAY_REASON]
        )
    }
    info = SyncRule.Action.INFO.label
    busy, oof = _("Busy"), _("Out of office")
    meeting = labels.get(MEETING_REASON) or _("Meeting")
    away = labels.get(AWAY_REASON) or _("Away")
    return [
        f"{busy} → {info}: {meeting}",
        f"{oof} → {info}: {away}",
        _("Other bookings are not synced."),
    ]


def _editor_context(integration, *, form=None, editing=None):
    rules = _rules(integration)
    return {
        "rules": [(rule, rule_text.describe(rule)) for rule in rules],
        "default_template": default_template_lines(integration),
        "form": form,
        "editing": editing,
    }


def _respond(request, integration, context, *, changed=False):
    """The editor fragment for HTMX (telling the preview to refresh), else back to the page."""
    if request.htmx:
        response = render_tab(
            request, "calendarsync/rules.html", integration, "rules", context, partial="editor"
        )
        if changed:
            response["HX-Trigger"] = "rulesChanged"
        return response
    return redirect(tab_url(integration, "rules"))


@login_required
@require_GET
def rules(request, code):
    integration = get_integration(request, code)
    context = _editor_context(integration)
    context["preview_users"] = list(
        integration.users.order_by("email").values_list("email", flat=True)[:PREVIEW_USER_CHOICES]
    )
    context.update(_preview_context(integration, request.GET))
    return render_tab(request, "calendarsync/rules.html", integration, "rules", context)


@login_required
@require_http_methods(["GET", "POST"])
def rule_new(request, code):
    integration = get_integration(request, code)
    form = SyncRuleForm(request.POST or None, integration=integration)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            rule = form.save(commit=False)
            last = integration.rules.order_by("-position").values_list("position", flat=True)
            rule.position = (last.first() or 0) + 1
            rule.save()
        resync(integration)
        return _respond(request, integration, _editor_context(integration), changed=True)
    context = _editor_context(integration, form=form, editing="new")
    if not request.htmx:
        return render_tab(request, "calendarsync/rules.html", integration, "rules", context)
    return _respond(request, integration, context)


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request, code, pk):
    integration = get_integration(request, code)
    rule = _rule_or_404(integration, pk)
    form = SyncRuleForm(request.POST or None, instance=rule, integration=integration)
    if request.method == "POST" and form.is_valid():
        form.save()
        resync(integration)
        return _respond(request, integration, _editor_context(integration), changed=True)
    context = _editor_context(integration, form=form, editing=rule.pk)
    if not request.htmx:
        return render_tab(request, "calendarsync/rules.html", integration, "rules", context)
    return _respond(request, integration, context)


@login_required
@require_POST
def rule_delete(request, code, pk):
    integration = get_integration(request, code)
    _rule_or_404(integration, pk).delete()
    _renumber(integration)
    resync(integration)
    return _respond(request, integration, _editor_context(integration), changed=True)


@login_required
@require_POST
def rule_move(request, code, pk):
    integration = get_integration(request, code)
    rule = _rule_or_404(integration, pk)
    direction = request.POST.get("direction")
    with transaction.atomic():
        ordered = _rules(integration)
        index = next(i for i, other in enumerate(ordered) if other.pk == rule.pk)
        target = index - 1 if direction == "up" else index + 1 if direction == "down" else index
        if 0 <= target < len(ordered) and target != index:
            ordered[index], ordered[target] = ordered[target], ordered[index]
            _renumber(integration, ordered)
            resync(integration)
    return _respond(request, integration, _editor_context(integration), changed=True)


def _renumber(integration, ordered=None):
    ordered = ordered if ordered is not None else _rules(integration)
    for position, rule in enumerate(ordered, start=1):
        rule.position = position
    SyncRule.objects.bulk_update(ordered, ["position"])


@login_required
@require_POST
def rules_from_template(request, code):
    """Start from the standardmall: its two lines become editable rules."""
    integration = get_integration(request, code)
    if not integration.rules.exists():
        reasons = AbsenceReason.objects.filter(company_id=integration.company_id, active=True)
        meeting = reasons.filter(Q(code__iexact=MEETING_REASON) | Q(label_sv__iexact="Möte"))
        away = reasons.filter(Q(code__iexact=AWAY_REASON) | Q(label_sv__iexact="Frånvarande"))
        fallback = reasons.first()
        SyncRule.objects.bulk_create(
            [
                SyncRule(
                    integration=integration,
                    position=1,
                    show_as=["busy"],
                    action=SyncRule.Action.INFO,
                    reason=meeting.first() or fallback,
                ),
                SyncRule(
                    integration=integration,
                    position=2,
                    show_as=["oof"],
                    action=SyncRule.Action.INFO,
                    reason=away.first() or fallback,
                ),
            ]
        )
        resync(integration)
    return _respond(request, integration, _editor_context(integration), changed=True)


@login_required
@require_http_methods(["GET", "POST"])
def rules_preview(request, code):
    """One user's coming bookings → One X entries: saved rules, and the unsaved edit beside."""
    integration = get_integration(request, code)
    if not request.htmx:
        return redirect(tab_url(integration, "rules") + "?" + request.GET.urlencode())
    data = request.POST if request.method == "POST" else request.GET
    context = _preview_context(integration, data, with_edit=request.method == "POST")
    return render_tab(
        request, "calendarsync/rules.html", integration, "rules", context, partial="preview"
    )


def _preview_context(integration, data, *, with_edit=False):
    email = (data.get("preview_user") or data.get("user") or "").strip().lower()
    context = {"preview_user": email}
    if not email:
        return context
    synced_user = integration.users.select_related("subscription").filter(email=email).first()
    if synced_user is None:
        context["preview_error"] = _("%(email)s is not a user of this integration.") % {
            "email": email
        }
        return context
    saved_rules = _rules(integration)
    edited_rules = None
    editing = data.get("editing")
    if with_edit and editing:
        instance = None
        if editing != "new":
            instance = next((r for r in saved_rules if str(r.pk) == editing), None)
        # The form writes into its instance: give it a copy so the saved column stays saved.
        form = SyncRuleForm(data, instance=copy.copy(instance), integration=integration)
        if form.is_valid():
            edited = form.build()
            edited_rules = [edited if r.pk == edited.pk else r for r in saved_rules]
            if instance is None:
                edited_rules.append(edited)
        else:
            context["edit_invalid"] = True
    context.update(preview_logic.compare(integration, synced_user, saved_rules, edited_rules))
    return context
