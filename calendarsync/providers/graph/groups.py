"""Katalog Synk for Exchange Online: find Entra ID groups and read their members (Graph v1.0).

Every request names its fields: groups by id and displayName, people by id, mail and
userPrincipalName; nothing else about the groups or the people is asked for. The app
permission is GroupMember.Read.All, optional: without it (403 Authorization_RequestDenied)
group reads fail with code "group_permission_missing" and calendar syncing carries on.

A first read is whole: `transitiveMembers/microsoft.graph.user` (users only, nested groups'
people included), 999 a page. Its delta link is taken *before* that read
(`/groups/delta?$filter=id eq '…'&$deltatoken=latest`), so a change made during the read shows
again in the next round (replaying an add or a removal is harmless), never lost.

Later reads follow the delta link: `members@delta` lists the group's direct member changes,
removals with `@removed`. Added users' mail and UPN come from the group's direct member list
(`members/microsoft.graph.user`, paged until all are found): `/users/{id}` would need
User.Read.All, which the app does not ask for. A round of removals only is one request.

Nested groups: delta reports direct members only, so a change inside a nested group would be
missed. A group with nested groups therefore keeps no cursor and is read whole every time
(one `/members/microsoft.graph.group?$top=1` request tells); a delta entry for a group (one
added or removed) turns the read into a whole one too. A stale token (410 resyncRequired)
reads whole again. A group that is gone raises ProviderError(code="group_not_found"): empty
members would look like everyone left.
"""

import logging
import re

from ..base import Group, MemberRead, ProviderError
from .client import GraphClient

logger = logging.getLogger(__name__)

MEMBERS_PAGE = 999  # the directory's largest page
FOUND_LIMIT = 25
USER_FIELDS = "id,mail,userPrincipalName"
USER_TYPE = "#microsoft.graph.user"
EVENTUAL = {"ConsistencyLevel": "eventual"}
# Only groups that hold people in a sensible way: security groups, mail-enabled ones
# (distribution lists, Microsoft 365 groups).
FOR_PEOPLE = "(securityEnabled eq true or mailEnabled eq true)"


class _Resync(ProviderError):
    """Graph forgot the delta token (410 resyncRequired): read the group whole."""


def group_errors(status: int, body) -> ProviderError | None:
    """A group call's failures that mean something narrower than for calendars."""
    code = str(((body or {}).get("error") or {}).get("code", "")) if isinstance(body, dict) else ""
    if status == 403 and code == "Authorization_RequestDenied":
        # Not PermissionsRemoved: a missing optional permission must not stop calendar syncing.
        return ProviderError(
            "Graph denied reading groups: the app lacks the GroupMember.Read.All permission",
            permanent=True,
            code="group_permission_missing",
        )
    if status == 404:
        return ProviderError("group not found", permanent=True, code="group_not_found")
    if status == 410:
        return _Resync(f"delta token expired ({code or 410})", code=code or "resyncRequired")
    return None


def for_integration(integration) -> "GraphGroups":
    return GraphGroups(GraphClient(integration.tenant_id))


def _is_plain(text: str) -> bool:
    """Text `$search` takes as one term: no quote or backslash (they end or escape the
    quoted term) and no AND/OR/NOT (Graph reads them as operators)."""
    return not re.search(r'["\\]|\b(AND|OR|NOT)\b', text)


class GraphGroups:
    def __init__(self, client: GraphClient):
        self.client = client

    def _get(self, path: str, params=None, headers=None) -> dict:
        return self.client.request("GET", path, params=params, headers=headers, errors=group_errors)

    def _pages(self, path: str, params: dict):
        """Every item of a paged listing."""
        body = self._get(path, params)
        while True:
            yield from body.get("value", [])
            if "@odata.nextLink" not in body:
                return
            body = self._get(body["@odata.nextLink"])

    # ----- finding groups

    def find_groups(self, text: str) -> list[Group]:
        text = " ".join(text.split())
        if not text:
            return []
        params = {"$select": "id,displayName", "$top": str(FOUND_LIMIT), "$count": "true"}
        if _is_plain(text):
            # The directory's search index matches words from their start ("norr" finds
            # "Säljare Norr").
            params |= {"$search": f'"displayName:{text}"', "$filter": FOR_PEOPLE}
        else:
            # An OData string literal doubles its single quotes; a double quote is plain there.
            literal = text.replace("'", "''")
            params["$filter"] = f"startswith(displayName,'{literal}') and {FOR_PEOPLE}"
        body = self._get("/groups", params, headers=EVENTUAL)
        found = [Group(provider_id=g["id"], name=g.get("displayName") or "") for g in body["value"]]
        return sorted(found, key=lambda g: g.name.lower())[:FOUND_LIMIT]

    # ----- reading members

    def read_members(
        self, provider_id: str, known: dict[str, tuple[str, str]], cursor: str
    ) -> MemberRead:
        if cursor:
            try:
                changed = self._changes(provider_id, known, cursor)
            except _Resync:
                logger.info("Delta token of group %s expired; reading it whole", provider_id)
            else:
                if changed is not None:
                    return changed
        return self._whole(provider_id)

    def _delta_params(self, provider_id: str) -> dict:
        return {"$filter": f"id eq '{provider_id}'", "$select": "displayName,members"}

    def _whole(self, provider_id: str) -> MemberRead:
        # The delta link first: what changes during the read comes again in the next round.
        latest = self._get(
            "/groups/delta", self._delta_params(provider_id) | {"$deltatoken": "latest"}
        )
        members = {
            user["id"]: (user.get("mail") or "", user.get("userPrincipalName") or "")
            for user in self._pages(
                f"/groups/{provider_id}/transitiveMembers/microsoft.graph.user",
                {"$select": USER_FIELDS, "$top": str(MEMBERS_PAGE)},
            )
        }
        nested = self._get(
            f"/groups/{provider_id}/members/microsoft.graph.group", {"$select": "id", "$top": "1"}
        )["value"]
        cursor = "" if nested else latest.get("@odata.deltaLink", "")
        return MemberRead(members=members, cursor=cursor, full=True)

    def _changes(self, provider_id, known, cursor) -> MemberRead | None:
        """The members after the delta round from `cursor`; None when only a whole read can
        tell (a nested group came or went)."""
        added, removed = set(), set()
        body = self._get(cursor)
        while True:
            for item in body.get("value", []):
                if item.get("id", "").lower() != provider_id.lower():
                    continue
                if "@removed" in item:
                    raise ProviderError("group deleted", permanent=True, code="group_not_found")
                for member in item.get("members@delta", []):
                    if member.get("@odata.type", USER_TYPE) != USER_TYPE:
                        return None
                    gone = "@removed" in member
                    (removed if gone else added).add(member["id"])
                    (added if gone else removed).discard(member["id"])
            if "@odata.nextLink" not in body:
                break
            body = self._get(body["@odata.nextLink"])
        members = {key: value for key, value in known.items() if key not in removed}
        members |= self._joined(provider_id, added - set(members))
        return MemberRead(members=members, cursor=body.get("@odata.deltaLink", ""), full=False)

    def _joined(self, provider_id: str, ids: set[str]) -> dict[str, tuple[str, str]]:
        """Mail and UPN of the users that joined, from the group's own member list: reading
        /users/{id} would need User.Read.All, more than GroupMember.Read.All grants. The
        pages stop as soon as every one is found; one that left again is not there."""
        found: dict[str, tuple[str, str]] = {}
        if not ids:
            return found
        for user in self._pages(
            f"/groups/{provider_id}/members/microsoft.graph.user",
            {"$select": USER_FIELDS, "$top": str(MEMBERS_PAGE)},
        ):
            if user["id"] in ids:
                found[user["id"]] = (user.get("mail") or "", user.get("userPrincipalName") or "")
                if len(found) == len(ids):
                    break
        return found
