"""SchemaRegistry against confluent's in-process mock: subjects, caching, errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from filas.catalog import Catalog
from filas.catalog.network import ALERTS
from filas.errors import RegistryError
from filas.settings import RegistrySettings, SubjectStrategy
from schemas.catalog import SchemaCatalog
from schemas.registry_client import SchemaRegistry, subject_for

SCHEMAS = SchemaCatalog.load()


def _registry(strategy: SubjectStrategy = SubjectStrategy.TOPIC_NAME) -> SchemaRegistry:
    return SchemaRegistry(RegistrySettings(url=f"mock://{uuid.uuid4()}", subject_strategy=strategy))


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        (SubjectStrategy.TOPIC_NAME, "net.alerts-value"),
        (SubjectStrategy.RECORD_NAME, "ixc.filas.network.Alert"),
        (SubjectStrategy.TOPIC_RECORD_NAME, "net.alerts-ixc.filas.network.Alert"),
    ],
)
def test_subject_strategies(strategy: SubjectStrategy, subject: str) -> None:
    assert subject_for(strategy, "net.alerts", "ixc.filas.network.Alert") == subject
    assert _registry(strategy).subject("net.alerts", "ixc.filas.network.Alert") == subject


def test_register_is_idempotent_and_cached() -> None:
    registry = _registry()
    schema = SCHEMAS.get(ALERTS.value_schema)
    first = registry.register(ALERTS.name, schema)
    assert registry.register(ALERTS.name, schema) == first
    assert registry.writer_schema(first) is schema.parsed


def test_writer_schema_is_fetched_by_id_and_cached() -> None:
    registry = _registry()
    schema_id = registry.register(ALERTS.name, SCHEMAS.get(ALERTS.value_schema))
    reader = SchemaRegistry(registry.settings, client=registry._client)
    fetched = reader.writer_schema(schema_id)
    assert fetched["name"] == "ixc.filas.network.Alert"
    assert reader.writer_schema(schema_id) is fetched


def test_register_all_covers_every_topic_and_dead_letter_queue() -> None:
    catalog = Catalog.build(prefix="t1.")
    registered = _registry().register_all(catalog, SCHEMAS)
    assert set(registered) == {f"{spec.name}-value" for spec in catalog}
    assert "t1.net.alerts.dlq-value" in registered
    registry = _registry()
    registry.register_all(catalog, SCHEMAS)
    dlq_id = registry.register_all(catalog, SCHEMAS)["t1.net.alerts.dlq-value"]
    assert registry.writer_schema(dlq_id)["name"] == "ixc.filas.dlq.DeadLetter"


class _Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return fail


@pytest.mark.parametrize(
    ("error", "code", "retriable"),
    [
        (SchemaRegistryError(409, 409, "incompatible"), "schema_incompatible", False),
        (SchemaRegistryError(404, 40403, "not found"), "not_found", False),
        (SchemaRegistryError(503, 50003, "unavailable"), "registry", True),
        (SchemaRegistryError(422, 42201, "invalid schema"), "registry", False),
    ],
)
def test_registry_errors_are_wrapped_with_facts(
    error: Exception, code: str, retriable: bool
) -> None:
    registry = SchemaRegistry(
        RegistrySettings(url="http://127.0.0.1:1/apis/ccompat/v7"), client=_Failing(error)
    )
    with pytest.raises(RegistryError) as caught:
        registry.register(ALERTS.name, SCHEMAS.get(ALERTS.value_schema))
    assert caught.value.code == code
    assert caught.value.retriable is retriable
    assert caught.value.__cause__ is error


def test_unreachable_registry_is_retriable() -> None:
    from confluent_kafka.schema_registry.common._httpx_compat import httpx

    registry = SchemaRegistry(
        RegistrySettings(url="http://127.0.0.1:1/apis/ccompat/v7"),
        client=_Failing(httpx.ConnectError("connection refused")),
    )
    with pytest.raises(RegistryError) as caught:
        registry.writer_schema(12)
    assert caught.value.code == "registry_unavailable"
    assert caught.value.retriable


def test_lookup_finds_registered_schema_and_reports_missing_one() -> None:
    registry = _registry()
    schema = SCHEMAS.get(ALERTS.value_schema)
    with pytest.raises(RegistryError) as caught:
        registry.lookup(ALERTS.name, schema)
    assert caught.value.code == "not_found"
    schema_id = registry.register(ALERTS.name, schema)
    reader = SchemaRegistry(registry.settings, client=registry._client)
    assert reader.lookup(ALERTS.name, schema) == schema_id
