"""A user's own rules from the Outlook add-in ("Mina regler"): what Busy and Out of office
become for them.

Stored on `SyncedUser.personal_profile` as {"busy": choice, "oof": choice}, either key optional,
each choice in the add-in's format (`rules.choice_from_dict`). An older flat profile (one choice)
speaks for both.
"""

from collections.abc import Mapping

from django.utils.translation import gettext as _

from .items import AddinChoice, ShowAs
from .rules import Action, choice_from_dict

# The show-as values a personal rule can speak for, with their keys in the stored JSON.
KEYS = {ShowAs.BUSY: "busy", ShowAs.OOF: "oof"}


def parse(data) -> dict[ShowAs, AddinChoice]:
    """The stored profile as engine input, leniently (anything unusable is no rule)."""
    if not isinstance(data, Mapping) or not data:
        return {}
    if "forwarding" in data:
        choice = choice_from_dict(data)
        return dict.fromkeys(KEYS, choice) if choice else {}
    parsed = {show_as: choice_from_dict(data.get(key)) for show_as, key in KEYS.items()}
    return {show_as: choice for show_as, choice in parsed.items() if choice is not None}


def choice_json(choice: AddinChoice | None) -> dict | None:
    if choice is None:
        return None
    return {
        "forwarding": choice.forwarding,
        "reason": choice.reason_code,
        "open_diversion": choice.open_diversion,
    }


def to_json(mapping: Mapping[ShowAs, AddinChoice]) -> dict:
    """{"busy": choice | None, "oof": choice | None}: what the add-in's API answers."""
    return {key: choice_json(mapping.get(show_as)) for show_as, key in KEYS.items()}


def clean(data, reason_codes) -> dict:
    """The add-in's submitted rules, checked strictly, as they are stored.

    Raises ValueError with a translated message for anything the user must correct.
    """
    if not isinstance(data, Mapping):
        raise ValueError(_("The rules must be an object with “busy” and “oof”."))
    unknown = set(data) - set(KEYS.values())
    if unknown:
        raise ValueError(_("Unknown rule: %(names)s.") % {"names": ", ".join(sorted(unknown))})
    stored = {}
    for key in KEYS.values():
        raw = data.get(key)
        if raw is None:
            continue
        choice = choice_from_dict(raw)
        if choice is None:
            raise ValueError(_("Choose absence info, diversion or do not sync."))
        if choice.forwarding != Action.SKIP:
            if not choice.reason_code:
                raise ValueError(_("Choose a reason."))
            if choice.reason_code not in reason_codes:
                raise ValueError(
                    _("“%(reason)s” is not one of your company’s One X reasons.")
                    % {"reason": choice.reason_code}
                )
        stored[key] = choice_json(choice)
    return stored
