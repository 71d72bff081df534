"""The status page: current topics, groups, lag, rates and findings, and an hour of history.

Rendered server-side (aiohttp, no JavaScript, no CDN: the page works offline and in any
browser); the charts are inline SVG built from the ClickHouse lag table. ``/api/status`` is the
``filas status --json`` document of the last pass and ``/metrics`` the Prometheus exposition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from filas.monitoring.history_store import HistoryPoint
from filas.monitoring.report import components_document, document
from filas.monitoring.service import MonitorPass

log = logging.getLogger("filas.monitoring.web")

HistorySource = Callable[[], list[HistoryPoint]]

WIDTH, HEIGHT, PAD = 720, 240, 40
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{text-align:left;background:#f0f0f0}
th:first-child,td:first-child,td.text{text-align:left}
.finding{color:#b00}.muted{color:#777}
svg{border:1px solid #ddd;background:#fafafa}
"""


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def chart_svg(
    points: Sequence[HistoryPoint], value: Callable[[HistoryPoint], float], title: str, css: str
) -> str:
    """One line per group; every point is a <circle> carrying its group, time and value."""
    if not points:
        return f'<p class="muted" id="{css}-empty">{escape(title)}: no history yet</p>'
    t0 = min(p.at for p in points)
    t1 = max(max(p.at for p in points), t0 + 1)
    top = max(max(value(p) for p in points), 1.0)

    def x(at: int) -> float:
        return PAD + (at - t0) / (t1 - t0) * (WIDTH - 2 * PAD)

    groups = sorted({p.group for p in points})
    plot_top = 26 + 14 * len(groups)  # title, then one legend line per group

    def y(v: float) -> float:
        return HEIGHT - PAD - v / top * (HEIGHT - PAD - plot_top)

    parts = [
        f'<svg id="{css}" class="chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{PAD}" y="16" font-size="13">{escape(title)} (max {top:,.0f})</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#999"/>',
        f'<text x="{PAD}" y="{HEIGHT - 12}" font-size="11">{_clock(t0)}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 12}" font-size="11" text-anchor="end">'
        f"{_clock(t1)} UTC</text>",
    ]
    for i, group in enumerate(groups):
        color = COLORS[i % len(COLORS)]
        mine = sorted((p for p in points if p.group == group), key=lambda p: p.at)
        coords = " ".join(f"{x(p.at):.1f},{y(value(p)):.1f}" for p in mine)
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}" '
            f'data-group="{escape(group)}"/>'
        )
        for p in mine:
            v = value(p)
            parts.append(
                f'<circle class="point" r="2.5" fill="{color}" cx="{x(p.at):.1f}" '
                f'cy="{y(v):.1f}" data-group="{escape(group)}" data-t="{p.at}" '
                f'data-v="{v:.1f}"><title>{escape(group)} {_clock(p.at)}: {v:,.1f}</title>'
                "</circle>"
            )
        parts.append(
            f'<text x="{PAD + 10}" y="{30 + 14 * i}" font-size="11" '
            f'fill="{color}">&#9632; {escape(group)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def _processes_table(last: MonitorPass) -> str:
    rows = [
        '<h2>Processes</h2><table id="processes"><tr><th>component</th><th>busy</th>'
        "<th>processed</th><th>mean latency</th><th>waits on</th></tr>"
    ]
    for row in components_document(last.components, last.window_s):
        waits = ", ".join(
            f"{escape(dep)} {_share(d['share'])}" for dep, d in row["dependencies"].items()
        )
        latency = row["mean_latency_ms"]
        shown = "-" if latency is None else f"{latency:,.2f} ms"
        name = escape(row["component"])
        rows.append(
            f'<tr data-component="{name}"><td>{name}</td><td>{_share(row["busy"])}</td>'
            f"<td>{row['processed']:,.0f}</td><td>{shown}</td>"
            f'<td class="text">{waits or "-"}</td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render_page(
    last: MonitorPass | None, history: Sequence[HistoryPoint], history_error: str | None
) -> str:
    """The whole page as HTML (pure: unit-tested without a server)."""
    body: list[str] = ["<h1>Filas queue status</h1>"]
    if last is None:
        body.append('<p class="muted" id="waiting">waiting for the first monitoring pass</p>')
    else:
        status = last.status
        body.append(
            f'<p class="muted">pass at {_clock(status.wall_time)} UTC, '
            f"rates over {_num(status.interval_s, ' s')}</p>"
        )
        for error in last.errors:
            body.append(f'<p class="finding monitor-error">{escape(error)}</p>')
        body.append('<h2>Bottlenecks</h2><table id="findings"><tr><th>rule</th><th>group</th>'
                    "<th>topic</th><th>fix</th></tr>")  # fmt: skip
        for f in last.findings:
            body.append(
                f'<tr class="finding" data-rule="{escape(f.rule)}" data-group="{escape(f.group)}">'
                f'<td>{escape(f.rule)}</td><td class="text">{escape(f.group)}</td>'
                f'<td class="text">{escape(f.topic)}</td><td class="text">{escape(f.fix)}</td></tr>'
            )
        if not last.findings:
            body.append('<tr><td colspan="4" class="text">none</td></tr>')
        body.append("</table>")
        if last.components:
            body.append(_processes_table(last))
        body.append(
            '<h2>Consumer groups</h2><table id="groups"><tr><th>group</th><th>topic</th>'
            "<th>state</th><th>members/partitions</th><th>lag</th><th>lag rate</th>"
            "<th>consume rate</th></tr>"
        )
        for g in status.groups:
            body.append(
                f'<tr data-group="{escape(g.group)}" data-topic="{escape(g.topic)}" '
                f'data-lag="{g.lag}"><td>{escape(g.group)}</td><td class="text">'
                f'{escape(g.topic)}</td><td class="text">{escape(g.state)}</td>'
                f'<td>{g.members}/{g.partitions}</td><td class="lag">{g.lag:,}</td>'
                f"<td>{_num(g.lag_rate, '/s')}</td><td>{_num(g.consume_rate, '/s')}</td></tr>"
            )
        body.append("</table>")
        body.append(
            '<h2>Topics</h2><table id="topics"><tr><th>topic</th><th>partitions</th>'
            "<th>end offset</th><th>produce rate</th></tr>"
        )
        for t in status.topics:
            body.append(
                f'<tr data-topic="{escape(t.topic)}"><td>{escape(t.topic)}</td>'
                f"<td>{t.partitions}</td><td>{t.end_offset:,}</td>"
                f"<td>{_num(t.produce_rate, '/s')}</td></tr>"
            )
        body.append("</table>")
    body.append("<h2>Last hour</h2>")
    if history_error is not None:
        body.append(f'<p class="muted" id="history-error">history unavailable: '
                    f"{escape(history_error)}</p>")  # fmt: skip
    body.append(chart_svg(history, lambda p: p.lag, "lag (records)", "lag-chart"))
    body.append(
        chart_svg(history, lambda p: p.consume_rate, "throughput (records/s)", "rate-chart")
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="15"><title>Filas status</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


class StatusPage:
    """aiohttp routes over a monitor's last pass and a history source (run in a thread)."""

    def __init__(
        self,
        last: Callable[[], MonitorPass | None],
        history: HistorySource | None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._last = last
        self._history = history
        self._registry = registry

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/api/status", self.api_status)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def index(self, request: web.Request) -> web.Response:
        points: list[HistoryPoint] = []
        error: str | None = None
        if self._history is not None:
            try:
                points = await asyncio.to_thread(self._history)
            except Exception as exc:  # the page must render without ClickHouse
                error = f"{type(exc).__name__}: {exc}"
                log.warning("status page: %s", error)
        html = render_page(self._last(), points, error)
        return web.Response(text=html, content_type="text/html")

    async def api_status(self, request: web.Request) -> web.Response:
        last = self._last()
        if last is None:
            return web.json_response({"waiting": True, "at": time.time()})
        return web.Response(
            text=json.dumps(
                document(last.status, list(last.findings), last.components, last.window_s)
            ),
            content_type="application/json",
        )

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
