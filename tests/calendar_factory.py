"""Calendar items and plan settings for tests, with sensible defaults."""

from datetime import datetime, timedelta

from calendarsync.items import CalendarItem, ItemKind, Response, Sensitivity, ShowAs
from calendarsync.rules import STOCKHOLM, PlanSettings

NOW = datetime(2026, 6, 1, 6, 0, tzinfo=STOCKHOLM)  # a Monday morning


def at(day: int, hour: int = 9, minute: int = 0, month: int = 6, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM)


def item(
    item_id="item-1", start=None, end=None, *, minutes=60, show_as=ShowAs.BUSY, **fields
) -> CalendarItem:
    start = start or at(1, 9)
    values = {
        "provider_item_id": item_id,
        "series_master_id": None,
        "kind": ItemKind.SINGLE,
        "start": start,
        "end": end or start + timedelta(minutes=minutes),
        "all_day": False,
        "show_as": show_as,
        "sensitivity": Sensitivity.NORMAL,
        "cancelled": False,
        "my_response": Response.ORGANIZER,
    }
    values.update(fields)
    return CalendarItem(**values)


def plan_settings(**fields) -> PlanSettings:
    values = {"subscription_id": "sub-1", "has_diversion": True, "has_open_diversion": True}
    values.update(fields)
    return PlanSettings(**values)
