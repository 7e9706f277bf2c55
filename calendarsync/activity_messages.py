"""The activity log's messages: a stable id → an English msgid with %(name)s placeholders.

An Activity stores only the id and its parameters; the text is translated when it is shown,
in the viewer's language (`render`). Ids are never renamed: old rows keep pointing at them.
Rows from before the ids existed have the id "legacy" and their old text as parameter.
"""

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext, ngettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

LEGACY = "legacy"


class Kind(models.TextChoices):
    """What an entry is about, for the log's filter."""

    CONNECTION = "connection", _("Connection")
    SETTINGS = "settings", _("Settings")
    RULES = "rules", _("Sync rules")
    USERS = "users", _("Users")
    SYNC = "sync", _("Sync")


@dataclass(frozen=True)
class Message:
    kind: Kind
    # A lazy msgid formatted with the params, or a function of the params for texts built
    # from parts.
    text: object

    def render(self, params: dict) -> str:
        if callable(self.text):
            return self.text(params)
        # Lazy texts format themselves (ngettext_lazy picks its plural from the params).
        return str(self.text % params)


def _sync_summary(params: dict) -> str:
    parts = []
    if written := params.get("written"):
        parts.append(
            ngettext("%(n)d absence written", "%(n)d absences written", written) % {"n": written}
        )
    if deleted := params.get("deleted"):
        parts.append(
            ngettext("%(n)d absence removed", "%(n)d absences removed", deleted) % {"n": deleted}
        )
    return "; ".join(parts)


def _synced(params: dict) -> str:
    return _sync_summary(params) or gettext("Up to date with the calendar.")


def _sync_failed(params: dict) -> str:
    return "; ".join(part for part in (params.get("error", ""), _sync_summary(params)) if part)


def _onex_audited(params: dict) -> str:
    counts = {
        name: int(params.get(name) or 0)
        for name in (
            "new",
            "missing",
            "stale",
            "orphaned",
            "bookings_corrected",
            "failed",
            "skipped",
        )
    }
    if not any(counts[name] for name in ("missing", "stale", "orphaned", "bookings_corrected")):
        parts = [gettext("Daily check against One X: everything matched.")]
    else:
        parts = [
            gettext(
                "Daily check against One X, differences repaired: missing in One X "
                "%(missing)d, different in One X %(stale)d, left over in One X %(orphaned)d, "
                "bookings corrected %(bookings_corrected)d."
            )
            % counts
        ]
    if counts["new"]:
        parts.append(gettext("New absences written: %(new)d.") % counts)
    if counts["failed"]:
        parts.append(gettext("Not repaired yet (the next sync tries again): %(failed)d.") % counts)
    if counts["skipped"]:
        parts.append(
            gettext("Users not checked (busy or calendar unreadable): %(skipped)d.") % counts
        )
    return " ".join(parts)


def _as_recorded(params: dict) -> str:
    # Stored as it was (a legacy row, or an error text a provider produced).
    return str(params.get("text") or params.get("error") or "")


def _personal_choice(choice) -> str:
    if not isinstance(choice, dict):
        return gettext("the administrator's rules")
    forwarding = choice.get("forwarding")
    if forwarding == "skip":
        return gettext("Do not sync")
    if forwarding == "divert":
        kind = gettext("Open diversion") if choice.get("open_diversion") else gettext("Diversion")
    else:
        kind = gettext("Absence info")
    return f"{kind} ({choice.get('reason') or '?'})"


def _personal_rules(params: dict) -> str:
    # The rules as stored (reason codes): the log needs no lookup to show them.
    return gettext(
        "The user changed their own rules in Outlook: Busy → %(busy)s; Out of office → %(oof)s."
    ) % {
        "busy": _personal_choice(params.get("busy")),
        "oof": _personal_choice(params.get("oof")),
    }


GROUP_ERRORS = {
    "group_not_found": _(
        "A chosen group no longer exists. Remove it from the list, or choose another group."
    ),
    "group_permission_missing": _(
        "Microsoft 365 has not granted the permission to read group members "
        "(GroupMember.Read.All). Give consent again on the Connection tab."
    ),
    "group_truncated": _(
        "Exchange answered with only part of a group's members, so nothing was changed. "
        "Choose smaller groups, or raise the limit on the Exchange server."
    ),
    "group_changed": _("A group changed while it was read. The next run reads it again."),
}


def group_error_text(code: str) -> str:
    """Why a membership run failed, in words an admin can act on."""
    if code in GROUP_ERRORS:
        return str(GROUP_ERRORS[code])
    return gettext(
        "The groups could not be read (%(code)s). Nothing was changed; the next run tries again."
    ) % {"code": code}


def _group_failed(params: dict) -> str:
    return group_error_text(params.get("code", ""))


def _group_run(params: dict) -> str:
    """Katalog Synk's run, in one line: what it changed and what it could not."""
    parts = []
    if added := params.get("added"):
        parts.append(ngettext("%(n)d user added", "%(n)d users added", added) % {"n": added})
    if removed := params.get("removed"):
        parts.append(
            ngettext("%(n)d user removed", "%(n)d users removed", removed) % {"n": removed}
        )
    if held := params.get("held"):
        parts.append(
            ngettext(
                "%(n)d removal waits for an administrator's confirmation",
                "%(n)d removals wait for an administrator's confirmation",
                held,
            )
            % {"n": held}
        )
    if without := params.get("without"):
        parts.append(
            ngettext(
                "%(n)d member without a One X subscription",
                "%(n)d members without a One X subscription",
                without,
            )
            % {"n": without}
        )
    summary = "; ".join(parts) or gettext("no changes")
    return gettext("Synced users from the groups: %(summary)s.") % {"summary": summary}


def _user_source(params: dict) -> str:
    labels = {
        "manual": gettext("Users are added by hand."),
        "groups": gettext("Users are synced from groups (users added by hand stay)."),
        "groups_only": gettext("Users are synced from groups only."),
    }
    return labels.get(params.get("source", ""), "")


MESSAGES: dict[str, Message] = {
    LEGACY: Message(Kind.SYNC, _as_recorded),
    # ----- connection and the integration's life
    "integration_added": Message(Kind.CONNECTION, _("The integration %(name)s was added.")),
    "connected": Message(Kind.CONNECTION, _("The connection was verified; syncing is on.")),
    "consent_granted": Message(
        Kind.CONNECTION, _("An administrator gave consent in Microsoft 365; syncing is on.")
    ),
    "sandbox_connected": Message(
        Kind.CONNECTION, _("Connected to the Microsoft 365 sandbox tenant.")
    ),
    "consent_failed": Message(
        Kind.CONNECTION, _("Consent in Microsoft 365 did not succeed (%(code)s): %(detail)s")
    ),
    "consent_revoked": Message(
        Kind.CONNECTION,
        _(
            "The organisation no longer accepts the app (%(code)s). Syncing is paused until an "
            "administrator gives consent again."
        ),
    ),
    "credentials_rejected": Message(
        Kind.CONNECTION,
        _(
            "The server rejected the app's credentials (%(code)s). Syncing is paused; contact "
            "Telenor support, or for Exchange On Prem enter the service account's password again."
        ),
    ),
    "permissions_removed": Message(
        Kind.CONNECTION,
        _(
            "The app may no longer read calendars (%(code)s). Syncing is paused until an "
            "administrator gives consent again (or restores the service account's rights)."
        ),
    ),
    "server_untrusted": Message(
        Kind.CONNECTION,
        _(
            "The Exchange server's certificate is not trusted (%(code)s). Syncing is paused "
            "until the certificate is fixed and the connection tested again."
        ),
    ),
    "connection_changed": Message(Kind.CONNECTION, _("Changed the Exchange On Prem connection.")),
    "removing": Message(Kind.CONNECTION, _("The integration is being removed.")),
    "integration_removed": Message(
        Kind.CONNECTION,
        _("The integration %(name)s was removed: %(users)d users, %(entries)d One X entries."),
    ),
    # ----- Inställningar
    "settings_changed": Message(Kind.SETTINGS, _("Changed the settings.")),
    "paused": Message(
        Kind.SETTINGS,
        _(
            "The integration was switched off: its One X entries and change notifications "
            "are being removed."
        ),
    ),
    "resumed": Message(
        Kind.SETTINGS, _("The integration was switched on: every user is being synced again.")
    ),
    # ----- Synkregler
    "rule_added": Message(Kind.RULES, _("Added a sync rule.")),
    "rule_changed": Message(Kind.RULES, _("Changed a sync rule.")),
    "rule_removed": Message(Kind.RULES, _("Removed a sync rule.")),
    "rule_moved": Message(Kind.RULES, _("Moved a sync rule.")),
    "rule_restored": Message(Kind.RULES, _("Brought back a deleted sync rule.")),
    "rules_from_template": Message(
        Kind.RULES, _("Started from the default template: its rules can now be edited.")
    ),
    # ----- Användare
    "user_added": Message(Kind.USERS, _("Added a user.")),
    "users_imported": Message(
        Kind.USERS,
        _("Imported users from a file: %(added)d added, %(failed)d not added."),
    ),
    "user_removed": Message(
        Kind.USERS,
        ngettext_lazy(
            "A user was removed; %(n)d One X entry deleted.",
            "A user was removed; %(n)d One X entries deleted.",
            "n",
        ),
    ),
    "subscription_removed": Message(
        Kind.USERS,
        _(
            "This user's One X subscription no longer exists in One X, so nothing is synced for "
            "them. Remove the user, or ask Telenor to restore the subscription."
        ),
    ),
    "personal_rules_changed": Message(Kind.USERS, _personal_rules),
    "group_members_synced": Message(Kind.USERS, _group_run),
    "group_members_held": Message(Kind.USERS, _group_run),
    "group_members_failed": Message(Kind.USERS, _group_failed),
    "group_removals_confirmed": Message(
        Kind.USERS,
        ngettext_lazy(
            "Confirmed the removal of %(n)d user who left the groups.",
            "Confirmed the removal of %(n)d users who left the groups.",
            "n",
        ),
    ),
    "user_source_changed": Message(Kind.USERS, _user_source),
    "group_followed": Message(Kind.USERS, _("Users are synced from the group %(name)s.")),
    "group_unfollowed": Message(Kind.USERS, _("The group %(name)s is no longer followed.")),
    "subscription_restored": Message(
        Kind.USERS, _("The user's One X subscription is back; syncing resumes.")
    ),
    # ----- syncing
    "synced": Message(Kind.SYNC, _synced),
    "sync_failed": Message(Kind.SYNC, _sync_failed),
    "integration_error": Message(Kind.SYNC, _as_recorded),
    "recovered": Message(Kind.SYNC, _("Syncing works again.")),
    "onex_audited": Message(Kind.SYNC, _onex_audited),
}


def kind_of(message_id: str) -> Kind:
    return MESSAGES[message_id].kind


def ids_of_kind(kind: str) -> list[str]:
    return [message_id for message_id, message in MESSAGES.items() if message.kind == kind]


def render(message_id: str, params: dict | None) -> str:
    """The message in the active language. An unknown id or params that no longer fit the
    text never break the page: the stored text, or the id, is shown instead."""
    params = params or {}
    message = MESSAGES.get(message_id)
    if message is None:
        return _as_recorded(params) or message_id
    try:
        return message.render(params)
    except (KeyError, TypeError, ValueError):
        return _as_recorded(params) or message_id
