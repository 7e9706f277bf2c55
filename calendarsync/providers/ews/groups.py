"""Katalog Synk for Exchange On Prem: distribution groups found with ResolveNames and read with
ExpandDL.

Both are directory calls made as the service account itself (no impersonation, no mailbox
opened, no item read). ResolveNames searches only Active Directory, never anyone's contacts
folder. ExpandDL is not recursive: nested groups are expanded here, each once (groups may
contain each other). EWS has no delta, so every read is whole; a group that cannot be read
whole raises, since a short answer would look like people left.
"""

from exchangelib import errors as ews_errors
from exchangelib.properties import DLMailbox
from exchangelib.protocol import Protocol
from exchangelib.services import ExpandDL, ResolveNames

from ..base import Group, MemberRead, ProviderError
from . import client

GROUP_TYPES = {"PublicDL"}  # PrivateDL is a contact group in one mailbox, not the directory's
MEMBER_TYPE = "Mailbox"  # contacts, one-offs, public folders and the like are not users


class WholeExpandDL(ExpandDL):
    """ExpandDL that notes a cut answer (IncludesLastItemInRange false)."""

    truncated = False

    def _get_element_container(self, message, name=None):
        container = super()._get_element_container(message=message, name=name)
        if not isinstance(container, Exception):
            last = (container.get("IncludesLastItemInRange") or "true").lower()
            self.truncated = self.truncated or last not in ("true", "1")
        return container


def _address(value) -> str:
    return (value or "").strip().lower()


class EwsGroupDirectory:
    def __init__(self, integration):
        self.integration = integration

    def _protocol(self) -> Protocol:
        protocol = Protocol(config=client.configuration(self.integration))
        # exchangelib's directory services need the version known before their first call
        # (probed once per protocol, or the build a connection test recorded).
        protocol.version  # noqa: B018
        return protocol

    def find_groups(self, text: str) -> list[Group]:
        text = (text or "").strip()
        if not text:
            return []
        try:
            found = list(
                ResolveNames(protocol=self._protocol()).call(
                    unresolved_entries=[text],
                    return_full_contact_data=False,
                    search_scope="ActiveDirectory",
                )
            )
        except Exception as exc:  # noqa: BLE001 - classified (an unknown one is raised as is)
            raise client.classify(exc) from exc
        groups: dict[str, Group] = {}
        for mailbox in found:
            if isinstance(mailbox, ews_errors.ErrorNameResolutionNoResults):
                continue
            if isinstance(mailbox, Exception):
                raise client.classify(mailbox)
            address = _address(mailbox.email_address)
            if mailbox.mailbox_type in GROUP_TYPES and address:
                groups.setdefault(address, Group(provider_id=address, name=mailbox.name or address))
        return sorted(groups.values(), key=lambda group: (group.name.lower(), group.provider_id))

    def read_members(
        self, provider_id: str, known: dict[str, tuple[str, str]], cursor: str
    ) -> MemberRead:
        root = _address(provider_id)
        try:
            protocol = self._protocol()
        except Exception as exc:  # noqa: BLE001 - classified (an unknown one is raised as is)
            raise client.classify(exc) from exc
        members: dict[str, tuple[str, str]] = {}
        seen: set[str] = set()
        pending = [root]
        while pending:
            group = pending.pop()
            if group in seen:
                continue
            seen.add(group)
            for member in self._expand(protocol, group, nested=group != root):
                address = _address(member.email_address)
                if not address:
                    continue
                if member.mailbox_type == MEMBER_TYPE:
                    members[address] = (address, "")  # EWS knows no UPN: the address is the id
                elif member.mailbox_type in GROUP_TYPES:
                    pending.append(address)
        return MemberRead(members=members, cursor="", full=True)

    def _expand(self, protocol, address: str, *, nested: bool) -> list:
        service = WholeExpandDL(protocol=protocol)
        try:
            found = list(
                service.call(
                    distribution_list=DLMailbox(email_address=address, mailbox_type="PublicDL")
                )
            )
        except ews_errors.ErrorNameResolutionNoResults as exc:
            if nested:  # it left its parent while we read: the next run sees the new state
                raise ProviderError(
                    "a nested group vanished while it was read", code="group_changed"
                ) from exc
            raise ProviderError("the group no longer exists", permanent=True,
                                code="group_not_found") from exc  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - classified (an unknown one is raised as is)
            raise client.classify(exc) from exc
        for member in found:
            if isinstance(member, Exception):
                raise client.classify(member)
        if service.truncated:
            raise ProviderError(
                "Exchange answered only part of the group's members", code="group_truncated"
            )
        return found


def for_integration(integration) -> EwsGroupDirectory:
    return EwsGroupDirectory(integration)
