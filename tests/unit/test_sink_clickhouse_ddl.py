"""Avro -> ClickHouse mapping and DDL generation (no network)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from consumers.clickhouse.columns import Column, columns_for_schema, has_secret_fields
from consumers.clickhouse.errors import RowConversionError, UnsupportedSchemaError
from consumers.clickhouse.tables import build_table, build_tables, table_name
from filas.catalog import Catalog, TopicSpec
from schemas.catalog import SchemaCatalog
from schemas.samples import sample_records

# Types that do not exist on ClickHouse 18.16 (the Debian package) and must never be generated.
_TOO_NEW = re.compile(r"LowCardinality|DateTime64|\bTTL\b|\bMap\(|\bBool\b|\bJSON\b")


def by_name(columns: list[Column]) -> dict[str, Column]:
    return {c.name: c for c in columns}


SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "namespace": "ixc.filas.test",
    "fields": [
        {
            "name": "envelope",
            "type": {
                "type": "record",
                "name": "Env",
                "fields": [
                    {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
                    {
                        "name": "occurred_at",
                        "type": {"type": "long", "logicalType": "timestamp-millis"},
                    },
                ],
            },
        },
        {"name": "login", "type": "string"},
        {"name": "ok", "type": "boolean"},
        {"name": "n", "type": "int"},
        {"name": "big", "type": ["null", "long"], "default": None},
        {"name": "ratio", "type": "double"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
        {"name": "kind2", "type": ["null", "Kind"], "default": None},
        {
            "name": "price",
            "type": [
                "null",
                {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
            ],
            "default": None,
        },
        {
            "name": "seen_at",
            "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
            "default": None,
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "kinds", "type": {"type": "array", "items": "Kind"}, "default": []},
        {"name": "attrs", "type": {"type": "map", "values": "string"}, "default": {}},
        {"name": "either", "type": ["null", "string", "long"], "default": None},
        {"name": "password", "type": ["null", "string"], "default": None},
        {"name": "nas_secret", "type": "string"},
        {"name": "raw", "type": "bytes"},
    ],
}


def test_every_avro_type_maps_to_a_type_clickhouse_18_16_has() -> None:
    columns = by_name(columns_for_schema(SCHEMA))
    assert {name: c.type for name, c in columns.items()} == {
        "envelope_event_id": "String",
        "envelope_occurred_at": "DateTime",
        "envelope_occurred_at_ms": "UInt16",
        "login": "String",
        "ok": "UInt8",
        "n": "Int32",
        "big": "Nullable(Int64)",
        "ratio": "Float64",
        "kind": "String",
        "kind2": "Nullable(String)",
        "price": "Nullable(Decimal(12, 2))",
        "seen_at": "Nullable(DateTime)",
        "seen_at_ms": "Nullable(UInt16)",
        "tags": "Array(String)",
        "kinds": "Array(String)",
        "attrs_keys": "Array(String)",
        "attrs_values": "Array(String)",
        "either": "Nullable(String)",
        "raw": "String",
    }


def test_credentials_never_become_columns() -> None:
    names = {c.name for c in columns_for_schema(SCHEMA)}
    assert "password" not in names
    assert "nas_secret" not in names
    assert has_secret_fields(SCHEMA)
    assert not has_secret_fields({"type": "record", "name": "X", "fields": []})


def test_getters_turn_decoded_values_into_driver_values() -> None:
    columns = by_name(columns_for_schema(SCHEMA))
    stamp = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
    record = {
        "envelope": {"event_id": UUID(int=7), "occurred_at": stamp},
        "login": "ana@fibra",
        "ok": True,
        "n": 3,
        "big": None,
        "ratio": 0.5,
        "kind": "b",
        "kind2": None,
        "price": Decimal("99.90"),
        "seen_at": None,
        "tags": ["x", "y"],
        "kinds": [],
        "attrs": {"Framed-Pool": "p1", "Rate": "10M"},
        "either": 42,
        "password": "hunter2",
        "nas_secret": "s3cret",
        "raw": b"\x00\x01",
    }
    values = {name: c.get(record) for name, c in columns.items()}
    assert values["envelope_event_id"] == "00000000-0000-0000-0000-000000000007"
    assert values["envelope_occurred_at"] == int(stamp.timestamp())
    assert values["envelope_occurred_at_ms"] == 250
    assert values["ok"] == 1
    assert values["big"] is None
    assert values["price"] == Decimal("99.90")
    assert values["seen_at"] is None
    assert values["seen_at_ms"] is None
    assert values["attrs_keys"] == ["Framed-Pool", "Rate"]
    assert values["attrs_values"] == ["p1", "10M"]
    assert values["either"] == "42"
    assert values["raw"] == b"\x00\x01"
    assert "hunter2" not in repr(values)
    assert "s3cret" not in repr(values)


def test_every_catalog_family_gets_a_valid_table() -> None:
    catalog = Catalog.build()
    tables = build_tables(catalog, SchemaCatalog.load())
    assert "radius.accounting" in tables
    assert not any(name.endswith(".dlq") for name in tables)
    for table in tables.values():
        ddl = table.create_sql()
        assert "ENGINE = ReplacingMergeTree()" in ddl
        assert "PARTITION BY toYYYYMM(`envelope_occurred_at`)" in ddl
        assert table.order_by[-3:] == ("_topic", "_partition", "_offset")
        assert table.order_by[1] == "envelope_occurred_at"
        assert not _TOO_NEW.search(ddl), ddl
        types = {c.name: c.type for c in table.all_columns}
        for key in table.order_by:
            assert not types[key].startswith("Nullable"), (table.name, key)
        assert len(table.insert_columns) == len(set(table.insert_columns))


def test_order_by_fits_the_questions_asked() -> None:
    tables = build_tables(Catalog.build(), SchemaCatalog.load())
    assert tables["radius.accounting"].entity == "login"
    assert tables["net.ping-results"].entity == "device_id"
    assert tables["campaign.messages.bulk"].entity == "campaign_id"
    assert tables["campaign.messages.transactional"].entity == "campaign_id"
    assert tables["campaign.delivery-results"].entity == "campaign_id"


def test_prefixed_topics_get_prefixed_tables_with_the_same_layout() -> None:
    catalog = Catalog.build("t0abc-")
    tables = build_tables(catalog, SchemaCatalog.load(), ["campaign.messages.bulk"])
    table = tables["t0abc-campaign.messages.bulk"]
    assert table.name == "t0abc_campaign_messages_bulk"
    assert table.entity == "campaign_id"
    assert table_name("radius.auth-requests") == "radius_auth_requests"


def test_row_is_data_then_lineage_in_insert_column_order() -> None:
    schemas = SchemaCatalog.load()
    spec = Catalog.build().get("radius.auth-decisions")
    table = build_table(spec, schemas.get(spec.value_schema))
    schema = schemas.get(spec.value_schema)
    record = sample_records(schema.parsed, schema.named_types)[3]
    # What fastavro returns on read: logical types decoded.
    record["envelope"]["occurred_at"] = datetime(2026, 1, 2, tzinfo=UTC)
    record["decided_at"] = datetime(2026, 1, 2, tzinfo=UTC)
    row = table.row(record, "radius.auth-decisions", 4, 1234, 1_700_000_000_000)
    assert len(row) == len(table.insert_columns)
    assert row[-4:] == ("radius.auth-decisions", 4, 1234, 1_700_000_000_000)
    assert dict(zip(table.insert_columns, row, strict=True))["login"] == record["login"]


def test_a_record_of_the_wrong_shape_is_a_row_conversion_error() -> None:
    schemas = SchemaCatalog.load()
    spec = Catalog.build().get("radius.accounting")
    table = build_table(spec, schemas.get(spec.value_schema))
    with pytest.raises(RowConversionError):
        table.row({"envelope": {"occurred_at": "yesterday"}}, "t", 0, 0, 0)


def test_a_nullable_entity_cannot_be_a_key() -> None:
    schema = SchemaCatalog.load().get("ixc.filas.radius.AccountingRecord")
    spec = TopicSpec(
        name="x.y",
        value_schema=schema.fullname,
        key_field="nas_id",  # Nullable(String): not allowed in ORDER BY on 18.16
        partitions=1,
        description="",
    )
    with pytest.raises(UnsupportedSchemaError, match="Nullable"):
        build_table(spec, schema)


def _as_read(value: Any, schema: Any) -> Any:
    """What fastavro hands the sink: round-trip the sample through the real codec."""
    import io

    from fastavro import schemaless_reader, schemaless_writer

    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, value)
    buffer.seek(0)
    return schemaless_reader(buffer, schema, None)


def test_compiled_row_builder_equals_the_column_getters_for_every_family() -> None:
    schemas = SchemaCatalog.load()
    tables = build_tables(Catalog.build(), schemas)
    for table in tables.values():
        schema = schemas.get(table.topic.value_schema)
        for sample in sample_records(schema.parsed, schema.named_types):
            record = _as_read(sample, schema.parsed)
            expected = [c.get(record) for c in table.columns]
            row = table.row(record, "t", 1, 2, 3)
            assert list(row[: len(table.columns)]) == expected, table.name
            assert row[len(table.columns) :] == ("t", 1, 2, 3)
