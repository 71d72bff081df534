"""The Native block written from polars buffers (native_block.py) lands exactly what the driver's
own ``columnar=True`` INSERT lands, for every table the sink decodes natively; a type it does
not cover ends the INSERT empty and the driver's path writes the columns."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import polars as pl
import pytest

from consumers.clickhouse import native_block
from consumers.clickhouse.client import ClickHouse, quote
from consumers.clickhouse.tables import Table
from filas.settings import Settings
from schemas.samples import sample_records
from tests.unit.test_sink_row_decoder import HEADER, NATIVE, SCHEMAS, TABLES, encode, random_datum

pytestmark = pytest.mark.integration

# Lengths around the LEB128 steps (1, 2 and 3 bytes), empty and non-ASCII strings.
SPECIAL_STRINGS = [
    "",
    "x" * 127,
    "y" * 128,
    "é" * 64,  # 128 bytes
    "z" * 16_383,
    "a" * 16_384,
    "çã€😀" * 1_500,  # 18,000 bytes
    "\x00\x01\n\t'\"\\",
]


@pytest.fixture
def clickhouse(platform: Settings) -> Iterator[ClickHouse]:
    database = f"native_{uuid.uuid4().hex[:10]}"
    ours = ClickHouse(platform.clickhouse, database=database)
    ours.ensure_database()
    yield ours
    ours.query(f"DROP DATABASE IF EXISTS {quote(database)}")
    ours.close()


def columns_of(table: Table, seed: str) -> list[pl.Series]:
    """Decoded data columns (samples + random records, special strings injected) + lineage."""
    assert table.decode_columns is not None
    schema = SCHEMAS.get(table.topic.value_schema)
    rng = random.Random(seed)
    records = sample_records(schema.parsed, schema.named_types)
    records += [random_datum(schema.parsed, schema.named_types, rng) for _ in range(60)]
    count = len(records)
    data = table.decode_columns.decode_series(HEADER, [HEADER + encode(table, r) for r in records])
    types = {c.name: c.type for c in table.all_columns}
    fixed: list[pl.Series] = []
    for column, series in zip(table.columns, data, strict=True):
        if "DateTime" in types[column.name]:
            series = series % 2**32  # random timestamps span before 1970 and after 2106
        elif series.dtype == pl.String:
            values = series.to_list()
            for i in range(0, count, 3):
                values[i] = SPECIAL_STRINGS[(i // 3) % len(SPECIAL_STRINGS)]
            series = pl.Series(values, dtype=pl.String)
        fixed.append(series)
    offsets = [*range(count - 1), 2**64 - 1]  # the largest UInt64
    partitions = [rng.choice([0, 1, 2**32 - 1]) for _ in range(count)]
    return [
        *fixed,
        pl.repeat(f"topic-{seed}", count, dtype=pl.String, eager=True),
        pl.Series(partitions, dtype=pl.Int64),
        pl.Series(offsets, dtype=pl.UInt64),
        pl.Series([rng.randint(-(2**63), 2**63 - 1) for _ in range(count)], dtype=pl.Int64),
    ]


def create_twins(clickhouse: ClickHouse, table: Table) -> tuple[str, str]:
    clickhouse.query(table.create_sql())
    twin = f"{table.name}__driver"
    clickhouse.query(f"CREATE TABLE {quote(twin)} AS {quote(table.name)}")
    return table.name, twin


def select_all(clickhouse: ClickHouse, name: str, columns: tuple[str, ...]) -> list[Any]:
    names = ", ".join(quote(c) for c in columns)
    return clickhouse.query(f"SELECT {names} FROM {quote(name)} ORDER BY _offset")  # noqa: S608


@pytest.mark.parametrize("name", NATIVE)
def test_native_block_lands_what_the_driver_lands(clickhouse: ClickHouse, name: str) -> None:
    table = TABLES[name]
    ours, twin = create_twins(clickhouse, table)
    series = columns_of(table, name)
    columns = table.insert_columns
    query = f"INSERT INTO {quote(ours)} ({', '.join(quote(c) for c in columns)}) VALUES"
    # Straight through native_block: NotCovered here would mean the driver's path was taken.
    sent = native_block.insert(clickhouse._client, query, columns, series, {})
    assert sent == len(series[0])
    clickhouse.insert_columns(twin, columns, [s.to_list() for s in series])
    got = select_all(clickhouse, ours, columns)
    assert len(got) == sent
    assert got == select_all(clickhouse, twin, columns)
    # And through the adapter (what the sink calls), into the same table: the same rows again.
    assert clickhouse.insert_columns(ours, columns, series) == sent
    assert clickhouse.query(f"SELECT count() FROM {quote(ours)}") == [(2 * sent,)]  # noqa: S608


def test_a_type_not_covered_falls_back_to_the_driver(
    clickhouse: ClickHouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    clickhouse.query(
        "CREATE TABLE t (d Date, s String, n Nullable(Int64), _offset UInt64) "
        "ENGINE = MergeTree ORDER BY _offset"
    )
    series = [
        pl.Series([date(2024, 1, 1), date(2024, 1, 2)]),  # Date: not written here
        pl.Series(["a", "é" * 200]),
        pl.Series([None, -3], dtype=pl.Int64),
        pl.Series([1, 2], dtype=pl.UInt64),
    ]
    columns = ("d", "s", "n", "_offset")
    with pytest.raises(native_block.NotCovered, match="Date"):
        native_block.insert(
            clickhouse._client, "INSERT INTO t (d, s, n, _offset) VALUES", columns, series, {}
        )
    assert clickhouse.query("SELECT count() FROM t") == [(0,)]  # ended empty, connection fine
    assert clickhouse.insert_columns("t", columns, series) == 2
    assert clickhouse.query("SELECT toString(d), s, n, _offset FROM t ORDER BY _offset") == [
        ("2024-01-01", "a", None, 1),
        ("2024-01-02", "é" * 200, -3, 2),
    ]

    # An encoding failure of its own is treated the same way: INSERT ended empty, the driver's
    # path writes the columns.
    def broken(_ch_type: str, _series: pl.Series) -> list[bytes]:
        raise ValueError("boom")

    monkeypatch.setattr(native_block, "encode", broken)
    rest = series[1:]
    with pytest.raises(native_block.NotCovered, match="ValueError: boom"):
        native_block.insert(
            clickhouse._client, "INSERT INTO t (s, n, _offset) VALUES", columns[1:], rest, {}
        )
    assert clickhouse.insert_columns("t", columns[1:], rest) == 2
    assert clickhouse.query("SELECT count() FROM t") == [(4,)]
    monkeypatch.undo()
    # A value its type cannot hold is not covered either (the driver decides what to do).
    with pytest.raises(native_block.NotCovered, match="out of range"):
        native_block.encode("UInt8", pl.Series([0, 256]))
