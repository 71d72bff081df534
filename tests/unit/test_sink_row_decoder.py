"""The compiled row decoder yields exactly the general path's rows: fastavro + row builder."""

from __future__ import annotations

import io
import random
import string
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from consumers.clickhouse.row_decoder import Unsupported, compile_row_decoder
from consumers.clickhouse.tables import Table, build_tables
from filas.catalog import Catalog
from schemas.catalog import SchemaCatalog
from schemas.samples import sample_records

SCHEMAS = SchemaCatalog.load()
TABLES = build_tables(Catalog.build(), SCHEMAS)
COMPILED = sorted(name for name, t in TABLES.items() if t.decode_row is not None)
LINEAGE = ("topic", 3, 42, 1_700_000_000_000)


def general_row(table: Table, body: bytes) -> tuple[Any, ...]:
    schema = SCHEMAS.get(table.topic.value_schema).parsed
    return table.row(schemaless_reader(io.BytesIO(body), schema, None), *LINEAGE)


def encode(table: Table, record: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, SCHEMAS.get(table.topic.value_schema).parsed, record)
    return buffer.getvalue()


def random_datum(schema: Any, named: Mapping[str, Any], rng: random.Random) -> Any:
    if isinstance(schema, str):
        if schema in named:
            return random_datum(named[schema], named, rng)
        return {
            "null": lambda: None,
            "boolean": lambda: rng.random() < 0.5,
            "int": lambda: rng.randint(-(2**31), 2**31 - 1),
            "long": lambda: rng.choice([0, -1, 63, 64, -65, rng.randint(-(2**63), 2**63 - 1)]),
            "float": lambda: rng.uniform(-1e6, 1e6),
            "double": lambda: rng.uniform(-1e12, 1e12),
            "string": lambda: "".join(
                rng.choice(string.printable + "çãé€😀") for _ in range(rng.randint(0, 300))
            ),
            "bytes": lambda: rng.randbytes(rng.randint(0, 40)),
        }[schema]()
    if isinstance(schema, list):
        return random_datum(rng.choice(schema), named, rng)
    logical = schema.get("logicalType")
    if logical == "uuid":
        return (
            str(uuid.UUID(int=rng.getrandbits(128))).upper()
            if rng.random() < 0.3
            else str(uuid.uuid4())
        )
    if logical == "timestamp-millis":
        return rng.randint(-(10**12), 4 * 10**12)
    if logical == "timestamp-micros":
        return rng.randint(-(10**15), 4 * 10**15)
    kind = schema["type"]
    if kind in ("record", "error"):
        return {f["name"]: random_datum(f["type"], named, rng) for f in schema["fields"]}
    if kind == "enum":
        return rng.choice(schema["symbols"])
    if kind == "array":
        return [random_datum(schema["items"], named, rng) for _ in range(rng.randint(0, 5))]
    if kind == "map":
        return {
            f"k{i}-{rng.random()}": random_datum(schema["values"], named, rng)
            for i in range(rng.randint(0, 5))
        }
    if kind == "fixed":
        return rng.randbytes(schema["size"])
    return random_datum(kind, named, rng)


def test_most_tables_compile() -> None:
    assert "radius.accounting" in COMPILED
    assert "radius.auth-decisions" in COMPILED
    assert len(COMPILED) >= len(TABLES) * 2 // 3


@pytest.mark.parametrize("name", COMPILED)
def test_same_rows_as_fastavro_on_samples_and_random_records(name: str) -> None:
    table = TABLES[name]
    assert table.decode_row is not None
    schema = SCHEMAS.get(table.topic.value_schema)
    records = sample_records(schema.parsed, schema.named_types)
    rng = random.Random(name)
    records += [random_datum(schema.parsed, schema.named_types, rng) for _ in range(200)]
    for record in records:
        body = encode(table, record)
        # A header in front, as the sink sees it: the decoder starts at an offset.
        assert table.fast_row(b"\0HEAD" + body, 5, *LINEAGE) == general_row(table, body)


@pytest.mark.parametrize("name", ["radius.accounting", "radius.auth-decisions", "net.alerts"])
def test_truncated_or_corrupt_bodies_fail_like_fastavro(name: str) -> None:
    table = TABLES[name]
    assert table.decode_row is not None
    schema = SCHEMAS.get(table.topic.value_schema)
    body = encode(table, sample_records(schema.parsed, schema.named_types)[1])
    for cut in range(len(body)):
        truncated = body[:cut]
        with pytest.raises(Exception):  # noqa: B017, PT011 - fastavro raises several kinds
            general_row(table, truncated)
        with pytest.raises((EOFError, IndexError, ValueError, UnicodeDecodeError)):
            table.decode_row(truncated, 0)


def test_unsupported_shapes_fall_back() -> None:
    union3 = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "x", "type": ["null", "string", "long"]}],
    }
    with pytest.raises(Unsupported):
        compile_row_decoder(union3, [], "r")
    assert TABLES["campaign.delivery-results"].decode_row is None  # decimal cost
