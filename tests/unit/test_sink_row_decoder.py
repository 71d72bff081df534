"""The compiled row decoder yields exactly the general path's rows: fastavro + row builder."""

from __future__ import annotations

import io
import random
import string
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.clickhouse.columnar import BatchDecodeError, ColumnarDecoder
from consumers.clickhouse.columns import columns_for_schema
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
        primitives: dict[str, Callable[[], Any]] = {
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
        }
        return primitives[schema]()
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


# -- the native batch decoder (consumers/clickhouse/columnar.py) ---------------------------------

HEADER = b"\x00\x00\x00\x07\x11"
NATIVE = sorted(name for name, t in TABLES.items() if t.decode_columns is not None)


def native_rows(table: Table, bodies: list[bytes]) -> list[tuple[Any, ...]]:
    """Rows from the native decoder, lineage appended as the sink does."""
    assert table.decode_columns is not None
    columns = table.decode_columns.decode(HEADER, [HEADER + b for b in bodies])
    assert all(len(c) == len(bodies) for c in columns)
    return [(*values, *LINEAGE) for values in zip(*columns, strict=True)]


def test_every_compiled_table_decodes_natively() -> None:
    assert NATIVE == COMPILED


@pytest.mark.parametrize("name", NATIVE)
def test_native_columns_equal_the_compiled_and_general_rows(name: str) -> None:
    table = TABLES[name]
    schema = SCHEMAS.get(table.topic.value_schema)
    records = sample_records(schema.parsed, schema.named_types)
    rng = random.Random(f"native {name}")
    records += [random_datum(schema.parsed, schema.named_types, rng) for _ in range(300)]
    bodies = [encode(table, record) for record in records]
    rows = native_rows(table, bodies)
    assert rows == [table.fast_row(b, 0, *LINEAGE) for b in bodies]
    assert rows == [general_row(table, b) for b in bodies]
    # Any batch size, one record included.
    assert native_rows(table, bodies[:1]) == rows[:1]


@pytest.mark.parametrize("name", NATIVE)
def test_native_columns_of_hypothesis_records(name: str) -> None:
    table = TABLES[name]
    schema = SCHEMAS.get(table.topic.value_schema)

    @given(st.lists(st.integers(min_value=0, max_value=2**32), min_size=1, max_size=20))
    @settings(max_examples=15, deadline=None)
    def check(seeds: list[int]) -> None:
        bodies = [
            encode(table, random_datum(schema.parsed, schema.named_types, random.Random(s)))
            for s in seeds
        ]
        assert native_rows(table, bodies) == [general_row(table, b) for b in bodies]

    check()


def _poisons(table: Table, body: bytes) -> list[tuple[str, bytes]]:
    return [
        ("truncated", body[: len(body) // 2]),
        ("trailing byte", body + b"\x00"),
        ("trailing record", body + HEADER + body),
        ("empty", b""),
        ("garbage", b"garbage"),
    ]


@pytest.mark.parametrize("name", ["radius.accounting", "radius.auth-decisions", "net.alerts"])
def test_a_poison_body_fails_the_whole_batch(name: str) -> None:
    table = TABLES[name]
    assert table.decode_columns is not None
    schema = SCHEMAS.get(table.topic.value_schema)
    bodies = [encode(table, r) for r in sample_records(schema.parsed, schema.named_types)]
    for label, poison in _poisons(table, bodies[1]):
        for at in (0, len(bodies) // 2, len(bodies)):
            batch = [HEADER + b for b in bodies]
            batch.insert(at, HEADER + poison)
            with pytest.raises(BatchDecodeError):
                table.decode_columns.decode(HEADER, batch)
            assert label
    # Another writer's header among them fails the batch too (the sink splits those off).
    with pytest.raises(BatchDecodeError):
        table.decode_columns.decode(HEADER, [b"\x00\x00\x00\x00\x02" + bodies[0]])


def test_invalid_utf8_enum_index_and_huge_timestamps_fail_the_batch() -> None:
    table = TABLES["radius.accounting"]
    assert table.decode_columns is not None
    assert table.decode_row is not None
    schema = SCHEMAS.get(table.topic.value_schema)
    record = sample_records(schema.parsed, schema.named_types)[1]
    login = record["login"].encode()
    body = encode(table, record)
    bad_utf8 = body.replace(login, b"\xff" * len(login), 1)
    with pytest.raises(BatchDecodeError):
        table.decode_columns.decode(HEADER, [HEADER + bad_utf8])
    with pytest.raises(UnicodeDecodeError):
        table.decode_row(bad_utf8, 0)
    # A timestamp beyond 2**53 ms: f64 division may round differently; the batch falls back.
    huge = encode(table, record | {"event_at": 2**60})
    with pytest.raises(BatchDecodeError):
        table.decode_columns.decode(HEADER, [HEADER + huge])


def test_uuids_are_canonicalised_and_booleans_read_as_the_row_decoder() -> None:
    table = TABLES["radius.accounting"]
    schema = SCHEMAS.get(table.topic.value_schema)
    record = sample_records(schema.parsed, schema.named_types)[1]
    event_id = "A1B2C3D4-0000-4000-8000-00000000ABCD"
    body = encode(table, record | {"envelope": record["envelope"] | {"event_id": event_id}})
    (row,) = native_rows(table, [body])
    assert row == general_row(table, body)
    assert row[0] == event_id.lower()


def test_a_synthetic_schema_with_every_shape_reads_like_the_row_decoder() -> None:
    """Booleans written as any non-zero byte, enums, maps, arrays, nullable scalars, micros."""
    schema: dict[str, Any] = {
        "type": "record",
        "name": "S",
        "namespace": "t",
        "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "ok", "type": "boolean"},
            {"name": "maybe", "type": ["null", "boolean"], "default": None},
            {"name": "n", "type": "int", "default": 0},
            {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["a", "b", "c"]}},
            {"name": "kinds", "type": ["null", "K"]},
            {"name": "tags", "type": {"type": "array", "items": "K"}},
            {"name": "flags", "type": {"type": "array", "items": "boolean"}},
            {"name": "labels", "type": {"type": "map", "values": "string"}},
            {"name": "raw", "type": ["bytes", "null"]},
            {"name": "f", "type": "float"},
            {"name": "api_token", "type": "string"},
        ],
    }
    columns = columns_for_schema(schema)
    decode_row = compile_row_decoder(schema, columns, "s")
    decoder = ColumnarDecoder(schema, columns, "s")
    parsed = parse_schema(schema)
    rng = random.Random(7)
    records = [random_datum(parsed, {"t.K": schema["fields"][4]["type"]}, rng) for _ in range(200)]
    bodies = []
    for record in records:
        buffer = io.BytesIO()
        schemaless_writer(buffer, parsed, record)
        bodies.append(buffer.getvalue())
    decoder.set_sentinel_body(bodies[0])
    # "ok" is the byte after the timestamp's varint: write some true ones as 2 (still true).
    for i, body in enumerate(bodies):
        at = next(k for k, byte in enumerate(body) if byte < 0x80) + 1
        if body[at] == 1 and i % 2:
            bodies[i] = body[:at] + b"\x02" + body[at + 1 :]
    assert any(b"\x02" in b for b in bodies)
    expected = [decode_row(b, 0) for b in bodies]
    got = decoder.decode(HEADER, [HEADER + b for b in bodies])
    assert [list(v) for v in zip(*got, strict=True)] == expected
    assert "api_token" not in [c.name for c in columns]
