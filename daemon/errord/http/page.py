"""The status page (CONTRACT §10): server-rendered HTML, nothing from outside the host, no
script at all; every text that came from a log line is escaped (``html.escape``); it
refreshes itself with ``<meta http-equiv="refresh">``. The only inline part, the style
sheet, is allowed by its nonce in the Content-Security-Policy ``server`` sends."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

from errord.config import RunConfig, redact_url
from errord.control import silence_json
from errord.model import Incident
from errord.notices import clean_text
from errord.status import open_readonly, status_data
from errord.views import ago, stamp

__all__ = ["REFRESH", "render_page"]

REFRESH = 30  # seconds between the page's own reloads
DAY = 86400.0
_W, _H = 480, 14  # the timeline's size (SVG user units)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:.5rem 1rem;color:#222}
h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.5rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2rem .4rem;vertical-align:top}
tr:nth-child(even){background:#f6f6f6}.msg{overflow-wrap:anywhere;max-width:28rem}
.ok{color:#070}.bad{color:#b00}.muted{color:#777}svg{width:100%;max-width:30rem;height:1rem}
@media (max-width:40rem){th.o,td.o{display:none}}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _timeline(spans: Sequence[tuple[float, float]], now: float) -> str:
    """Inline SVG of the last 24 hours: a red bar per span an incident was open."""
    start = now - DAY
    bars = []
    for a, b in spans:
        a, b = max(a, start), min(b, now)
        if b < a:
            continue
        w = max(3.0, (b - a) / DAY * _W)  # an incident of seconds stays visible
        x = min((a - start) / DAY * _W, _W - w)
        bars.append(f'<rect x="{x:.1f}" y="2" width="{w:.1f}" height="{_H - 4}" fill="#c33"/>')
    return (
        f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="last 24 hours">'
        f'<rect width="{_W}" height="{_H}" fill="#eee"/>{"".join(bars)}</svg>'
    )


def _fleet_block(config: RunConfig, now: float) -> list[str]:
    """The fleet's open incidents (CONTRACT §13), from the data of ``GET /api/v1/fleet``:
    one MongoDB read, bounded by the capped ``[mongodb] timeout``."""
    from pymongo.errors import PyMongoError  # only with [fleet]

    from errord.fleet.view import fleet_json

    assert config.fleet is not None
    out = [f"<h2>Fleet {_e(config.fleet.name)}</h2>"]
    try:
        rows = fleet_json(config, now)
    except PyMongoError as exc:
        return [*out, f'<p class="bad">MongoDB did not answer ({_e(type(exc).__name__)}): each host alerts alone</p>']
    if not rows:
        return [*out, '<p class="ok">no open fleet incident</p>']
    out.append(
        "<table><tr><th>code</th><th class=o>app</th><th>hosts failing</th><th class=o>stale</th>"
        "<th>alerted by</th><th>since</th><th class=o>occurrences</th></tr>"
    )
    for r in rows:
        since = r["start_time"]  # None in a document no member finished writing
        out.append(
            f"<tr><td>{_e(r['code'])}</td><td class=o>{_e(r['app'] or '')}</td>"
            f"<td>{len(r['hosts'])}: {_e(', '.join(r['hosts']))}</td>"
            f'<td class="o muted">{_e(", ".join(r["stale"]) or "—")}</td>'
            f"<td>{_e(r['alerted_by'] or 'not announced yet')}</td>"
            f'<td title="{_e(stamp(since))}">{_e(ago(since, now))}</td>'
            f"<td class=o>{int(r['occurrences'])}</td></tr>"
        )
    out.append("</table>")
    return out


def render_page(config: RunConfig, nonce: str) -> str:
    """The whole page, from read-only journal connections of its own."""
    now = time.time()
    st = status_data(config)
    open_incidents: list[Incident] = []
    recent: list[Incident] = []
    silences: list[dict[str, Any]] = []
    targets: dict[str, tuple[float | None, int, str | None]] = {}
    journal = open_readonly(config)
    if journal is not None:
        with journal:
            open_incidents = journal.active()
            recent = journal.history(since=now - DAY, limit=2000)
            open_ids = {i.incident_id for i in open_incidents}
            silences = [silence_json(s, now, open_ids) for s in journal.control.silences() if s.active(now, open_ids)]
            targets = journal.outbox.target_states()
    spans: dict[str, list[tuple[float, float]]] = {}
    for inc in [*recent, *open_incidents]:
        spans.setdefault(inc.code, []).append((inc.start_time, inc.cleared_at or now))
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f'<meta http-equiv="refresh" content="{REFRESH}">',
        f"<title>errord on {_e(config.server_id)}</title>",
        f'<style nonce="{nonce}">{_STYLE}</style></head><body>',
        f"<h1>errord on {_e(config.server_id)}{('/' + _e(config.node_name)) if config.node_name else ''}</h1>",
        '<p class="{}">{}</p>'.format(
            "ok" if st["running"] else "bad",
            f"running (pid {st['pid']})" if st["running"] else "not running",
        ),
        f"<p>{st['active_incidents']} open · {st['pending_notices']} notices pending · "
        f"{st['silences_active']} silences in force · updated {_e(stamp(now))}</p>",
        "<h2>Open incidents</h2>",
    ]
    if open_incidents:
        out.append(
            "<table><tr><th>code</th><th class=o>app</th><th>since</th><th>occurrences</th>"
            "<th class=o>alerts</th><th>message</th></tr>"
        )
        for inc in sorted(open_incidents, key=lambda i: i.start_time, reverse=True):
            out.append(
                f"<tr><td>{_e(inc.code)}</td><td class=o>{_e(inc.app or '')}</td>"
                f'<td title="{_e(stamp(inc.start_time))}">{_e(ago(inc.start_time, now))}</td>'
                f"<td>{inc.occurrences}</td><td class=o>{inc.alerts_sent}</td>"
                f"<td class=msg>{_e(clean_text(inc.message, 300))}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append('<p class="ok">none</p>')
    out.append("<h2>The last 24 hours</h2>")
    if spans:
        out.append("<table>")
        for code in sorted(spans):
            out.append(f"<tr><td>{_e(code)}</td><td>{_timeline(spans[code], now)}</td></tr>")
        out.append("</table>")
    else:
        out.append('<p class="muted">no incident</p>')
    out.append("<h2>Silences and mute times</h2>")

    def ends(s: dict[str, Any]) -> str:
        return "ack" if s["ack"] else ("until resolved" if s["until_resolved"] else str(s["ends_at"]))

    rows = [(s["id"], s["pattern"], s["app"], ends(s), s["by"], s["reason"]) for s in silences]
    if rows or config.mute_times:
        out.append(
            "<table><tr><th>silence</th><th>pattern</th><th class=o>app</th><th>ends</th>"
            "<th class=o>by</th><th>reason</th></tr>"
        )
        for r in rows:
            out.append(
                "<tr>"
                + "".join(f"<td{' class=o' if i in (2, 4) else ''}>{_e(v)}</td>" for i, v in enumerate(r))
                + "</tr>"
            )
        for m in config.mute_times:
            out.append(
                f"<tr><td>mute time</td><td>{_e(','.join(m.codes))}</td><td class=o>{_e(','.join(m.apps))}</td>"
                f"<td>{_e(','.join(m.weekdays) or 'every day')} {_e(','.join(m.times) or 'all day')} "
                f"{_e(m.timezone)}</td>"
                f"<td class=o></td><td>{_e(m.name)}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append('<p class="muted">none</p>')
    if config.fleet is not None:
        out += _fleet_block(config, now)
    out.append(
        "<h2>Notify targets</h2><table><tr><th>target</th><th>last success</th><th>pending</th><th>last error</th></tr>"
    )
    for t in config.notify:
        last, pending, err = targets.get(t.key, (None, 0, None))
        out.append(
            f"<tr><td>{_e(redact_url(t.url))}</td><td>{_e(ago(last, now) if last else 'never')}</td>"
            f'<td>{pending}</td><td class="{"bad" if err else "muted"}">{_e(clean_text(err or "—", 200))}</td></tr>'
        )
    out.append("</table></body></html>")
    return "\n".join(out)
