"""Grafana dashboards: current with their generator, and every table they query exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from consumers.clickhouse.tables import build_tables
from filas.catalog import Catalog
from filas.monitoring.grafana import DASHBOARDS, DATASOURCE, render
from schemas.catalog import SchemaCatalog

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
TABLE_REF = re.compile(r"\$\{database\}\.([A-Za-z0-9_]+)")


def _ddl_tables() -> set[str]:
    return {t.name for t in build_tables(Catalog.build(), SchemaCatalog.load()).values()}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_file_is_current(name: str) -> None:
    assert (GRAFANA / name).read_text(encoding="utf-8") == render(name), (
        "run: filas monitor grafana"
    )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_names_existing_tables_through_the_clickhouse_datasource(name: str) -> None:
    dashboard = json.loads((GRAFANA / name).read_text(encoding="utf-8"))
    tables = _ddl_tables()
    panels = dashboard["panels"]
    assert panels
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == DATASOURCE
        for target in panel["targets"]:
            assert target["datasource"]["type"] == "grafana-clickhouse-datasource"
            sql = target["rawSql"]
            referenced = TABLE_REF.findall(sql)
            assert referenced, f"{panel['title']}: no ${{database}}.<table> in {sql}"
            assert set(referenced) <= tables, f"{panel['title']}: {set(referenced) - tables}"
            # Every FROM names a ${database}.table or a subquery; nothing else.
            for source in re.findall(r"\bFROM\s+(\S+)", sql):
                assert source == "(" or source.startswith("${database}."), source
            assert "$__timeFilter(" in sql


def test_queue_dashboard_covers_lag_and_findings_tables() -> None:
    text = (GRAFANA / "filas-queues.json").read_text(encoding="utf-8")
    assert "${database}.filas_monitoring_lag" in text
    assert "${database}.filas_monitoring_findings" in text
