"""The company directory as One X shows it to colleagues: status now and the absences to come."""

from html import escape
from zoneinfo import ZoneInfo

from .store import parse_time, utcnow

STOCKHOLM = ZoneInfo("Europe/Stockholm")
WEEKDAYS = ["mån", "tis", "ons", "tors", "fre", "lör", "sön"]
UPCOMING_SHOWN = 5

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1f;background:#f6f7fb}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e3e5ee;vertical-align:top}
th{font-size:.8rem;text-transform:uppercase;color:#555}
.free{color:#1a7f37;font-weight:600}.away{color:#b35900;font-weight:600}
.badge{display:inline-block;font-size:.72rem;padding:.05rem .4rem;border-radius:.6rem;
background:#e8eaf6;margin-left:.3rem}.divert{background:#fde2e1;color:#9a1c14}
ul{margin:0;padding-left:1rem}small{color:#666}
"""


def _local(moment):
    return moment.astimezone(STOCKHOLM)


def _return_text(return_at, now):
    local, today = _local(return_at), _local(now).date()
    day = f"{WEEKDAYS[local.weekday()]} {local.day}/{local.month}"
    if local.hour == local.minute == 0:  # an all-day absence: back that day, not at "00:00"
        return f"åter {day}"
    if local.date() == today:
        return f"åter {local:%H:%M}"
    return f"åter {day} {local:%H:%M}"


def _when(entry):
    start, end = _local(parse_time(entry["start"])), _local(parse_time(entry["end"]))
    day = f"{WEEKDAYS[start.weekday()]} {start.day}/{start.month}"
    if start.date() == end.date():
        return f"{day} {start:%H:%M}–{end:%H:%M}"
    return f"{day} {start:%H:%M} – {WEEKDAYS[end.weekday()]} {end.day}/{end.month} {end:%H:%M}"


def _divert_badge(entry):
    if not entry["divert"]:
        return ""
    label = "Hänvisad (öppen)" if entry["openDiversion"] else "Hänvisad"
    return f'<span class="badge divert">{label}</span>'


def _label(reasons, code):
    reason = reasons.get(code)
    return reason["label"]["sv"] if reason else code


def _person_row(sub, entries, reasons, now):
    current = [e for e in entries if parse_time(e["start"]) <= now < parse_time(e["end"])]
    upcoming = sorted(
        (e for e in entries if parse_time(e["start"]) > now), key=lambda e: e["start"]
    )[:UPCOMING_SHOWN]
    if current:
        entry = max(current, key=lambda e: e["start"])
        status = (
            f'<span class="away">{escape(_label(reasons, entry["reasonCode"]))}, '
            f"{_return_text(parse_time(entry['returnAt']), now)}</span>{_divert_badge(entry)}"
        )
        if entry.get("note"):
            status += f"<br><small>{escape(entry['note'])}</small>"
    else:
        status = '<span class="free">Tillgänglig</span>'
    coming = "".join(
        f"<li>{_when(e)} {escape(_label(reasons, e['reasonCode']))}{_divert_badge(e)}</li>"
        for e in upcoming
    )
    badges = ""
    if sub["admin"]:
        badges += '<span class="badge">Admin</span>'
    if sub["features"].get("diversion"):
        badges += '<span class="badge">Hänvisning</span>'
    return (
        f'<tr data-subscription="{escape(sub["subscriptionId"])}">'
        f"<td>{escape(sub['displayName'] or sub['email'])}{badges}<br>"
        f"<small>{escape(sub['email'])}</small></td>"
        f"<td>{escape(sub['extension'])}<br><small>{escape(sub['msisdn'])}</small></td>"
        f'<td class="status">{status}</td>'
        f"<td>{f'<ul>{coming}</ul>' if coming else '<small>Inga</small>'}</td></tr>"
    )


def render_directory(store, only_company=None):
    now = utcnow()
    sections = []
    with store.lock:
        companies = sorted(store.data["companies"].items(), key=lambda item: item[1]["name"])
        for company_id, company in companies:
            if only_company and company_id != only_company:
                continue
            by_sub = {}
            for entry in company["absences"].values():
                by_sub.setdefault(entry["subscriptionId"], []).append(entry)
            people = sorted(
                company["subscriptions"].values(),
                key=lambda s: (s["displayName"] or s["email"]).lower(),
            )
            rows = "".join(
                _person_row(sub, by_sub.get(sub["subscriptionId"], []), company["reasons"], now)
                for sub in people
            )
            sections.append(
                f'<section data-company="{escape(company_id)}">'
                f"<h2>{escape(company['name'])} <small>({escape(company_id)})</small></h2>"
                "<table><thead><tr><th>Namn</th><th>Anknytning</th><th>Status</th>"
                f"<th>Kommande frånvaro</th></tr></thead><tbody>{rows}</tbody></table></section>"
            )
    return (
        '<!doctype html><html lang="sv"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="15">'
        f"<title>One X – Företagskatalog (sandlåda)</title><style>{STYLE}</style></head><body>"
        "<h1>One X företagskatalog <small>sandlåda</small></h1>"
        f"<p><small>Uppdaterad {_local(now):%Y-%m-%d %H:%M:%S} (Europe/Stockholm)</small></p>"
        f"{''.join(sections) or '<p>Inga företag.</p>'}</body></html>"
    )
