"""Entra ID groups as Microsoft Graph v1.0 serves them: list, get, (transitive) members, delta.

A tenant's directory lives in `tenant["directory"]` (so the state file keeps it):
`{"groups": {id: group}, "log": [[seq, op, group id, member id, member type]], "seq": n,
"epoch": str}`. A group keeps its direct members as `{"members": {id: "user" | "group"}}`;
`log` records every membership change (op "added", "removed", "created", "deleted") so a delta
round can say what changed since its token's `seq`. Tokens carry the directory's `epoch`: a new
epoch (`reset_delta`, the sandbox's "make delta tokens stale" control) answers every token
issued before with 410 resyncRequired, as Graph answers a synchronization reset.

What Graph documents and this follows (learn.microsoft.com/graph): directory listings page at
100 by default and 999 at most (`$top`), with `$skiptoken` nextLinks; `$search` only with
`ConsistencyLevel: eventual` (else 400 Request_UnsupportedQuery); `$count=true` without that
header is silently ignored; `/groups/delta` accepts `$select` (with `members` for membership
changes, `members@delta` of direct members, `@removed` for those gone) and a `$filter` of
`id eq '…'` only, at most 50; there is no `/groups/{id}/members/delta` in v1.0. Reading groups
takes GroupMember.Read.All (or a broader role) in the app's consent: without it 403
Authorization_RequestDenied.

Callers hold the sandbox's lock around every function here (requests run in threads).
"""

import base64
import binascii
import bisect
import json
import re
import secrets
import uuid
from urllib.parse import quote, urlencode

from . import odata
from .errors import GraphError

PAGE_DEFAULT = 100
PAGE_MAX = 999
# How many objects (a group, or one entry of its members@delta) one delta page holds: the
# sandbox's choice (Graph's varies); a large group spans pages, its properties repeated on each.
DELTA_PAGE_OBJECTS = 1000
DELTA_FILTER_LIMIT = 50
# Application permissions that let an app read groups and their members.
READ_ROLES = frozenset(
    {
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
GROUP_PROPERTIES = {
    "id",
    "createdDateTime",
    "description",
    "displayName",
    "groupTypes",
    "mail",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "visibility",
}
GROUP_FILTER = odata.Filterable(
    "microsoft.graph.group",
    {
        **{name: "Edm.String" for name in ("id", "displayName", "mail", "mailNickname")},
        "mailEnabled": "Edm.Boolean",
        "securityEnabled": "Edm.Boolean",
    },
    frozenset({"groupTypes", "description"}),
)
SEARCHABLE = {"displayname": "displayName", "description": "description"}
CAST = {"microsoft.graph.user": "user", "microsoft.graph.group": "group"}
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


# ----- state


def directory(tenant: dict) -> dict:
    return tenant.setdefault(
        "directory", {"groups": {}, "log": [], "seq": 0, "epoch": secrets.token_hex(8)}
    )


def _log(d: dict, op: str, group_id: str, member_id: str = "", member_type: str = ""):
    d["seq"] += 1
    d["log"].append([d["seq"], op, group_id, member_id, member_type])


def create_group(
    tenant: dict, display_name: str, *, group_id=None, description=None, created="", members=()
) -> dict:
    """A security group (as Entra's "Security" type); `members`: [(id, "user" | "group")]."""
    d = directory(tenant)
    group_id = group_id or str(uuid.uuid4())
    if group_id in d["groups"]:
        raise GraphError(400, "Request_BadRequest", f"A group with id '{group_id}' exists.")
    nickname = re.sub(r"[^A-Za-z0-9]", "", display_name) or "group"
    d["groups"][group_id] = {
        "id": group_id,
        "createdDateTime": created,
        "description": description,
        "displayName": display_name,
        "groupTypes": [],
        "mail": None,
        "mailEnabled": False,
        "mailNickname": nickname,
        "securityEnabled": True,
        "visibility": None,
        "members": {},
    }
    _log(d, "created", group_id)
    for member_id, member_type in members:
        add_member(tenant, group_id, member_id, member_type)
    return d["groups"][group_id]


def add_member(tenant: dict, group_id: str, member_id: str, member_type: str) -> bool:
    d = directory(tenant)
    group = d["groups"][group_id]
    if member_id == group_id:
        raise GraphError(400, "Request_BadRequest", "A group cannot be a member of itself.")
    if member_id in group["members"]:
        return False
    group["members"][member_id] = member_type
    _log(d, "added", group_id, member_id, member_type)
    return True


def remove_member(tenant: dict, group_id: str, member_id: str) -> bool:
    d = directory(tenant)
    member_type = d["groups"][group_id]["members"].pop(member_id, None)
    if member_type is None:
        return False
    _log(d, "removed", group_id, member_id, member_type)
    return True


def delete_group(tenant: dict, group_id: str) -> bool:
    d = directory(tenant)
    if d["groups"].pop(group_id, None) is None:
        return False
    for parent_id, parent in d["groups"].items():
        if group_id in parent["members"]:
            remove_member(tenant, parent_id, group_id)
    _log(d, "deleted", group_id)
    return True


def reset_delta(tenant: dict):
    """Every delta and skip token issued so far is answered 410 from now on."""
    directory(tenant)["epoch"] = secrets.token_hex(8)


def summary(group: dict) -> dict:
    """A group as the sandbox control shows it: its properties and direct members."""
    return {**public(group), "members": dict(group["members"])}


# ----- Graph


def route(tenant, method, rest, query, headers, base_url, user_properties):
    """`/groups…` below the tenant's token; `rest` is the path after `groups`."""
    if method != "GET":
        raise GraphError(405, "Request_BadRequest", "Method not allowed.")
    check_permission(tenant)
    if not rest:
        return list_groups(tenant, query, headers, base_url)
    if rest in (["delta"], ["microsoft.graph.delta"]):
        return delta(tenant, query, base_url)
    group = _group(tenant, rest[0])
    if len(rest) == 1:
        return get_group(group, query, base_url)
    relation = rest[1]
    if relation in ("members", "transitiveMembers") and len(rest) <= 3:
        cast = rest[2] if len(rest) == 3 else None
        if cast is not None and cast not in CAST:
            raise GraphError(
                400, "Request_BadRequest", f"Resource not found for the segment '{cast}'."
            )
        return list_members(
            tenant, group, relation, cast, query, headers, base_url, user_properties
        )
    raise GraphError(400, "Request_BadRequest", f"Resource not found for the segment '{rest[-1]}'.")


def check_permission(tenant: dict):
    """A tenant whose consent lists app roles (`app_roles`) must have one that reads groups;
    a tenant without the list has consented to all the app asks for."""
    roles = tenant.get("app_roles")
    if roles is not None and not READ_ROLES & set(roles):
        raise GraphError(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )


def _group(tenant, key: str) -> dict:
    if not GUID.fullmatch(key):
        raise GraphError(400, "Request_BadRequest", f"Invalid object identifier '{key}'.")
    group = directory(tenant)["groups"].get(key.lower())
    if group is None:
        raise GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{key}' does not exist or one of its queried reference-property objects "
            "are not present.",
        )
    return group


def public(group: dict, fields=None) -> dict:
    names = GROUP_PROPERTIES if fields is None else fields
    return {name: group.get(name) for name in ["id", *sorted(set(names) - {"id"})]}


def _user(user: dict, fields) -> dict:
    if fields is None:
        return dict(user)
    return {name: user.get(name) for name in ["id", *sorted(set(fields) - {"id"})]}


def eventual(headers: dict) -> bool:
    return headers.get("consistencylevel", "").strip().lower() == "eventual"


def _top(query) -> int:
    top = odata.non_negative(query, "$top", PAGE_DEFAULT)
    if not 1 <= top <= PAGE_MAX:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            f"Invalid page size specified: '{top}'. Must be between 1 and {PAGE_MAX} inclusive.",
        )
    return top


def _encode(state: dict) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> dict | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) else None


def _page_cursor(query) -> dict:
    if "$skiptoken" not in query:
        return {}
    state = _decode(query["$skiptoken"])
    if state is None:
        raise GraphError(
            400,
            "Directory_ExpiredPageToken",
            "The specified page token value has expired and can no longer be included in your "
            "request.",
        )
    return state


def _next_link(base_url, path, query, state) -> str:
    next_query = dict(query, **{"$skiptoken": _encode(state)})
    return f"{base_url}/v1.0/{path}?{urlencode(next_query, quote_via=quote)}"


def _search(query, headers):
    """`$search="displayName:term"` (clauses joined by OR / AND) → predicate, or None."""
    raw = query.get("$search")
    if raw is None:
        return None
    if not eventual(headers):
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special "
            "request header: 'ConsistencyLevel: eventual'",
        )
    parts = re.split(r"\s+(OR|AND)\s+", raw.strip())
    clauses, joins = parts[0::2], parts[1::2]
    tests = []
    for clause in clauses:
        match = re.fullmatch(r'"([A-Za-z]+):([^"]*)"', clause)
        if not match:
            raise GraphError(400, "Request_UnsupportedQuery", f"Invalid $search value: '{raw}'.")
        prop = SEARCHABLE.get(match.group(1).lower())
        if prop is None:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                f"The property '{match.group(1)}' does not support $search.",
            )
        tests.append((prop, match.group(2).strip().lower()))

    def matches(prop, term, group) -> bool:
        # The directory's search index matches words from their start (tokenized).
        value = str(group.get(prop) or "")
        words = re.split(r"[\s\-_.,;:@/()]+|(?<=[a-z])(?=[A-Z])", value)
        return value.lower().startswith(term) or any(w.lower().startswith(term) for w in words)

    def predicate(group) -> bool:
        result = matches(*tests[0], group)
        for join, test in zip(joins, tests[1:], strict=True):
            result = (
                (result or matches(*test, group))
                if join == "OR"
                else (result and matches(*test, group))
            )
        return result

    return predicate


def list_groups(tenant, query, headers, base_url):
    odata.refuse_unknown(query, {"$select", "$filter", "$search", "$top", "$skiptoken", "$count"})
    top = _top(query)
    offset = int(_page_cursor(query).get("o", 0))
    found = sorted(directory(tenant)["groups"].values(), key=lambda g: g["id"])
    if "$filter" in query:
        matches = odata.compile_filter(query["$filter"], GROUP_FILTER)
        found = [g for g in found if matches(g)]
    search = _search(query, headers)
    if search:
        found = [g for g in found if search(g)]
    fields = None
    if "$select" in query:
        fields = odata.select(
            query, GROUP_PROPERTIES, GROUP_PROPERTIES, "microsoft.graph.group", "Request_BadRequest"
        )
    result = {"@odata.context": f"{base_url}/v1.0/$metadata#groups"}
    if odata.count(query) and eventual(headers):
        result["@odata.count"] = len(found)
    result["value"] = [public(g, fields) for g in found[offset : offset + top]]
    if offset + top < len(found):
        result["@odata.nextLink"] = _next_link(base_url, "groups", query, {"o": offset + top})
    return 200, {}, result


def get_group(group, query, base_url):
    odata.refuse_unknown(query, {"$select"})
    fields = None
    if "$select" in query:
        fields = odata.select(
            query, GROUP_PROPERTIES, GROUP_PROPERTIES, "microsoft.graph.group", "Request_BadRequest"
        )
    body = {"@odata.context": f"{base_url}/v1.0/$metadata#groups/$entity"}
    return 200, {}, {**body, **public(group, fields)}


def _flatten(groups: dict, group: dict, transitive: bool) -> dict[str, str]:
    """Member id → type; transitive: nested groups' members too (each object once)."""
    if not transitive:
        return dict(group["members"])
    found: dict[str, str] = {}
    queue, seen = [group["id"]], {group["id"]}
    while queue:
        current = groups.get(queue.pop())
        if current is None:
            continue
        for member_id, member_type in current["members"].items():
            found.setdefault(member_id, member_type)
            if member_type == "group" and member_id not in seen:
                seen.add(member_id)
                queue.append(member_id)
    return found


def list_members(tenant, group, relation, cast, query, headers, base_url, user_properties):
    odata.refuse_unknown(query, {"$select", "$top", "$skiptoken", "$count"})
    top = _top(query)
    after = _page_cursor(query).get("a", "")
    d = directory(tenant)
    wanted = CAST.get(cast)
    members = _flatten(d["groups"], group, relation == "transitiveMembers")
    ids = sorted(m for m, kind in members.items() if wanted in (None, kind))
    start = bisect.bisect_right(ids, after) if after else 0
    page = ids[start : start + top]
    known = {"user": user_properties, "group": GROUP_PROPERTIES}
    known = known[wanted] if wanted else user_properties | GROUP_PROPERTIES
    fields = None
    if "$select" in query:
        fields = odata.select(
            query, known, known, cast or "microsoft.graph.directoryObject", "Request_BadRequest"
        )
    value = []
    for member_id in page:
        if members[member_id] == "user":
            user = tenant["users"].get(member_id)
            if user is None:
                continue
            item = _user(user, fields)
        else:
            nested = d["groups"].get(member_id)
            if nested is None:
                continue
            item = public(nested, fields)
        if wanted is None:
            item = {"@odata.type": f"#microsoft.graph.{members[member_id]}", **item}
        value.append(item)
    entity = {"user": "users", "group": "groups"}.get(wanted, "directoryObjects")
    result = {"@odata.context": f"{base_url}/v1.0/$metadata#{entity}"}
    if odata.count(query) and eventual(headers):
        result["@odata.count"] = len(ids)
    result["value"] = value
    if start + top < len(ids):
        path = f"groups/{group['id']}/{relation}" + (f"/{cast}" if cast else "")
        result["@odata.nextLink"] = _next_link(base_url, path, query, {"a": page[-1]})
    return 200, {}, result


# ----- delta


def _delta_filter(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    ids = []
    for clause in re.split(r"\s+or\s+", raw.strip()):
        match = re.fullmatch(r"\(?\s*id\s+eq\s+'([^']*)'\s*\)?", clause.strip())
        if not match:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported query: delta supports only $filter=id eq '{value}' (joined by or).",
            )
        ids.append(match.group(1).lower())
    if len(ids) > DELTA_FILTER_LIMIT:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            f"The $filter of a delta query can track at most {DELTA_FILTER_LIMIT} objects.",
        )
    return ids


def _delta_select(query) -> list[str] | None:
    if "$select" not in query:
        return None  # the default properties, and members
    known = GROUP_PROPERTIES | {"members"}
    fields = odata.select(query, known, known, "microsoft.graph.group", "Request_BadRequest")
    return sorted(fields)


def _initial_link(base_url, state) -> str:
    query = {}
    if state.get("f") is not None:
        query["$filter"] = " or ".join(f"id eq '{g}'" for g in state["f"])
    if state.get("sel") is not None:
        query["$select"] = ",".join(state["sel"])
    return f"{base_url}/v1.0/groups/delta?{urlencode(query, quote_via=quote)}"


def _token_state(d, raw, base_url) -> dict:
    state = _decode(raw)
    if state is None or state.get("e") != d["epoch"] or not isinstance(state.get("s"), int):
        raise GraphError(
            410,
            "resyncRequired",
            "Exception of type resyncRequired was thrown.",
            {"Location": _initial_link(base_url, state or {})},
        )
    return state


def delta(tenant, query, base_url):
    odata.refuse_unknown(query, {"$select", "$filter", "$deltatoken", "$skiptoken"})
    d = directory(tenant)
    if "$skiptoken" in query:
        state = _token_state(d, query["$skiptoken"], base_url)
    elif query.get("$deltatoken", "").lower() == "latest":
        # "Sync from now": no objects, only a deltaLink.
        state = {"f": _delta_filter(query.get("$filter")), "sel": _delta_select(query)}
        link = _encode({"e": d["epoch"], "s": d["seq"], **state})
        return 200, {}, _delta_body(base_url, [], deltalink=link)
    elif "$deltatoken" in query:
        state = _token_state(d, query["$deltatoken"], base_url)
        state = {**state, "since": state["s"], "s": d["seq"], "c": None}
    else:
        state = {
            "e": d["epoch"],
            "s": d["seq"],
            "since": None,
            "f": _delta_filter(query.get("$filter")),
            "sel": _delta_select(query),
            "c": None,
        }
    items = _round_items(d, state)
    value, cursor = _delta_page(d, state, items)
    if cursor is None:
        link = _encode({"e": state["e"], "s": state["s"], "f": state["f"], "sel": state["sel"]})
        return 200, {}, _delta_body(base_url, value, deltalink=link)
    return 200, {}, _delta_body(base_url, value, skiptoken=_encode({**state, "c": cursor}))


def _delta_body(base_url, value, *, deltalink=None, skiptoken=None) -> dict:
    body = {"@odata.context": f"{base_url}/v1.0/$metadata#groups"}
    if skiptoken:
        body["@odata.nextLink"] = f"{base_url}/v1.0/groups/delta?$skiptoken={skiptoken}"
    else:
        body["@odata.deltaLink"] = f"{base_url}/v1.0/groups/delta?$deltatoken={deltalink}"
    body["value"] = value
    return body


def _with_members(state) -> bool:
    return state["sel"] is None or "members" in state["sel"]


def _round_items(d, state) -> list[tuple[str, str, list]]:
    """[(group id, "full" | "changed" | "removed", [(member id, type, removed)])] by group id."""
    ids = state["f"]
    tracked = (lambda g: g in ids) if ids is not None else (lambda g: True)
    groups = d["groups"]

    def everyone(group) -> list:
        return [(m, kind, False) for m, kind in sorted(group["members"].items())]

    if state["since"] is None:
        return [(g, "full", everyone(groups[g])) for g in sorted(groups) if tracked(g)]
    log = d["log"]
    start = bisect.bisect_right(log, state["since"], key=lambda entry: entry[0])
    created, deleted, changes = set(), set(), {}
    for seq, op, group_id, member_id, member_type in log[start:]:
        if seq > state["s"] or not tracked(group_id):
            continue
        if op == "created":
            created.add(group_id)
            deleted.discard(group_id)
        elif op == "deleted":
            deleted.add(group_id)
        else:
            changes.setdefault(group_id, {})[member_id] = (member_type, op == "removed")
    items = []
    for group_id in sorted(created | deleted | set(changes)):
        group = groups.get(group_id)
        if group is None:
            if group_id not in created:  # made and deleted within the round: never seen
                items.append((group_id, "removed", []))
        elif group_id in created:
            items.append((group_id, "full", everyone(group)))
        elif _with_members(state) and group_id in changes:
            members = sorted(changes[group_id].items())
            items.append((group_id, "changed", [(m, t, gone) for m, (t, gone) in members]))
    return items


def _delta_page(d, state, items) -> tuple[list, list | None]:
    """One page from the cursor [group id, last member id sent or None]; the next cursor."""
    cursor = state.get("c")
    keys = [item[0] for item in items]
    index = bisect.bisect_left(keys, cursor[0]) if cursor else 0
    after = cursor[1] if cursor else None
    fields = None if state["sel"] is None else set(state["sel"]) - {"members"}
    budget, value = DELTA_PAGE_OBJECTS, []
    while index < len(items):
        group_id, kind, members = items[index]
        if value and budget < 2:
            return value, [group_id, None]
        if kind == "removed":
            value.append({"id": group_id, "@removed": {"reason": "changed"}})
            budget -= 1
            index += 1
            continue
        start = bisect.bisect_right([m[0] for m in members], after) if after else 0
        taken = members[start : start + budget - 1] if _with_members(state) else []
        item = public(d["groups"][group_id], fields)
        if taken:
            item["members@delta"] = [_member_delta(m) for m in taken]
        value.append(item)
        budget -= 1 + len(taken)
        if _with_members(state) and start + len(taken) < len(members):
            return value, [group_id, taken[-1][0]]
        index, after = index + 1, None
    return value, None


def _member_delta(member) -> dict:
    member_id, member_type, removed = member
    entry = {"@odata.type": f"#microsoft.graph.{member_type}", "id": member_id}
    if removed:
        entry["@removed"] = {"reason": "deleted"}
    return entry
