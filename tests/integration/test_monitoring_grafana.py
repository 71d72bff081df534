"""Every Grafana dashboard query runs on the real ClickHouse against the migrated tables."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from consumers.clickhouse.app import run_migrations
from consumers.clickhouse.client import ClickHouse
from filas.monitoring.grafana import DASHBOARDS
from filas.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(platform: Settings) -> Iterator[Settings]:
    database = f"grafana_{uuid.uuid4().hex[:10]}"
    ours = platform.model_copy(
        update={"clickhouse": platform.clickhouse.model_copy(update={"database": database})}
    )
    yield ours
    admin = ClickHouse(ours.clickhouse, database="default")
    admin.query(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()


def _expand(sql: str, database: str) -> str:
    """The plugin's macros, as the plugin expands them (a time range on the column)."""
    sql = sql.replace("${database}", f"`{database}`")
    return re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - 21600 AND \1 <= now()", sql)


def test_every_dashboard_query_runs(settings: Settings) -> None:
    run_migrations(settings)  # every family's table, as the sink creates them
    clickhouse = ClickHouse(settings.clickhouse)
    try:
        ran = 0
        for build in DASHBOARDS.values():
            for panel in build()["panels"]:
                for target in panel["targets"]:
                    sql = _expand(target["rawSql"], settings.clickhouse.database)
                    assert "$" not in sql, sql
                    clickhouse.query(sql)  # raises on an unknown table/column or bad SQL
                    ran += 1
        assert ran >= 10
    finally:
        clickhouse.close()
