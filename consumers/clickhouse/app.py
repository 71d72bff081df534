"""Composition root of the ClickHouse sink: real Kafka, registry and ClickHouse from Settings."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Consumer

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import MigrationReport, migrate
from consumers.clickhouse.sink import (
    DEFAULT_GROUP,
    ClickHouseSink,
    ProducerDeadLetters,
    SinkConfig,
    consumer_config,
)
from consumers.clickhouse.tables import Table, build_tables
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog
from filas.settings import Settings
from schemas.catalog import SchemaCatalog


def tables_for(settings: Settings, topics: Sequence[str] = ()) -> dict[str, Table]:
    return build_tables(Catalog.build(settings.topics.prefix), SchemaCatalog.load(), topics)


def run_migrations(settings: Settings, topics: Sequence[str] = ()) -> MigrationReport:
    clickhouse = ClickHouse(settings.clickhouse)
    try:
        return migrate(clickhouse, tables_for(settings, topics).values())
    finally:
        clickhouse.close()


def build_sink(
    settings: Settings,
    *,
    topics: Sequence[str] = (),
    group_id: str = DEFAULT_GROUP,
    config: SinkConfig | None = None,
) -> ClickHouseSink:
    """The sink for ``topics`` (catalog names; default: every event family)."""
    catalog = Catalog.build(settings.topics.prefix)
    tables = build_tables(catalog, SchemaCatalog.load(), topics)
    serdes = build_serdes(settings)
    producer = build_producer(settings, catalog=catalog, serdes=serdes)
    return ClickHouseSink(
        consumer=Consumer(consumer_config(settings.kafka, group_id)),
        # Its own user when configured (ClickHouseSettings.sink_user): migrations run as admin.
        clickhouse=ClickHouse(settings.clickhouse.as_sink()),
        tables=tables,
        serdes=serdes,
        dead_letters=ProducerDeadLetters(producer, catalog.dead_letter_for),
        config=config,
    )
