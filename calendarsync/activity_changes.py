"""What an admin's edit changed, as the activity log stores it: `[{"field", "before", "after"}]`.

Take a `snapshot` before a form touches the instance (a ModelForm writes into it while it
validates), another after saving, and `diff` them. Secrets are never stored: only that they
changed.
"""

from datetime import time

SECRET_FIELDS = frozenset({"ews_password"})


def plain(value):
    """A JSON value for a field's value (times as "07:00", an absence reason by its label)."""
    if isinstance(value, time):
        return f"{value:%H:%M}"
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def snapshot(instance, fields) -> dict:
    values = {}
    for name in fields:
        field = instance._meta.get_field(name)
        if field.is_relation:
            related = getattr(instance, name) if getattr(instance, field.attname) else None
            values[name] = None if related is None else str(related)
        else:
            values[name] = plain(getattr(instance, name))
    return values


def from_form(form, fields) -> dict:
    """The values a bound ModelForm started from (its instance is already edited)."""
    return {name: plain(form.initial.get(name)) for name in fields}


def diff(before: dict, after: dict) -> list[dict]:
    changes = []
    for name, old in before.items():
        new = after.get(name)
        if old == new:
            continue
        if name in SECRET_FIELDS:
            changes.append({"field": name, "changed": True})
        else:
            changes.append({"field": name, "before": old, "after": new})
    return changes
