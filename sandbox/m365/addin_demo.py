"""The add-in demo: the product's task pane beside one of a demo mailbox's appointments.

`GET /_sandbox/addin/demo?pane=<the product's task pane URL>&mailbox=…&event=…` lists the
mailbox's coming single appointments; choosing one opens the pane in a frame with the Office.js
stand-in (`/_sandbox/addin/office.js`) playing that appointment, as Outlook would. A choice saved
in the pane lands on the sandbox event, its change notification reaches the product, and the
One X sandbox shows the result.
"""

import html
import json
from datetime import UTC, datetime
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from . import demo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SHOW_AS = {"busy": "Upptagen", "oof": "Frånvarande", "tentative": "Preliminär", "free": "Ledig"}
LISTED = 15
WEEKDAYS = ("mån", "tis", "ons", "tors", "fre", "lör", "sön")
MONTHS = ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec")


def _moment(stamp: dict, all_day: bool) -> datetime:
    moment = datetime.fromisoformat(stamp["dateTime"][:19])
    return moment.replace(tzinfo=STOCKHOLM if all_day or stamp["timeZone"] != "UTC" else UTC)


def coming_events(sandbox, mailbox: str) -> tuple[dict | None, list[dict]]:
    """(tenant, events) of the mailbox: its single appointments not yet over, soonest first."""
    now = datetime.now(UTC)
    for tenant in sandbox.tenants.values():
        user = next((u for u in tenant["users"].values() if u["mail"] == mailbox), None)
        if user is None:
            continue
        found = []
        for event in tenant["events"].get(user["id"], {}).values():
            if event.get("type") != "singleInstance" or event.get("isCancelled"):
                continue
            start = _moment(event["start"], event.get("isAllDay"))
            end = _moment(event["end"], event.get("isAllDay"))
            if end > now:
                found.append(dict(event, _start=start, _end=end))
        found.sort(key=lambda e: e["_start"])
        return tenant, found[:LISTED]
    return None, []


def page(sandbox, query: dict) -> str:
    pane = query.get("pane", "http://127.0.0.1:8000/addin/taskpane/")
    mailbox = query.get("mailbox", demo.ANNA).strip().lower()
    tenant, events = coming_events(sandbox, mailbox)
    chosen = next((e for e in events if e["id"] == query.get("event")), None)
    chosen = chosen or (events[0] if events else None)
    rows = []
    for event in events:
        when = event["_start"].astimezone(STOCKHOLM)
        end = event["_end"].astimezone(STOCKHOLM)
        link = "?" + urlencode({"pane": pane, "mailbox": mailbox, "event": event["id"]})
        current = ' aria-current="true"' if chosen and event["id"] == chosen["id"] else ""
        day = f"{WEEKDAYS[when.weekday()]} {when.day} {MONTHS[when.month - 1]}"
        hours = "heldag" if event.get("isAllDay") else f"{when:%H:%M}–{end:%H:%M}"
        rows.append(
            f'<li><a href="{html.escape(link)}"{current}>{day} {hours} '
            f"{html.escape(event.get('subject') or '')}</a> "
            f"<small>({SHOW_AS.get(event.get('showAs'), event.get('showAs'))})</small></li>"
        )
    frame = "<p>Ingen kommande bokning i den här brevlådan.</p>"
    if chosen is not None:
        config = {
            "mode": "graph",
            "sandbox": sandbox.base_url,
            "mailbox": mailbox,
            "tenant": tenant["id"],
            "itemId": chosen["id"],
            "start": chosen["_start"].astimezone(UTC).isoformat(),
            "end": chosen["_end"].astimezone(UTC).isoformat(),
            "allDay": bool(chosen.get("isAllDay")),
            "addinId": query.get("addin_id", demo.DEFAULT_ADDIN_ID),
        }
        src = f"{pane}?lang=sv#office-stub={quote(json.dumps(config))}"
        frame = (
            f"<h2>{html.escape(chosen.get('subject') or '')}</h2>"
            f'<iframe title="Telefonstatus" src="{html.escape(src)}"></iframe>'
        )
    return f"""<!doctype html><html lang="sv"><head><meta charset="utf-8">
<title>Outlook-tillägget – demo</title>
<style>
 body {{ font: 14px/1.4 system-ui, sans-serif; margin: 0; display: flex; min-height: 100vh; }}
 nav {{ width: 40%; padding: 16px; background: #f3f3f3; }}
 section {{ flex: 1; padding: 16px; }}
 iframe {{ width: 360px; height: 720px; border: 1px solid #bbb; }}
 li {{ margin: 6px 0; }} a[aria-current] {{ font-weight: bold; }}
</style></head><body>
<nav><h1>Outlook-tillägget – demo</h1>
<p>Sandlådans Outlook: {html.escape(mailbox)}. Välj en bokning; tillägget öppnas bredvid
den, som i Outlook. Ett sparat val når One X genom den vanliga synken.</p>
<ul>{"".join(rows)}</ul></nav>
<section>{frame}</section></body></html>"""
