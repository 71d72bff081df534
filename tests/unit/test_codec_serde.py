"""AvroSerde against confluent's in-process ``mock://`` registry: round trips, old writers,
field-naming validation errors and decode errors."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from filas.catalog import Catalog
from filas.catalog.campaigns import DELIVERY_RESULTS
from filas.catalog.radius import AUTH_DECISIONS
from filas.errors import DecodeError, ValidationError
from filas.settings import RegistrySettings
from schemas.catalog import ParsedSchema, SchemaCatalog
from schemas.registry_client import SchemaRegistry
from schemas.serde import AvroSerde
from schemas.wire import frame

SCHEMAS = SchemaCatalog.load()


@pytest.fixture
def registry() -> SchemaRegistry:
    return SchemaRegistry(RegistrySettings(url=f"mock://{uuid.uuid4()}"))


def decision() -> dict[str, Any]:
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": 1_764_850_000_000,
            "source_system": "radius-gateway",
            "correlation_id": None,
        },
        "login": "maria.souza@fibra",
        "request_event_id": str(uuid.uuid4()),
        "decision": "reject",
        "reason": "blocked_non_payment",
        "reply_message": "Contrato bloqueado por inadimplencia",
        "reply_attributes": {"Framed-Pool": "pool-bloqueio"},
        "contract_id": "48213",
        "pool": "pool-bloqueio",
        "framed_ip_address": None,
        "rate_limit": "1M/1M",
        "nas_ip_address": "10.20.0.1",
        "latency_us": 1840,
        "decided_at": 1_764_850_000_002,
        "gateway_instance": "radius-gw-1",
    }


def test_round_trip_returns_logical_types(registry: SchemaRegistry) -> None:
    serde = AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)
    record = decision()
    data = serde.serialize(record)
    assert data[:5] == b"\x00" + serde.schema_id.to_bytes(4, "big")
    back = serde.deserialize(data)
    assert back["envelope"]["event_id"] == uuid.UUID(record["envelope"]["event_id"])
    assert back["decided_at"] == dt.datetime(2025, 12, 4, 12, 6, 40, 2000, tzinfo=dt.UTC)
    assert back["reason"] == "blocked_non_payment"
    # What deserialize returns serializes again (consumers re-publish enriched records).
    assert serde.deserialize(serde.serialize(back)) == back


def test_decimal_money_round_trips(registry: SchemaRegistry) -> None:
    serde = AvroSerde.for_topic(DELIVERY_RESULTS, SCHEMAS, registry)
    record = {
        "envelope": decision()["envelope"],
        "message_id": str(uuid.uuid4()),
        "campaign_id": str(uuid.uuid4()),
        "recipient_id": "10023",
        "channel": "sms",
        "status": "sent",
        "provider": "zenvia",
        "attempts": 1,
        "latency_ms": 320,
        "cost": Decimal("0.07"),
        "finished_at": 1_764_850_000_000,
    }
    assert serde.deserialize(serde.serialize(record))["cost"] == Decimal("0.07")


def test_buffer_reuse_does_not_leak_between_records(registry: SchemaRegistry) -> None:
    serde = AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)
    long_one = decision() | {"reply_message": "x" * 500}
    short_one = decision() | {"reply_message": None}
    first = serde.serialize(long_one)
    second = serde.serialize(short_one)
    assert len(second) < len(first)
    assert serde.deserialize(second)["reply_message"] is None


def test_bad_type_names_the_field(registry: SchemaRegistry) -> None:
    serde = AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)
    record = decision()
    record["envelope"]["occurred_at"] = "yesterday"
    with pytest.raises(ValidationError) as caught:
        serde.serialize(record)
    assert caught.value.field == "envelope.occurred_at"
    assert "field 'envelope.occurred_at'" in str(caught.value)


def test_missing_required_field_names_the_field(registry: SchemaRegistry) -> None:
    serde = AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)
    record = decision()
    del record["latency_us"]
    with pytest.raises(ValidationError) as caught:
        serde.serialize(record)
    assert caught.value.field == "latency_us"


def test_key_of_uses_the_spec_key_field(registry: SchemaRegistry) -> None:
    serde = AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)
    assert serde.key_of(decision()) == b"maria.souza@fibra"
    with pytest.raises(ValidationError, match="key field 'login'"):
        serde.key_of({})


def _older_auth_decision() -> ParsedSchema:
    """AuthDecision as an earlier release wrote it: without rate_limit."""
    current = SCHEMAS.get(AUTH_DECISIONS.value_schema)
    source = json.loads(current.canonical)
    source["fields"] = [f for f in source["fields"] if f["name"] != "rate_limit"]
    parsed = parse_schema(source)
    return ParsedSchema(
        fullname=current.fullname,
        parsed=parsed,
        canonical=json.dumps(source),
        fingerprint=fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"),
    )


def test_old_writer_version_resolves_to_current_reader(registry: SchemaRegistry) -> None:
    old = _older_auth_decision()
    old_serde = AvroSerde(
        AUTH_DECISIONS, old, registry.register(AUTH_DECISIONS.name, old), registry
    )
    serde = AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)
    assert old_serde.schema_id != serde.schema_id
    record = decision()
    del record["rate_limit"]
    back = serde.deserialize(old_serde.serialize(record))
    assert back["rate_limit"] is None  # the reader's default
    assert back["login"] == "maria.souza@fibra"


def test_garbage_is_a_decode_error(registry: SchemaRegistry) -> None:
    serde = AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)
    with pytest.raises(DecodeError, match="unknown magic"):
        serde.deserialize(b'{"login": "x"}')
    with pytest.raises(DecodeError, match="cannot decode Avro body"):
        serde.deserialize(frame(serde.schema_id, b"\x02\x04"))


def test_unknown_schema_id_is_a_decode_error(registry: SchemaRegistry) -> None:
    serde = AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)
    with pytest.raises(DecodeError, match="schema id 999 is not in the registry"):
        serde.deserialize(frame(999, b"\x00"))


def test_every_catalog_topic_gets_a_serde(registry: SchemaRegistry) -> None:
    for spec in Catalog.build():
        serde = AvroSerde.for_topic(spec, SCHEMAS, registry)
        assert serde.schema_id > 0


def test_serde_refuses_a_schema_of_another_topic(registry: SchemaRegistry) -> None:
    with pytest.raises(ValueError, match=r"carries ixc\.filas\.radius\.AuthDecision"):
        AvroSerde(AUTH_DECISIONS, SCHEMAS.get("ixc.filas.log.LogRecord"), 1, registry)
