"""Composition root: builds the real adapters from Settings. Tests pass fakes instead."""

from __future__ import annotations

from filas.catalog import Catalog, TopicSpec
from filas.settings import Settings
from producers.sdk import EventProducer
from schemas.catalog import SchemaCatalog
from schemas.registry_client import SchemaRegistry
from schemas.serde import AvroSerde


class Serdes:
    """One AvroSerde per topic, built (and its schema registered) on first use, then cached."""

    def __init__(self, schemas: SchemaCatalog, registry: SchemaRegistry) -> None:
        self.schemas = schemas
        self.registry = registry
        self._by_topic: dict[str, AvroSerde] = {}

    def __call__(self, spec: TopicSpec) -> AvroSerde:
        serde = self._by_topic.get(spec.name)
        if serde is None:
            serde = AvroSerde.for_topic(spec, self.schemas, self.registry)
            self._by_topic[spec.name] = serde
        return serde

    def close(self) -> None:
        self.registry.close()


def build_serdes(settings: Settings, schemas: SchemaCatalog | None = None) -> Serdes:
    return Serdes(schemas or SchemaCatalog.load(), SchemaRegistry(settings.registry))


def build_producer(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    serdes: Serdes | None = None,
    connect_timeout_s: float = 10.0,
) -> EventProducer:
    """The SDK producer wired to the configured cluster and registry."""
    return EventProducer(
        settings.kafka,
        catalog or Catalog.build(settings.topics.prefix),
        serdes or build_serdes(settings),
        connect_timeout_s=connect_timeout_s,
    )
