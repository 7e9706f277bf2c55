"""The Outlook add-in's XML (add-in only) manifest, made with this deployment's URLs.

Outlook reads the manifest once, when an administrator deploys it; every URL in it is absolute,
under PUBLIC_BASE_URL (https in production: mss/settings.py refuses anything else). The
manifest carries both languages itself (Swedish by default, English as the en-US override),
so its words live here rather than in the request's language catalogue.

Nested app authentication needs nothing in an XML manifest (no WebApplicationInfo): the pane
asks MSAL.js for a token at run time (Microsoft: "Enable single sign-on in an Office Add-in with
nested app authentication").
"""

from urllib.parse import urljoin

from django.conf import settings
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse

# Bump when the manifest changes: Outlook updates a deployed add-in only for a new version.
VERSION = "1.0.0.0"
PROVIDER = "Telenor"
DOWNLOAD_FILENAME = "mss-kalenderkoppling-manifest.xml"
# IconUrl and HighResolutionIconUrl, then the ribbon button's (Microsoft's required command
# icon sizes for Outlook).
ICON_SIZE, HIGH_RESOLUTION_ICON_SIZE = 64, 128
BUTTON_ICON_SIZES = (16, 32, 80)

# (Swedish, English) for each text the manifest shows. Label resources are at most 32
# characters, ShortStrings 125, LongStrings 250 (the schema's limits).
DISPLAY_NAME = ("MSS Kalenderkoppling", "MSS Calendar Sync")
DESCRIPTION = (
    "Välj själv vad en bokning blir i Telenor One X: frånvaro eller hänvisning, med orsak och "
    "åter-tid.",
    "Choose what a booking becomes in Telenor One X: absence info or a diversion, with a "
    "reason and a return time.",
)
GROUP_LABEL = ("Telenor One X", "Telenor One X")
BUTTON_LABEL = ("Telefonstatus", "Phone status")
BUTTON_TOOLTIP = (
    "Visa och välj vad bokningen blir i One X: frånvaro, hänvisning eller ingenting.",
    "See and choose what this booking becomes in One X: absence info, a diversion or nothing.",
)


def public_url(path: str) -> str:
    """An absolute URL of this service (a static URL that is absolute already stays so)."""
    return urljoin(settings.PUBLIC_BASE_URL.rstrip("/") + "/", path)


def taskpane_url() -> str:
    """The pane's URL without a query: also the Exchange identity token's audience."""
    return public_url(reverse("addin:taskpane"))


def manifest_url() -> str:
    return public_url(reverse("addin:manifest"))


def icon_url(size: int) -> str:
    return public_url(static(f"addin/icon-{size}.png"))


def _text(pair) -> dict:
    swedish, english = pair
    return {"sv": swedish, "en": english}


def render_manifest() -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    pane = taskpane_url()
    context = {
        "addin_id": settings.MS_ADDIN_ID,
        "version": VERSION,
        "provider": PROVIDER,
        "display_name": _text(DISPLAY_NAME),
        "description": _text(DESCRIPTION),
        "group_label": _text(GROUP_LABEL),
        "button_label": _text(BUTTON_LABEL),
        "button_tooltip": _text(BUTTON_TOOLTIP),
        "icon_url": icon_url(ICON_SIZE),
        "high_resolution_icon_url": icon_url(HIGH_RESOLUTION_ICON_SIZE),
        "button_icons": [(size, icon_url(size)) for size in BUTTON_ICON_SIZES],
        "support_url": public_url("/"),
        "app_domain": base,
        "pane": {"sv": f"{pane}?lang=sv", "en": f"{pane}?lang=en"},
    }
    return render_to_string("addin/manifest.xml", context)
