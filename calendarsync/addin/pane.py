"""The add-in's task pane: one page Outlook opens beside an appointment the user organises.

The page itself holds nothing personal: it learns who the user is only by asking the add-in's
API with the token Outlook gives it (calendarsync/addin/identity.py), so it is cacheable and
needs no session. Outlook frames it (on the web, from Microsoft's or the customer's own host).
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

LANGUAGES = {"sv", "en"}


def _origin(url: str) -> str:
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}"


def strings() -> dict:
    """The pane's words, translated here so the page's script holds no language of its own."""
    return {
        "loading": _("Reading the booking…"),
        "signing_in": _("Checking who you are…"),
        "linking": _("Linking Outlook to your phone once…"),
        "not_linked": _(
            "Outlook could not be linked to your phone. Save the booking and try again."
        ),
        "unknown_user": _(
            "Your mailbox is not synced with One X. Ask your administrator to add you."
        ),
        "no_token": _("Outlook did not say who you are. Close the pane and open it again."),
        "failed": _("Something went wrong. Try again in a moment."),
        "plugin_off": _(
            "Your administrator has turned the Outlook add-in off: your choices are not "
            "saved, and the company's rules decide."
        ),
        "paused": _("Syncing is paused for your company: nothing reaches One X right now."),
        "saved": _("Saved. One X is updated when the booking is saved in Outlook."),
        "rules_saved": _("Your rules are saved. Your bookings are synced again."),
        "preview_prefix": _("In One X:"),
        "admin_rules_apply": _(
            "Your administrator's rules apply: personal rules are not available."
        ),
        "as_rules": _("As the rules say"),
        "as_admin": _("As the administrator decided"),
        "info": _("Absence info"),
        "divert": _("Diversion"),
        "open_divert": _("Open diversion"),
        "skip": _("Do not sync"),
    }


@require_GET
@xframe_options_exempt
def taskpane(request):
    language = request.GET.get("lang", "")[:2].lower()
    language = language if language in LANGUAGES else settings.LANGUAGE_CODE[:2]
    with translation.override(language):
        config = {
            "lang": language,
            "api": {
                "context": reverse("addin:api_context"),
                "preview": reverse("addin:api_preview"),
                "personal_rules": reverse("addin:api_personal_rules"),
                "link": reverse("addin:api_link"),
            },
            "msal": {
                "clientId": settings.MS_CLIENT_ID,
                "authority": settings.MS_ADDIN_AUTHORITY,
                "scopes": [settings.MS_ADDIN_API_SCOPE],
            },
            "strings": strings(),
        }
        response = render(
            request,
            "addin/taskpane.html",
            {"config": config, "office_js_url": settings.OFFICE_JS_URL, "language": language},
        )
    # Office.js comes from Microsoft's CDN (Outlook requires it); Outlook frames the pane from
    # its own host, which for Exchange Server is the customer's.
    response._csp_replace = {
        "script-src": ["'self'", _origin(settings.OFFICE_JS_URL)],
        "connect-src": ["'self'", *settings.ADDIN_CONNECT_SRC],
        "frame-ancestors": ["'self'", "https:"],
    }
    return response
