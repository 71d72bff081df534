"""The compiled encoder must write exactly what fastavro writes, and refuse what it refuses."""

from __future__ import annotations

import io
import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from filas.catalog.radius import AUTH_DECISIONS
from filas.errors import ValidationError
from filas.settings import RegistrySettings
from schemas.catalog import ParsedSchema, SchemaCatalog
from schemas.fast_writer import Unsupported, compile_encoder
from schemas.registry_client import SchemaRegistry
from schemas.samples import sample_records
from schemas.serde import AvroSerde

SCHEMAS = SchemaCatalog.load()
RECORDS = sorted(s.fullname for s in SCHEMAS if s.parsed["type"] == "record")


def _fastavro(schema: Any, record: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


@pytest.mark.parametrize("fullname", RECORDS)
def test_bytes_identical_to_fastavro_on_every_sample(fullname: str) -> None:
    schema = SCHEMAS.get(fullname)
    encode = compile_encoder(schema.parsed, schema.named_types, b"HDR")
    for record in sample_records(schema.parsed, schema.named_types):
        assert encode(record) == b"HDR" + _fastavro(schema.parsed, record)


def _probe(fields: list[dict[str, Any]]) -> Any:
    return parse_schema({"type": "record", "name": "P", "namespace": "t", "fields": fields})


@pytest.mark.parametrize(
    ("field_type", "value"),
    [
        ("long", -1),
        ("long", 2**40),
        ("long", -(2**63)),
        ("int", 2**31 - 1),
        ("double", 3),
        ("float", 0.5),
        ("boolean", True),
        ("string", "x" * 300),
        ("bytes", b"\x00" * 70),
        ({"type": "array", "items": "long"}, list(range(70))),
        ({"type": "map", "values": "string"}, {"a": "b", "ç": "é"}),
        ({"type": "fixed", "name": "F", "size": 2}, b"ab"),
        ({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}, Decimal("-1.5")),
        ({"type": "string", "logicalType": "uuid"}, uuid.UUID(int=7)),
        (["string", "null"], None),
        (["string", "null"], "x"),
    ],
)
def test_edge_values_match_fastavro(field_type: Any, value: Any) -> None:
    schema = _probe([{"name": "f", "type": field_type}])
    assert compile_encoder(schema, {})({"f": value}) == _fastavro(schema, {"f": value})


@pytest.mark.parametrize(
    ("field_type", "value"),
    [
        ("int", 2**31),
        ("long", 2**63),
        ("long", "12"),
        ("string", 12),
        ("boolean", 1),
        ({"type": "enum", "name": "E", "symbols": ["a"]}, "b"),
        ({"type": "fixed", "name": "F", "size": 2}, b"abc"),
    ],
)
def test_bad_values_raise(field_type: Any, value: Any) -> None:
    schema = _probe([{"name": "f", "type": field_type}])
    with pytest.raises((TypeError, ValueError, KeyError, AttributeError)):
        compile_encoder(schema, {})({"f": value})


def test_missing_required_field_raises_and_optional_writes_null() -> None:
    schema = _probe([{"name": "a", "type": "string"}, {"name": "b", "type": ["null", "string"]}])
    encode = compile_encoder(schema, {})
    with pytest.raises(KeyError):
        encode({})
    assert encode({"a": "x"}) == _fastavro(schema, {"a": "x"})


@pytest.mark.parametrize(
    "fields",
    [
        [{"name": "f", "type": ["null", "string", "long"]}],
        [{"name": "f", "type": "bytes", "default": "\u00ff"}],
        [{"name": "next", "type": ["null", "t.P"]}],
    ],
)
def test_unsupported_shapes_are_left_to_fastavro(fields: list[dict[str, Any]]) -> None:
    schema = _probe(fields)
    with pytest.raises(Unsupported):
        compile_encoder(schema, schema["__named_schemas"])


def test_serde_falls_back_to_fastavro_for_unsupported_schemas() -> None:
    current = SCHEMAS.get(AUTH_DECISIONS.value_schema)
    source = dict(current.parsed)
    widened = [
        f | {"type": ["null", "string", "long"]} if f["name"] == "pool" else f
        for f in source["fields"]
    ]
    parsed = parse_schema(
        {k: v for k, v in source.items() if not k.startswith("__")} | {"fields": widened}
    )
    schema = ParsedSchema(current.fullname, parsed, current.canonical, "x")
    registry = SchemaRegistry(RegistrySettings(url=f"mock://{uuid.uuid4()}"))
    serde = AvroSerde(AUTH_DECISIONS, schema, 1, registry)
    record = sample_records(current.parsed, current.named_types)[3] | {"pool": 42}
    assert serde.serialize(record)[5:] == _fastavro(parsed, record)
    with pytest.raises(ValidationError, match="field 'latency_us'"):
        serde.serialize(record | {"latency_us": "slow"})
