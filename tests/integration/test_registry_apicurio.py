"""The registry client and serde against the real registry (Apicurio's Confluent-compatible API).

Each test uses its own topic prefix, so subjects never collide across tests or sessions.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from filas.catalog import Catalog
from filas.catalog.network import PING_RESULTS
from filas.errors import RegistryError
from filas.settings import Settings
from schemas.catalog import ParsedSchema, SchemaCatalog
from schemas.registry_client import SchemaRegistry
from schemas.serde import AvroSerde

pytestmark = pytest.mark.integration

SCHEMAS = SchemaCatalog.load()


def _variant(base: ParsedSchema, change: Any) -> ParsedSchema:
    source = json.loads(base.canonical)
    change(source)
    parsed = parse_schema(source)
    return ParsedSchema(
        fullname=base.fullname,
        parsed=parsed,
        canonical=json.dumps(source),
        fingerprint=fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"),
    )


def _ping() -> dict[str, Any]:
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": 1_764_850_000_000,
            "source_system": "pinger",
        },
        "device_id": "olt-centro-01",
        "target_ip": "10.50.0.2",
        "probes_sent": 5,
        "probes_received": 0,
        "loss_ratio": 1.0,
        "probed_at": 1_764_850_000_000,
        "pinger_instance": "pinger-1",
    }


def test_register_all_sets_compatibility_and_is_idempotent(
    platform: Settings, unique_name: str
) -> None:
    registry = SchemaRegistry(platform.registry)
    catalog = Catalog.build(prefix=unique_name)
    first = registry.register_all(catalog, SCHEMAS)
    assert len(first) == len(catalog)
    assert all(schema_id > 0 for schema_id in first.values())
    # A fresh client (no caches) gets the same ids back: registration is idempotent.
    assert SchemaRegistry(platform.registry).register_all(catalog, SCHEMAS) == first
    spec = catalog.resolve(PING_RESULTS)
    assert registry.compatibility(spec.name, spec.value_schema) == platform.registry.compatibility


def test_records_round_trip_between_independent_clients(
    platform: Settings, unique_name: str
) -> None:
    spec = Catalog.build(prefix=unique_name).resolve(PING_RESULTS)
    producer = AvroSerde.for_topic(spec, SCHEMAS, SchemaRegistry(platform.registry))
    data = producer.serialize(_ping())
    # The consumer never registered anything: it fetches the writer schema by id.
    consumer_registry = SchemaRegistry(platform.registry)
    current = SCHEMAS.get(spec.value_schema)
    consumer = AvroSerde(spec, current, 0, consumer_registry)
    record = consumer.deserialize(data)
    assert record["device_id"] == "olt-centro-01"
    assert record["rtt_avg_ms"] is None
    # A read-only client finds the same id by lookup, without registering.
    reader = AvroSerde.for_topic(spec, SCHEMAS, SchemaRegistry(platform.registry), register=False)
    assert reader.schema_id == producer.schema_id


def test_registry_rejects_a_breaking_change_and_accepts_a_compatible_one(
    platform: Settings, unique_name: str
) -> None:
    registry = SchemaRegistry(platform.registry)
    spec = Catalog.build(prefix=unique_name).resolve(PING_RESULTS)
    current = SCHEMAS.get(spec.value_schema)
    old_id = registry.register(spec.name, current)

    breaking = _variant(
        current,
        lambda s: s["fields"].append({"name": "vlan", "type": "int", "doc": "VLAN id."}),
    )
    assert registry.is_compatible(spec.name, breaking) is False
    with pytest.raises(RegistryError) as caught:
        registry.register(spec.name, breaking)
    assert caught.value.code == "schema_incompatible"
    assert caught.value.retriable is False

    compatible = _variant(
        current,
        lambda s: s["fields"].append(
            {"name": "vlan", "type": ["null", "int"], "default": None, "doc": "VLAN id."}
        ),
    )
    assert registry.is_compatible(spec.name, compatible) is True
    new_id = registry.register(spec.name, compatible)
    assert new_id != old_id

    # A record from the old version reads with the new one (the new field takes its default).
    old_serde = AvroSerde(spec, current, old_id, registry)
    new_serde = AvroSerde(spec, compatible, new_id, SchemaRegistry(platform.registry))
    assert new_serde.deserialize(old_serde.serialize(_ping()))["vlan"] is None


def test_unreachable_registry_is_a_retriable_error(platform: Settings) -> None:
    settings = platform.registry.model_copy(update={"url": "http://127.0.0.1:1/apis/ccompat/v7"})
    with pytest.raises(RegistryError) as caught:
        SchemaRegistry(settings).register("unreachable", SCHEMAS.get(PING_RESULTS.value_schema))
    assert caught.value.retriable is True
