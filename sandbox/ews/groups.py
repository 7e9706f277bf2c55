"""Distribution groups as Exchange admin keeps them, and what ExpandDL makes of them.

A group is `{"name", "members"}` in `Directory.groups`, keyed by its lowercased address. A
member is a directory recipient's address (a mailbox or another group: nested) or an external
mail contact `{"email", "name", "type": "Contact"}`. Members are stored as references, so a
renamed mailbox shows its new name; a deleted group leaves every group it was in (AD drops the
link). Callers hold `directory.lock`.
"""

CONTACT = "Contact"


def _address(value) -> str:
    if not isinstance(value, str) or "@" not in value:
        raise ValueError(f"not an e-mail address: {value!r}")
    return value.strip().lower()


def clean_member(directory, group_email: str, member):
    """A member as stored: a recipient's address (which must exist, as in Exchange admin) or
    an external contact's dict."""
    if isinstance(member, dict):
        if member.get("type", CONTACT) != CONTACT or set(member) - {"email", "name", "type"}:
            raise ValueError(f"a member object is an external contact: {member!r}")
        email = _address(member.get("email"))
        return {"email": email, "name": str(member.get("name") or email), "type": CONTACT}
    email = _address(member)
    if email == group_email:
        raise ValueError("a group cannot be a member of itself")
    if directory.mailbox(email) is None and email not in directory.groups:
        raise ValueError(f"no mailbox or group {email}")
    return email


def _key(member) -> str:
    return member["email"] if isinstance(member, dict) else member


def add_group(directory, email: str, name: str, members) -> dict:
    email = _address(email)
    if not isinstance(members, list | tuple):
        raise ValueError("members must be a list")
    old = directory.groups.get(email)
    group = {"name": str(name or email), "members": []}
    directory.groups[email] = group  # first, so a member list may not name the group itself
    try:
        return change_members(directory, email, add=members)
    except ValueError:
        if old is None:
            del directory.groups[email]
        else:
            directory.groups[email] = old
        raise


def _group(directory, email) -> tuple[str, dict]:
    email = (email or "").strip().lower()
    group = directory.groups.get(email)
    if group is None:
        raise KeyError(email)
    return email, group


def change_members(directory, email: str, *, add=(), remove=()) -> dict:
    """Add and remove members (all or nothing); adding one already there changes nothing."""
    email, group = _group(directory, email)
    for value in (add, remove):
        if not isinstance(value, list | tuple):
            raise ValueError("add and remove must be lists")
    adding = [clean_member(directory, email, member) for member in add]
    dropping = {_address(m.get("email") if isinstance(m, dict) else m) for m in remove}
    members = [m for m in group["members"] if _key(m) not in dropping]
    present = {_key(m) for m in members}
    for member in adding:
        if _key(member) not in present:
            members.append(member)
            present.add(_key(member))
    group["members"] = members
    return public(email, group)


def delete_group(directory, email: str) -> None:
    email, _ = _group(directory, email)
    del directory.groups[email]
    for group in directory.groups.values():
        group["members"] = [m for m in group["members"] if _key(m) != email]


def public(email: str, group: dict) -> dict:
    return {"email": email, "name": group["name"], "members": list(group["members"])}


def listing(directory) -> list[dict]:
    return [public(email, group) for email, group in sorted(directory.groups.items())]


def expansion(directory, email: str) -> list[tuple[str, str, str]] | None:
    """ExpandDL's answer, (name, address, MailboxType) per direct member: nested groups are
    PublicDL (not expanded: ExpandDL is not recursive), contacts Contact. None: no such group."""
    group = directory.groups.get((email or "").strip().lower())
    if group is None:
        return None
    found = []
    for member in group["members"]:
        if isinstance(member, dict):
            found.append((member["name"], member["email"], CONTACT))
        elif member in directory.groups:
            found.append((directory.groups[member]["name"], member, "PublicDL"))
        elif (box := directory.mailbox(member)) is not None:
            found.append((box.name, box.email, "Mailbox"))
    return found
