"""The named analyst queries: headers, parameters and table-name rendering (no server)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from consumers.clickhouse import analytics
from consumers.clickhouse.tables import build_tables
from filas.catalog import Catalog
from filas.errors import ValidationError
from schemas.catalog import SchemaCatalog


def test_every_query_declares_its_parameters_and_reads_known_tables() -> None:
    known = set(analytics.table_names(Catalog.build()))
    assert known == {t.name for t in build_tables(Catalog.build(), SchemaCatalog.load()).values()}
    assert len(analytics.queries()) >= 11
    for query in analytics.queries().values():
        assert {"start", "end"} <= set(query.params), query.name
        used = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", query.sql))
        assert used, query.name
        assert used <= known, f"{query.name} reads unknown tables {used - known}"


def test_render_prefixes_table_names_only() -> None:
    catalog = Catalog.build("t1-")
    sql = analytics.render(analytics.get("campaign_funnel"), catalog)
    assert "FROM t1_campaign_messages_bulk" in sql
    assert "FROM t1_campaign_messages_transactional" in sql
    assert "FROM t1_campaign_delivery_results FINAL" in sql
    assert "t1_campaign_id" not in sql  # a column, not a table
    assert analytics.render(analytics.get("mttr"), Catalog.build()) == analytics.get("mttr").sql


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def query_with_columns(
        self, sql: str, params: dict[str, Any]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.calls.append((sql, params))
        return ["a", "b"], [(1, 2)]


def test_run_passes_values_as_parameters_and_checks_them() -> None:
    recorder = _Recorder()
    params = {"start": "2026-01-01 00:00:00", "end": "2026-01-02 00:00:00", "limit": 5}
    result = analytics.run(recorder, "top_reject_reasons", Catalog.build(), params)  # type: ignore[arg-type]
    assert result.dicts() == [{"a": 1, "b": 2}]
    sql, sent = recorder.calls[0]
    assert sent == params
    assert "2026-01-01" not in sql
    with pytest.raises(ValidationError, match="missing"):
        analytics.run(recorder, "top_reject_reasons", Catalog.build(), {"start": 1})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unknown analytics query"):
        analytics.get("nope")


def test_docs_show_every_query_as_shipped() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text()
    for query in analytics.queries().values():
        assert f"## {query.name}\n" in doc, query.name
        assert query.sql.rstrip() in doc, f"docs/analytics.md shows an old {query.name}"
