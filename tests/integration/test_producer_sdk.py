"""The producer SDK against real Kafka and the real registry: what is acked can be read back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer

from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.radius import ACCOUNTING
from filas.errors import BrokerUnavailableError, UnknownTopicError, ValidationError
from filas.settings import KafkaSettings, Settings
from producers.async_sdk import AsyncEventProducer
from producers.envelope import envelope
from producers.sdk import EventProducer

pytestmark = pytest.mark.integration


def accounting(login: str, seq: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "envelope": envelope("test"),
        "login": login,
        "status_type": "interim_update",
        "session_id": f"S{seq}",
        "nas_ip_address": "10.0.0.1",
        "input_octets": seq,
        "event_at": now,
        "received_at": now,
    }


def consume_all(settings: Settings, spec: TopicSpec, expected: int) -> list[Any]:
    consumer = Consumer(
        settings.kafka.client_config()
        | {"group.id": f"read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([spec.name])
    messages = []
    deadline = time.monotonic() + 60
    while len(messages) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            messages.append(msg)
    consumer.close()
    return messages


@pytest.fixture
def catalog(platform: Settings, unique_name: str) -> Catalog:
    catalog = Catalog.build(unique_name)
    spec = catalog.resolve(ACCOUNTING)
    TopicAdmin(platform.kafka).apply(catalog.only(spec))
    return catalog


def test_acked_events_decode_back_in_per_key_order(platform: Settings, catalog: Catalog) -> None:
    spec = catalog.resolve(ACCOUNTING)
    logins = [f"cliente{i}@fibra" for i in range(20)]
    with build_producer(platform, catalog=catalog) as producer:
        for seq in range(50):
            for login in logins:
                producer.emit(ACCOUNTING, accounting(login, seq))
    messages = consume_all(platform, spec, 1000)
    assert len(messages) == 1000

    serde = build_serdes(platform)(spec)
    partitions: dict[str, set[int]] = defaultdict(set)
    sequence: dict[str, list[int]] = defaultdict(list)
    for msg in messages:
        assert msg.value()[0] == 0  # Confluent magic byte
        record = serde.deserialize(msg.value())
        assert msg.key().decode() == record["login"]
        partitions[record["login"]].add(msg.partition())
        sequence[record["login"]].append(record["input_octets"])
    for login in logins:
        assert len(partitions[login]) == 1, "one key must stay on one partition"
        assert sequence[login] == list(range(50)), "one key's events must stay in order"


def test_schema_violation_names_the_field_and_sends_nothing(
    platform: Settings, catalog: Catalog
) -> None:
    bad = accounting("x@fibra", 1) | {"input_octets": "lots"}
    with (
        build_producer(platform, catalog=catalog) as producer,
        pytest.raises(ValidationError) as info,
    ):
        producer.emit(ACCOUNTING, bad)
    assert info.value.field == "input_octets"
    assert consume_all(platform, catalog.resolve(ACCOUNTING), 1) == []


def test_unknown_topic_is_a_clear_error(platform: Settings, catalog: Catalog) -> None:
    with build_producer(platform, catalog=catalog) as producer:
        with pytest.raises(UnknownTopicError, match="known topics"):
            producer.emit("radius.does-not-exist", accounting("x", 1))
        # In the catalog but never applied to this cluster under this prefix.
        with pytest.raises(UnknownTopicError, match="filas topics apply"):
            producer.emit(f"{catalog.prefix}net.alerts", {"root_device_id": "d1"})


def test_broker_down_at_start_fails_fast(platform: Settings, catalog: Catalog) -> None:
    nowhere = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=r"127\.0\.0\.1:1"):
        EventProducer(nowhere, catalog, build_serdes(platform), connect_timeout_s=3)
    assert time.monotonic() - started < 15


def test_asyncio_emit_returns_the_ack(platform: Settings, catalog: Catalog) -> None:
    async def run() -> list[int]:
        async with AsyncEventProducer(build_producer(platform, catalog=catalog)) as producer:
            deliveries = await asyncio.gather(
                *(producer.emit(ACCOUNTING, accounting("async@fibra", i)) for i in range(100))
            )
        return [d.offset for d in deliveries]

    offsets = asyncio.run(run())
    assert sorted(offsets) == list(range(100))
