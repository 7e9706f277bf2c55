"""The Outlook add-in's per-booking choice as both providers read it.

Office stores all of an add-in's custom properties on the item as one JSON string, in the
named property `cecp-<add-in id>` of the PublicStrings property set ([MS-OXCEXT]).
"""

import json
import logging

from django.conf import settings

from calendarsync.items import AddinChoice
from calendarsync.rules import choice_from_dict

logger = logging.getLogger(__name__)

# The PublicStrings property set where Office stores an add-in's custom properties.
ADDIN_PROPERTY_SET = "{00020329-0000-0000-C000-000000000046}"


def property_name(addin_id: str) -> str:
    return f"cecp-{addin_id}"


def taskpane_url() -> str:
    """The task pane's address (the manifest's SourceLocation, without ?lang=): what an
    Exchange identity token names as its audience."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + "/addin/taskpane/"


def parse_addin_choice(raw) -> AddinChoice | None:
    """Parse the add-in's custom-properties JSON leniently (format: `rules.choice_from_dict`)."""
    if raw in (None, ""):
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        logger.warning("Ignoring an add-in property that is not JSON")
        return None
    if not isinstance(data, dict):
        logger.warning("Ignoring an add-in property that is not a JSON object")
        return None
    choice = choice_from_dict(data)
    if choice is None and data.get("forwarding"):
        logger.warning("Ignoring an add-in property with an unknown forwarding value")
    return choice


class TokenRefused(ValueError):
    """A token the Outlook add-in sent that does not prove who the user is (answered 401).
    The message is for the log, never shown to the user."""


class VerificationUnavailable(Exception):
    """The keys (or Exchange's metadata) that would prove a token cannot be read now: try
    again later (answered 503)."""
