"""Grafana dashboards (JSON, grafana-clickhouse-datasource) over the sink's tables.

Generated here, written to ``deploy/grafana/`` by ``filas monitor grafana`` and checked in; a unit
test regenerates them (the files must be current) and checks that every table a query names is
one the catalog-derived DDL creates. Table names carry no environment prefix (production);
``${database}`` is a dashboard variable (default ``filas``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
TIME_SERIES, TABLE = 0, 1


def _target(sql: str, fmt: int) -> dict[str, Any]:
    return {
        "refId": "A",
        "datasource": DATASOURCE,
        "editorType": "sql",
        "format": fmt,
        "queryType": "timeseries" if fmt == TIME_SERIES else "table",
        "rawSql": " ".join(sql.split()),
    }


def _panel(
    pid: int, title: str, sql: str, *, kind: str = "timeseries", unit: str = "short", w: int = 12
) -> dict[str, Any]:
    fmt = TABLE if kind == "table" else TIME_SERIES
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": w, "x": 0 if pid % 2 else 12, "y": (pid - 1) // 2 * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [_target(sql, fmt)],
    }


def _dashboard(uid: str, title: str, panels: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["filas"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "grafana-clickhouse-datasource",
                    "label": "ClickHouse",
                },
                {
                    "name": "database",
                    "type": "textbox",
                    "query": "filas",
                    "label": "database",
                    "current": {"text": "filas", "value": "filas"},
                },
            ]
        },
        "panels": list(panels),
    }


def _per_minute(table: str, time_col: str, series: str) -> str:
    # Dashboard text run by Grafana, from constants of this module: nothing user-supplied.
    sql = (
        "SELECT toStartOfMinute(TIME) AS time, SERIES AS series, count() AS events "
        "FROM ${database}.TABLE WHERE $__timeFilter(TIME) GROUP BY time, series ORDER BY time"
    )
    return sql.replace("TIME", time_col).replace("SERIES", series).replace("TABLE", table)


def queue_dashboard() -> dict[str, Any]:
    """Lag, throughput and bottleneck findings from ``filas monitor serve``'s history."""
    return _dashboard(
        "filas-queues",
        "Filas queues: lag and bottlenecks",
        [
            _panel(1, "Lag per consumer group (records)", """
                SELECT time, consumer_group, avg(pass_lag) AS lag FROM (
                    SELECT toStartOfMinute(envelope_occurred_at) AS time,
                           envelope_occurred_at AS at, consumer_group, sum(lag) AS pass_lag
                    FROM ${database}.filas_monitoring_lag FINAL
                    WHERE $__timeFilter(envelope_occurred_at)
                    GROUP BY time, at, consumer_group)
                GROUP BY time, consumer_group ORDER BY time
            """),
            _panel(2, "Consume rate per group (records/s)", """
                SELECT time, consumer_group, avg(pass_rate) AS consume_rate FROM (
                    SELECT toStartOfMinute(envelope_occurred_at) AS time,
                           envelope_occurred_at AS at, consumer_group,
                           sum(ifNull(consume_rate, 0)) AS pass_rate
                    FROM ${database}.filas_monitoring_lag FINAL
                    WHERE $__timeFilter(envelope_occurred_at)
                    GROUP BY time, at, consumer_group)
                GROUP BY time, consumer_group ORDER BY time
            """, unit="ops"),
            _panel(3, "Lag growth per group (records/s, > 0: falling behind)", """
                SELECT time, consumer_group, avg(pass_rate) AS lag_rate FROM (
                    SELECT toStartOfMinute(envelope_occurred_at) AS time,
                           envelope_occurred_at AS at, consumer_group,
                           sum(ifNull(lag_rate, 0)) AS pass_rate
                    FROM ${database}.filas_monitoring_lag FINAL
                    WHERE $__timeFilter(envelope_occurred_at)
                    GROUP BY time, at, consumer_group)
                GROUP BY time, consumer_group ORDER BY time
            """, unit="ops"),
            _panel(4, "Findings per rule (passes per minute)", """
                SELECT toStartOfMinute(envelope_occurred_at) AS time, rule, count() AS passes
                FROM ${database}.filas_monitoring_findings FINAL
                WHERE $__timeFilter(envelope_occurred_at)
                GROUP BY time, rule ORDER BY time
            """),
            _panel(5, "Current and recent findings", """
                SELECT max(envelope_occurred_at) AS last_seen,
                       min(envelope_occurred_at) AS first_seen,
                       rule, consumer_group, topic, any(dependency) AS dependency, any(fix) AS fix
                FROM ${database}.filas_monitoring_findings FINAL
                WHERE $__timeFilter(envelope_occurred_at)
                GROUP BY rule, consumer_group, topic ORDER BY last_seen DESC LIMIT 100
            """, kind="table", w=24),
            _panel(6, "Hottest partitions (latest lag)", """
                SELECT consumer_group, topic, partition, argMax(lag, envelope_occurred_at) AS lag
                FROM ${database}.filas_monitoring_lag FINAL
                WHERE $__timeFilter(envelope_occurred_at)
                GROUP BY consumer_group, topic, partition ORDER BY lag DESC LIMIT 20
            """, kind="table"),
        ],
    )  # fmt: skip


def events_dashboard() -> dict[str, Any]:
    """Events per minute of every family the sink lands, from their own tables."""
    return _dashboard(
        "filas-events",
        "Filas events per family",
        [
            _panel(1, "RADIUS decisions per minute", _per_minute(
                "radius_auth_decisions", "envelope_occurred_at", "decision")),
            _panel(2, "RADIUS decision latency p99 (us)", """
                SELECT toStartOfMinute(envelope_occurred_at) AS time,
                       quantile(0.99)(latency_us) AS p99_us
                FROM ${database}.radius_auth_decisions
                WHERE $__timeFilter(envelope_occurred_at) GROUP BY time ORDER BY time
            """, unit="µs"),
            _panel(3, "RADIUS accounting per minute", _per_minute(
                "radius_accounting", "envelope_occurred_at", "status_type")),
            _panel(4, "CoA results per minute", _per_minute(
                "radius_coa_results", "envelope_occurred_at", "outcome")),
            _panel(5, "Ping results: mean loss per minute", """
                SELECT toStartOfMinute(envelope_occurred_at) AS time, avg(loss_ratio) AS loss
                FROM ${database}.net_ping_results
                WHERE $__timeFilter(envelope_occurred_at) GROUP BY time ORDER BY time
            """, unit="percentunit"),
            _panel(6, "Network alerts per minute", _per_minute(
                "net_alerts", "envelope_occurred_at", "severity")),
            _panel(7, "Campaign deliveries per minute", _per_minute(
                "campaign_delivery_results", "envelope_occurred_at", "status")),
            _panel(8, "IXC contract status changes per minute", _per_minute(
                "ixc_contract_status", "envelope_occurred_at", "new_status")),
            _panel(9, "Log lines per minute by level", _per_minute(
                "filas_logs", "envelope_occurred_at", "level")),
            _panel(10, "Service requests per minute", _per_minute(
                "requests_status", "envelope_occurred_at", "state")),
        ],
    )  # fmt: skip


DASHBOARDS = {
    "filas-queues.json": queue_dashboard,
    "filas-events.json": events_dashboard,
}


def render(builder_name: str) -> str:
    return json.dumps(DASHBOARDS[builder_name](), indent=2, ensure_ascii=False) + "\n"


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DASHBOARDS:
        path = directory / name
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written
