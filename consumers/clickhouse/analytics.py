"""Named analyst queries over the sink's tables (docs/analytics.md).

Each query is one file in ``consumers/clickhouse/views/<name>.sql``, written against the bare
table names (``radius_auth_decisions``) so an analyst can paste it into clickhouse-client after
replacing the ``%(param)s`` placeholders with literals. Its header comment says what it answers
and which parameters it takes (``-- params: start, end, ...``). Every query is plain SQL valid on
ClickHouse 18.16 and on current releases (``ANY LEFT JOIN ... USING``, no window functions).

``render`` rewrites the bare table names for a catalog prefix (an environment or a test);
``run`` executes a query through the ClickHouse adapter (values as driver parameters, never
formatted into the SQL) and returns rows as dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.tables import table_name
from filas.catalog import DEAD_LETTER_SCHEMA, Catalog
from filas.errors import ValidationError

_PARAMS = re.compile(r"^--\s*params:\s*(.+)$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    sql: str
    # First comment line: what the query answers.
    title: str
    params: tuple[str, ...]


def _parse(name: str, sql: str) -> NamedQuery:
    header = [line[2:].strip() for line in sql.splitlines() if line.startswith("--")]
    placeholders = tuple(dict.fromkeys(_PLACEHOLDER.findall(sql)))
    declared = _PARAMS.search(sql)
    if declared is None:
        raise ValidationError(f"analytics query {name}: no '-- params:' header")
    listed = {p.split("(")[0].strip() for p in re.split(r",(?![^(]*\))", declared.group(1))}
    if set(placeholders) != listed:
        raise ValidationError(
            f"analytics query {name}: header lists {sorted(listed)}, SQL uses "
            f"{sorted(placeholders)}"
        )
    title = header[0].split(": ")[0].rstrip(".") if header else name
    return NamedQuery(name=name, sql=sql, title=title, params=placeholders)


@cache
def queries() -> Mapping[str, NamedQuery]:
    """Every named query shipped in ``views/``, by name."""
    folder = resources.files("consumers.clickhouse") / "views"
    found: dict[str, NamedQuery] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            name = entry.name.removesuffix(".sql")
            found[name] = _parse(name, entry.read_text())
    return found


def get(name: str) -> NamedQuery:
    try:
        return queries()[name]
    except KeyError:
        known = ", ".join(queries())
        raise ValidationError(f"unknown analytics query {name!r}; known: {known}") from None


def table_names(catalog: Catalog) -> dict[str, str]:
    """Bare table name -> the catalog's (prefixed) table name, for every landed topic."""
    names: dict[str, str] = {}
    for spec in catalog:
        if spec.value_schema == DEAD_LETTER_SCHEMA:
            continue
        bare = spec.name.removeprefix(catalog.prefix)
        names[table_name(bare)] = table_name(spec.name)
    return names


def render(query: NamedQuery, catalog: Catalog) -> str:
    """The query's SQL with table names under the catalog's prefix."""
    if not catalog.prefix:
        return query.sql
    mapping = table_names(catalog)
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, mapping), key=len)[::-1]) + r")\b")
    return pattern.sub(lambda m: mapping[m.group(1)], query.sql)


@dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def run(clickhouse: ClickHouse, name: str, catalog: Catalog, params: Mapping[str, Any]) -> Result:
    """Run the named query with ``params`` (all of its declared parameters, nothing else)."""
    query = get(name)
    missing = set(query.params) - set(params)
    extra = set(params) - set(query.params)
    if missing or extra:
        raise ValidationError(
            f"analytics query {name} takes {list(query.params)}; missing {sorted(missing)}, "
            f"unexpected {sorted(extra)}"
        )
    columns, rows = clickhouse.query_with_columns(render(query, catalog), params)
    return Result(columns=tuple(columns), rows=rows)
