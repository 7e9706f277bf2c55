"""Synkregler: the ordered rule editor (inline with HTMX), the side-by-side preview, and
deleting a rule: a confirmation (in place or a page of its own) and Ångra for a while."""

import copy

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from onex.models import AbsenceReason

from .. import activity_changes, actors, planning, reachability, rule_text, rule_undo
from ..forms import SyncRuleForm
from ..models import Activity, SyncRule
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


def never_reached(rules) -> dict[int, str]:
    """Index of each rule an earlier one always catches → the warning that says so."""
    engine_rules = [planning.rule_from_model(rule, index) for index, rule in enumerate(rules)]
    return {
        later: rule_text.never_reached(later + 1, earlier + 1, rules[earlier])
        for later, earlier in reachability.unreachable(engine_rules).items()
    }


def _record(request, integration, event, rule, **fields) -> None:
    """One log entry for an admin's rule change, naming the rule in plain words."""
    Activity.record(
        integration,
        event,
        actor=actors.admin(request),
        subject=Activity.Subject.RULE,
        subject_label=rule_text.describe(rule) if rule is not None else "",
        **fields,
    )


def _editor_context(request, integration, *, form=None, editing=None, deleting=None, undone=None):
    rules = _rules(integration)
    warnings = never_reached(rules)
    return {
        "rules": [
            (rule, rule_text.describe(rule), warnings.get(index))
            for index, rule in enumerate(rules)
        ],
        "default_template": default_template_lines(integration),
        "form": form,
        "editing": editing,
        "deleting": deleting,
        "undo": [
            (token, number, rule_text.describe(rule))
            for token, rule, number in rule_undo.pending(request.session, integration)
        ],
        "undone": undone,
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
    context = _editor_context(request, integration)
    if request.htmx:  # e.g. Cancel on an in-place delete confirmation: the editor again
        return _respond(request, integration, context)
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
            _record(request, integration, "rule_added", rule)
        resync(integration)
        return _respond(request, integration, _editor_context(request, integration), changed=True)
    context = _editor_context(request, integration, form=form, editing="new")
    if not request.htmx:
        return render_tab(request, "calendarsync/rules.html", integration, "rules", context)
    return _respond(request, integration, context)


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request, code, pk):
    integration = get_integration(request, code)
    rule = _rule_or_404(integration, pk)
    # Before the form writes into the rule: the log shows each field's before → after.
    before = activity_changes.snapshot(rule, SyncRuleForm._meta.fields)
    form = SyncRuleForm(request.POST or None, instance=rule, integration=integration)
    if request.method == "POST" and form.is_valid():
        rule = form.save()
        after = activity_changes.snapshot(rule, SyncRuleForm._meta.fields)
        if changes := activity_changes.diff(before, after):
            _record(request, integration, "rule_changed", rule, changes=changes)
        resync(integration)
        return _respond(request, integration, _editor_context(request, integration), changed=True)
    context = _editor_context(request, integration, form=form, editing=rule.pk)
    if not request.htmx:
        return render_tab(request, "calendarsync/rules.html", integration, "rules", context)
    return _respond(request, integration, context)


@login_required
@require_http_methods(["GET", "POST"])
def rule_delete(request, code, pk):
    """GET: what goes, asked in place (HTMX) or as a page; POST: delete, keeping an Ångra."""
    integration = get_integration(request, code)
    rule = _rule_or_404(integration, pk)
    if request.method == "POST":
        number = next(i for i, other in enumerate(_rules(integration), 1) if other.pk == rule.pk)
        with transaction.atomic():
            rule_undo.remember(request.session, rule, number)
            _record(request, integration, "rule_removed", rule)
            rule.delete()
            _renumber(integration)
        resync(integration)
        context = _editor_context(request, integration)
        context["just_deleted"] = True
        return _respond(request, integration, context, changed=True)
    context = _editor_context(request, integration, deleting=rule.pk)
    if not request.htmx:
        return render_tab(request, "calendarsync/rule_delete.html", integration, "rules", context)
    return _respond(request, integration, context)


@login_required
@require_POST
def rule_undo_delete(request, code):
    """Ångra: bring a rule deleted in this session back at its old place."""
    integration = get_integration(request, code)
    snapshot = rule_undo.take(request.session, integration, request.POST.get("token", ""))
    if snapshot is None:
        raise Http404("No such deleted rule in this session.")
    rule = rule_undo.restore(integration, snapshot)
    if rule is None:
        problem = _("The rule could not be brought back: its absence reason no longer exists.")
        if not request.htmx:
            messages.error(request, problem)
        context = _editor_context(request, integration)
        context["undo_problem"] = problem
        return _respond(request, integration, context)
    _record(request, integration, "rule_restored", rule)
    resync(integration)
    context = _editor_context(request, integration, undone=rule.pk)
    return _respond(request, integration, context, changed=True)


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
            moved = [{"field": "position", "before": index + 1, "after": target + 1}]
            _record(request, integration, "rule_moved", rule, changes=moved)
            resync(integration)
    return _respond(request, integration, _editor_context(request, integration), changed=True)


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
        _record(request, integration, "rules_from_template", None)
        resync(integration)
    return _respond(request, integration, _editor_context(request, integration), changed=True)


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
    saved_rules = _rules(integration)
    edited_rules = _edited_rules(integration, data, saved_rules, context) if with_edit else None
    # The summary warns of rules that can never decide: the unsaved edit's list if valid.
    warnings = never_reached(edited_rules if edited_rules is not None else saved_rules)
    context["never_reached"] = [warnings[index] for index in sorted(warnings)]
    if not email:
        return context
    synced_user = integration.users.select_related("subscription").filter(email=email).first()
    if synced_user is None:
        context["preview_error"] = _("%(email)s is not a user of this integration.") % {
            "email": email
        }
        return context
    context.update(preview_logic.compare(integration, synced_user, saved_rules, edited_rules))
    return context


def _edited_rules(integration, data, saved_rules, context):
    """The saved rules with the unsaved edit in its place (or last, if new); None when there
    is no edit or it is not valid (then `context` says so)."""
    edited_rules = None
    editing = data.get("editing")
    if editing:
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
    return edited_rules
