"""The status page HTML and its SVG charts, rendered without a server."""

from __future__ import annotations

from filas.monitoring.history_store import HistoryPoint, bucket_seconds
from filas.monitoring.rules import Finding
from filas.monitoring.samples import GroupTopicStatus, Status, TopicRate
from filas.monitoring.service import MonitorPass
from filas.monitoring.web import chart_svg, render_page


def _pass() -> MonitorPass:
    status = Status(
        wall_time=1_800_000_000.0,
        interval_s=5.0,
        topics=(TopicRate("radius.accounting", 12, 25_000, 480.0),),
        groups=(
            GroupTopicStatus(
                "filas-clickhouse-sink", "radius.accounting", "EMPTY", 0, 12, 1700, 480.0, 0.0
            ),
        ),
    )
    finding = Finding("group_stalled", "filas-clickhouse-sink", "radius.accounting", {}, "restart")
    return MonitorPass(status, (finding,), errors=("http://mailer/metrics: refused <x>",))


def test_page_shows_groups_lag_findings_and_chart_points() -> None:
    history = [
        HistoryPoint(1_800_000_000 + 30 * i, "filas-clickhouse-sink", 100.0 * i, 5.0)
        for i in range(4)
    ]
    html = render_page(_pass(), history, None)
    assert 'data-group="filas-clickhouse-sink" data-topic="radius.accounting"' in html
    assert '<td class="lag">1,700</td>' in html
    assert 'data-rule="group_stalled"' in html
    assert html.count('class="point"') == 8  # four points on each of the two charts
    assert 'data-v="300.0"' in html
    assert "refused &lt;x&gt;" in html
    assert "<script" not in html  # nothing to fetch from the internet, nothing to run


def test_page_escapes_names_and_renders_without_history_or_pass() -> None:
    html = render_page(None, [], "ClickHouseError: down")
    assert 'id="waiting"' in html
    assert 'id="history-error"' in html
    assert 'id="lag-chart-empty"' in html
    svg = chart_svg([HistoryPoint(1, "<g>", 1.0, 1.0)], lambda p: p.lag, "lag", "c")
    assert 'data-group="<g>"' not in svg
    assert 'data-group="&lt;g&gt;"' in svg


def test_buckets_make_about_120_points_and_at_least_one_second() -> None:
    assert bucket_seconds(60) == 30
    assert bucket_seconds(1) == 1
