"""Användare: add by email, remove with confirmation, CSV import/export, search and pages."""

import csv
import io

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from onex.models import Subscription

from .. import actors, progress, removal, tasks
from ..actors import Actor
from ..forms import (
    AddUserForm,
    ImportLine,
    ImportUsersForm,
    check_email,
    read_import_lines,
    taken_emails,
    validate_import_email,
)
from ..models import Activity, SyncedUser
from .common import get_integration, redirect_after_edit, render_tab, tab_url
from .groups import groups_context

PAGE_SIZE = 50
EXPORT_CHUNK = 2000
# A cell a spreadsheet would read as a formula (OWASP "CSV injection") gets a leading quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 500  # emails per IN (...) lookup, well under SQLite's variable limit


def remove(synced_user, *, actor: Actor) -> str | None:
    """Remove a user with their bookings, One X entries and email (the removal path).

    Returns why it could not be done now, or None when the user is gone.
    """
    try:
        removal.remove_synced_user(synced_user, actor=actor)
    except removal.MailboxBusy:
        return _("The user is being synced right now. Try again in a minute.")
    except removal.RemovalIncomplete:
        return _("One X did not delete every entry yet. Try again in a while.")
    return None


def _users_context(request, integration, form=None):
    query = request.GET.get("q", "").strip()
    state = request.GET.get("state", "")
    users = integration.users.select_related("subscription").order_by("email")
    if query:
        users = users.filter(
            Q(email__icontains=query) | Q(subscription__display_name__icontains=query)
        )
    if state in SyncedUser.State.values:
        users = users.filter(state=state)
    page = Paginator(users, PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "page": page,
        # The list asks again while a user on it waits for a sync, until all have one.
        "list_poll_seconds": progress.poll_seconds(page.object_list),
        "q": query,
        "state": state,
        "states": SyncedUser.State.choices,
        "form": form or AddUserForm(integration=integration),
        **groups_context(integration, request.GET.get("group_q", "")),
    }


@login_required
@require_GET
def users(request, code):
    integration = get_integration(request, code)
    return render_tab(
        request,
        "calendarsync/users.html",
        integration,
        "users",
        _users_context(request, integration),
        partial="user-list" if request.htmx and request.htmx.target == "user-list" else None,
    )


def _refused_in_groups_only(request, integration):
    """With "endast grupper" the next membership run would remove a user added by hand: none
    is added (the tab hides the forms; this answers an old page or a second tab)."""
    if integration.user_source != integration.UserSource.GROUPS_ONLY:
        return None
    messages.error(
        request,
        _(
            "The users come from the groups only, so none can be added by hand. Add the person "
            "to one of the groups, or choose that users added by hand stay."
        ),
    )
    return redirect_after_edit(request, tab_url(integration, "users"))


@login_required
@require_http_methods(["POST"])
def user_add(request, code):
    integration = get_integration(request, code)
    if refused := _refused_in_groups_only(request, integration):
        return refused
    form = AddUserForm(request.POST, integration=integration)
    if form.is_valid():
        try:
            with transaction.atomic():
                synced_user = SyncedUser.objects.create(
                    integration=integration,
                    subscription=form.subscription,
                    email=form.cleaned_data["email"],
                )
                Activity.record(
                    integration,
                    "user_added",
                    actor=actors.admin(request),
                    synced_user=synced_user,
                    subject_label=synced_user.email,
                )
        except IntegrityError:  # a double submit raced this one: it is added already
            url = tab_url(integration, "users")
            return redirect_after_edit(request, url)
        tasks.start_syncing(integration.users.filter(pk=synced_user.pk))
        messages.success(
            request, _("%(email)s is added and will be synced.") % {"email": synced_user.email}
        )
        url = tab_url(integration, "users")
        return redirect_after_edit(request, url)
    return render_tab(
        request,
        "calendarsync/users.html",
        integration,
        "users",
        _users_context(request, integration, form),
        partial="add-form",
    )


@login_required
@require_http_methods(["GET", "POST"])
def user_remove(request, code, pk):
    integration = get_integration(request, code)
    synced_user = get_object_or_404(
        integration.users.select_related("integration__company", "subscription"), pk=pk
    )
    if request.method == "POST":
        email = synced_user.email
        problem = remove(synced_user, actor=actors.admin(request))
        if problem:
            messages.error(request, problem)
        else:
            messages.success(
                request,
                _("%(email)s is removed; their bookings and One X entries are deleted.")
                % {"email": email},
            )
        url = tab_url(integration, "users")
        return redirect_after_edit(request, url)
    return render_tab(
        request,
        "calendarsync/user_remove.html",
        integration,
        "users",
        {"synced_user": synced_user},
    )


@login_required
@require_http_methods(["GET", "POST"])
def users_import(request, code):
    integration = get_integration(request, code)
    if refused := _refused_in_groups_only(request, integration):
        return refused
    form = ImportUsersForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        report = import_users(integration, form.cleaned_data["file"], actor=actors.admin(request))
        added = sum(1 for line in report if line.ok)
        messages.success(
            request,
            _("%(added)d of %(total)d lines added.") % {"added": added, "total": len(report)},
        )
    return render_tab(
        request,
        "calendarsync/users_import.html",
        integration,
        "users",
        {
            "form": form,
            "report": report,
            "failed": [line for line in report or [] if not line.ok],
        },
    )


def import_users(integration, text, *, actor: Actor) -> list[ImportLine]:
    """Add every valid line's user; one report line per input line, in file order. The log
    gets one entry for the whole file (thousands of lines must not bury everything else)."""
    lines = read_import_lines(text)
    emails = {value.strip().lower() for _, value in lines}
    known, taken = {}, {}
    email_list = sorted(emails)
    for start in range(0, len(email_list), CHUNK):
        chunk = email_list[start : start + CHUNK]
        for subscription in Subscription.objects.filter(
            company_id=integration.company_id, email__in=chunk
        ).order_by("active"):
            known[subscription.email] = subscription  # an active one wins (ordered last)
        taken.update(taken_emails(integration, chunk))
    report, new_users = [], []
    for number, value in lines:
        email = value.strip().lower()
        problem = validate_import_email(email)
        subscription = None
        if problem is None:
            problem, subscription = check_email(integration, email, known=known, taken=taken)
        if problem is None:
            new_users.append(
                SyncedUser(integration=integration, subscription=subscription, email=email)
            )
            taken[email] = (integration.pk, integration.name)
            report.append(ImportLine(number, email, True, _("Added")))
        else:
            report.append(ImportLine(number, value, False, problem))
    with transaction.atomic():
        SyncedUser.objects.bulk_create(new_users, batch_size=CHUNK)
        ids = [synced_user.pk for synced_user in new_users]  # bulk_create filled them in
        for start in range(0, len(ids), CHUNK):
            tasks.start_syncing(integration.users.filter(pk__in=ids[start : start + CHUNK]))
        Activity.record(
            integration,
            "users_imported",
            actor=actor,
            params={"added": len(new_users), "failed": len(report) - len(new_users)},
            subject=Activity.Subject.USER,
        )
    return report


@login_required
@require_GET
def users_export(request, code):
    integration = get_integration(request, code)
    header = [_("email"), _("name"), _("state"), _("last synced"), _("last error")]
    rows = (
        integration.users.order_by("email")
        .values_list("email", "subscription__display_name", "state", "last_synced_at", "last_error")
        .iterator(chunk_size=EXPORT_CHUNK)
    )
    # Resolved once: a lazy label or the current time zone per row costs 10,000 look-ups.
    labels = {value: str(label) for value, label in SyncedUser.State.choices}
    tz = timezone.get_current_timezone()

    def stream():
        # Rows go out in chunks: one write per 2,000 rows keeps 10,000 users well under 100 ms.
        buffer = io.StringIO()
        # Swedish Excel splits columns at semicolons (the list separator where the decimal
        # separator is a comma); the import reads either separator back.
        writer = csv.writer(buffer, delimiter=";")
        buffer.write("\ufeff")  # Excel reads UTF-8 only with a byte-order mark
        writer.writerow(header)
        for count, (email, name, state, last_synced, last_error) in enumerate(rows, start=1):
            when = last_synced.astimezone(tz).isoformat(timespec="seconds") if last_synced else ""
            cells = [email, name, labels.get(state, state), when, last_error]
            writer.writerow([_spreadsheet_safe(cell) for cell in cells])
            if count % EXPORT_CHUNK == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    name = "".join(c for c in integration.name if c.isprintable() and c not in '"\\')
    filename = f"users-{name or integration.code}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _spreadsheet_safe(value) -> str:
    value = "" if value is None else str(value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


SUGGESTIONS = 20


@login_required
@require_GET
def user_suggestions(request, code):
    """<option>s for a user picker's datalist: the integration's users matching what is typed."""
    integration = get_integration(request, code)
    query = request.GET.get("q") or request.GET.get("user") or ""
    users = integration.users.order_by("email")
    if query.strip():
        users = users.filter(email__icontains=query.strip())
    return render(
        request,
        "htmx/user_options.html",
        {
            "emails": users.values_list("email", flat=True)[:SUGGESTIONS],
            "list_id": request.GET.get("list", "user-options"),
        },
    )
