"""``filas clickhouse migrate``: create or extend the sink's tables, idempotently and recorded.

A missing table is created. An existing table gains the columns its current schema has and the
table lacks (a new optional Avro field), compared through ``system.columns`` because ClickHouse
18.16 has no ``ADD COLUMN IF NOT EXISTS``. Columns are never dropped or retyped here: a removed
field's column keeps its history, and a type change is reported for a human to decide. Every
statement applied is recorded in ``filas_schema_migrations`` with the schema fingerprint, so
what changed and when is queryable; running again applies nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from consumers.clickhouse.client import ClickHouse, quote
from consumers.clickhouse.tables import Table

MIGRATIONS_TABLE = "filas_schema_migrations"

_MIGRATIONS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {quote(MIGRATIONS_TABLE)}\n(\n"
    "    `table` String,\n"
    "    `schema_fingerprint` String,\n"
    "    `statement` String,\n"
    "    `applied_at` DateTime DEFAULT now()\n"
    ")\nENGINE = MergeTree()\nORDER BY (`table`, `applied_at`)"
)


@dataclass
class MigrationReport:
    created: list[str] = field(default_factory=list)
    added_columns: list[tuple[str, str]] = field(default_factory=list)
    type_mismatches: list[tuple[str, str, str, str]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.added_columns)


def existing_columns(clickhouse: ClickHouse, table: str) -> dict[str, str]:
    rows = clickhouse.query(
        "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(table)s",
        {"db": clickhouse.database, "table": table},
    )
    return {str(name): str(kind) for name, kind in rows}


def _record(clickhouse: ClickHouse, table: Table, statement: str) -> None:
    clickhouse.insert(
        MIGRATIONS_TABLE,
        ("table", "schema_fingerprint", "statement"),
        [(table.name, table.schema_fingerprint, statement)],
    )


def _declared_type(column_type: str) -> str:
    return column_type.split(" DEFAULT ", 1)[0]


def migrate(clickhouse: ClickHouse, tables: Iterable[Table]) -> MigrationReport:
    """Bring every table up to its schema; safe to run any number of times."""
    clickhouse.ensure_database()
    clickhouse.query(_MIGRATIONS_DDL)
    report = MigrationReport()
    for table in tables:
        have = existing_columns(clickhouse, table.name)
        if not have:
            statement = table.create_sql()
            clickhouse.query(statement)
            _record(clickhouse, table, statement)
            report.created.append(table.name)
            continue
        added = False
        for column in table.all_columns:
            current = have.get(column.name)
            if current is None:
                statement = table.add_column_sql(column)
                clickhouse.query(statement)
                _record(clickhouse, table, statement)
                report.added_columns.append((table.name, column.name))
                added = True
            elif current != _declared_type(column.type):
                report.type_mismatches.append(
                    (table.name, column.name, current, _declared_type(column.type))
                )
        if not added:
            report.unchanged.append(table.name)
    return report
