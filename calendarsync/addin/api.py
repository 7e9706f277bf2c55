"""The Outlook add-in's JSON API: the policy and reasons, a preview of one booking, the user's
own rules, and (Exchange On Prem) linking the mailbox once.

Every call carries `Authorization: Bearer <token>` from Outlook (calendarsync.addin.identity
says who it proves); no session or cookie counts and no CSRF token is needed, since nothing
but that token authenticates. Answers are JSON, never cached; errors are
{"error": code, "message": text in the user's language (?lang=, else Accept-Language)}.
"""

import json
from datetime import datetime, timedelta
from functools import wraps

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.csrf import csrf_exempt

from onex.models import AbsenceReason

from .. import actors, personal_rules, planning, tasks
from ..items import CalendarItem, ItemKind, Response, Sensitivity, ShowAs
from ..models import Activity
from ..rules import choice_from_dict
from ..views import preview
from . import identity
from .identity import Refused

# Office.js `item.showAs` (Office.MailboxEnums.ShowAs) and our own names, compared lower-case.
SHOW_AS = {
    "free": ShowAs.FREE,
    "tentative": ShowAs.TENTATIVE,
    "busy": ShowAs.BUSY,
    "oof": ShowAs.OOF,
    "outofoffice": ShowAs.OOF,
    "workingelsewhere": ShowAs.WORKING_ELSEWHERE,
    "working_elsewhere": ShowAs.WORKING_ELSEWHERE,
    "unknown": ShowAs.UNKNOWN,
}
PREVIEW_ITEM_ID = "addin-preview"


class PersonalRulesNotAllowed(Refused):
    status = 403
    code = "personal_rules_not_allowed"
    message = gettext_lazy(
        "Your administrator does not allow personal rules here: the administrator's rules apply."
    )


class Invalid(Refused):
    status = 400
    code = "invalid"


def _language(request) -> str:
    """?lang=sv|en, else the best of Accept-Language, else Swedish (no cookie counts)."""
    supported = [code for code, _name in settings.LANGUAGES]
    asked = request.GET.get("lang", "")[:2].lower()
    if asked in supported:
        return asked
    ranked = []
    for part in request.headers.get("Accept-Language", "").split(","):
        tag, _sep, quality = part.strip().partition(";q=")
        try:
            ranked.append((float(quality or 1), tag[:2].lower()))
        except ValueError:
            continue
    for _quality, tag in sorted(ranked, key=lambda pair: -pair[0]):
        if tag in supported:
            return tag
    return settings.LANGUAGE_CODE


def _answer(data: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": False})
    response["Cache-Control"] = "no-store"
    response["Content-Language"] = translation.get_language()
    return response


def _refused(refused: Refused) -> JsonResponse:
    response = _answer(
        {"error": refused.code, "message": str(refused.message), **refused.extra},
        refused.status,
    )
    if refused.status == 401:
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def addin_api(*methods):
    """An API view: `view(request, user, body)` for the caller's own SyncedUser (`body` is the
    parsed JSON of a POST or PUT). Link is the one view without a user (`authenticate=False`
    passes the token instead)."""

    def decorate(view, authenticate=True):
        @csrf_exempt
        @wraps(view)
        def wrapper(request):
            with translation.override(_language(request)):
                try:
                    if request.method not in methods:
                        response = _answer(
                            {"error": "method_not_allowed", "message": _("Not allowed.")}, 405
                        )
                        response["Allow"] = ", ".join(methods)
                        return response
                    token = identity.bearer_token(request)
                    who = identity.caller(token) if authenticate else token
                    body = _body(request) if request.method in ("POST", "PUT") else {}
                    return _answer(view(request, who, body))
                except Refused as refused:
                    return _refused(refused)

        return wrapper

    return decorate


def _body(request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise Invalid(_("The request is not JSON.")) from None
    if not isinstance(body, dict):
        raise Invalid(_("The request must be a JSON object."))
    return body


def _reasons(integration):
    return AbsenceReason.objects.filter(company_id=integration.company_id, active=True)


def personal_rules_allowed(integration) -> bool:
    return integration.plugin_enabled and not integration.plugin_defaults_only


# ----- GET /addin/api/context/


@addin_api("GET")
def context(request, user, body):
    integration, subscription = user.integration, user.subscription
    return {
        "user": {"email": user.email, "name": subscription.display_name},
        "integration": {
            "kind": integration.kind,
            "plugin_enabled": integration.plugin_enabled,
            "defaults_only": integration.plugin_defaults_only,
            "active": integration.active,
            "syncing": integration.syncing,
            "days_ahead": integration.days_ahead,
        },
        "personal_rules_allowed": personal_rules_allowed(integration),
        "reasons": [
            {"code": reason.code, "label": reason.label, "diversion": reason.diversion_allowed}
            for reason in _reasons(integration)
        ],
        "services": {
            "diversion": subscription.has_diversion,
            "open_diversion": subscription.has_open_diversion,
        },
        "addin_id": settings.MS_ADDIN_ID,
    }


# ----- POST /addin/api/preview/


def _moment(body: dict, key: str) -> datetime:
    try:
        value = datetime.fromisoformat(str(body.get(key) or ""))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise Invalid(
            _("“%(field)s” must be a date and time with its UTC offset.") % {"field": key}
        )
    return value


def booking_from(body: dict) -> CalendarItem:
    """The open appointment as the sync would read it (the pane knows its times, show-as,
    and the choice it is about to save or has saved)."""
    start, end = _moment(body, "start"), _moment(body, "end")
    if end <= start:
        raise Invalid(_("The booking must end after it starts."))
    show_as = SHOW_AS.get(str(body.get("show_as") or "busy").lower())
    if show_as is None:
        raise Invalid(_("Unknown show-as value."))
    raw_choice = body.get("choice")
    choice = choice_from_dict(raw_choice) if raw_choice is not None else None
    if raw_choice is not None and choice is None:
        raise Invalid(_("Choose absence info, diversion or do not sync."))
    categories = body.get("categories") or ()
    subject = body.get("subject")
    return CalendarItem(
        provider_item_id=PREVIEW_ITEM_ID,
        series_master_id=None,
        kind=ItemKind.SINGLE,
        start=start,
        end=end,
        all_day=bool(body.get("all_day", False)),
        show_as=show_as,
        sensitivity=Sensitivity.NORMAL,
        cancelled=False,
        my_response=Response.ORGANIZER,
        categories=tuple(c for c in categories if isinstance(c, str)),
        subject=subject if isinstance(subject, str) and subject else None,
        addin_choice=choice,
    )


@addin_api("POST")
def preview_booking(request, user, body):
    integration = user.integration
    item = booking_from(body)
    now = timezone.now()
    notes = []
    if not integration.plugin_enabled:
        notes.append(_("Your administrator has turned the Outlook plugin off: the rules decide."))
    if item.end <= now:
        return {
            "text": _("This booking is over: nothing is synced."),
            "entries": [],
            "synced": False,
            "plugin_enabled": integration.plugin_enabled,
            "notes": notes,
        }
    window_end = now + timedelta(days=integration.days_ahead)
    later = item.start >= window_end
    rules = list(integration.rules.select_related("reason").order_by("position", "id"))
    engine_settings = planning.settings_for(user, rules_override=rules)
    # A booking beyond the window is planned as it will be once it is inside.
    plan = planning.plan_with(engine_settings, [item], item.start if later else now)
    reasons = {reason.code: reason.label for reason in _reasons(integration)}
    entries = [preview.entry(planned, rules, reasons) for planned in plan.absences]
    if later:
        notes.append(
            ngettext(
                "Synced to One X when the booking is within %(days)d day.",
                "Synced to One X when the booking is within %(days)d days.",
                integration.days_ahead,
            )
            % {"days": integration.days_ahead}
        )
    if entries and not integration.syncing:
        notes.append(_("Syncing is paused for your organisation: One X is not changed now."))
    return {
        "text": (
            preview.one_line(entries[0])
            if entries
            else preview.skip_text(item, engine_settings, rules)
        ),
        "entries": [_entry_json(entry) for entry in entries],
        "synced": bool(entries) and not later and integration.syncing,
        "plugin_enabled": integration.plugin_enabled,
        "notes": notes,
    }


def _entry_json(entry: dict) -> dict:
    return {
        "forwarding": "divert" if entry["divert"] else "info",
        "open_diversion": entry["open_diversion"],
        "kind": preview.kind_text(entry),
        "reason": entry["reason"],
        "back": entry["back"],
        "return_at": timezone.localtime(entry["return_at"]).isoformat(),
        "decided_by": entry["decided_by"],
        "why": entry["why"],
    }


# ----- GET, PUT /addin/api/personal-rules/


@addin_api("GET", "PUT")
def personal_rules_view(request, user, body):
    integration = user.integration
    allowed = personal_rules_allowed(integration)
    if request.method == "PUT":
        if not allowed:
            raise PersonalRulesNotAllowed()
        codes = set(_reasons(integration).values_list("code", flat=True))
        try:
            stored = personal_rules.clean(body.get("rules"), codes)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        save_personal_rules(user, stored)
    return {
        "allowed": allowed,
        "rules": personal_rules.to_json(personal_rules.parse(user.personal_profile)),
    }


def save_personal_rules(user, stored: dict) -> bool:
    """Store the user's own rules; a change is logged and resyncs their mailbox."""
    before = personal_rules.to_json(personal_rules.parse(user.personal_profile))
    after = personal_rules.to_json(personal_rules.parse(stored))
    with transaction.atomic():
        user.personal_profile = stored
        user.save(update_fields=["personal_profile"])
        if before == after:
            return False
        Activity.record(
            user.integration,
            "personal_rules_changed",
            # Outlook as the actor, without the address: the user's email is in the entry only
            # as what it concerns, which removing the user clears (removal.remove_synced_user).
            actor=actors.OUTLOOK,
            synced_user=user,
            subject_label=user.email,
            params=after,
        )
        tasks.request_sync(user.pk)
    return True


# ----- POST /addin/api/link/ (Exchange On Prem)


def _link(request, token, body):
    user = identity.link(token, body.get("mailbox"), body.get("item_id"))
    return {"linked": True, "user": {"email": user.email}}


link = addin_api("POST")(_link, authenticate=False)
