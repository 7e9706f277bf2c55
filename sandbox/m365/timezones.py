"""Time-zone names as Graph takes them: any Windows zone name (CLDR's table), or an IANA name.

Outlook stores and sends Windows names ("W. Europe Standard Time", "Pacific Standard Time");
Graph also takes IANA names in `dateTimeTimeZone` and `Prefer: outlook.timezone`. The table is
data (windows_zones.json, CLDR's windowsZones.xml), not a hand-made list.
"""

import json
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TABLE = Path(__file__).with_name("windows_zones.json")


class UnknownTimeZone(ValueError):
    """A zone name Graph does not know: the request is a 400, never a crash."""

    def __init__(self, name):
        super().__init__(f"unknown time zone {name!r}")
        self.name = name


@cache
def windows_zones() -> dict[str, str]:
    return json.loads(TABLE.read_text(encoding="utf-8"))["zones"]


@cache
def _by_lower_name() -> dict[str, str]:
    return {name.lower(): iana for name, iana in windows_zones().items()}


@cache
def zone(name: str | None) -> ZoneInfo:
    """The zone a Graph time-zone name stands for (Windows names compare case-insensitively)."""
    name = (name or "UTC").strip()
    iana = _by_lower_name().get(name.lower(), name)
    if not iana or iana.startswith(("/", ".")) or ".." in iana:
        raise UnknownTimeZone(name)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise UnknownTimeZone(name) from exc


def is_known(name: str | None) -> bool:
    try:
        zone(name)
    except UnknownTimeZone:
        return False
    return True
