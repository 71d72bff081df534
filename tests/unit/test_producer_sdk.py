"""Producer SDK behaviour against an in-memory fake of librdkafka's Producer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from filas.catalog import Catalog, TopicSpec
from filas.catalog.radius import ACCOUNTING
from filas.errors import (
    BackpressureTimeoutError,
    DeliveryError,
    UnknownTopicError,
    ValidationError,
)
from filas.settings import KafkaSettings
from producers.async_sdk import AsyncEventProducer
from producers.sdk import EventProducer, producer_config


class _Msg:
    def __init__(self, topic: str, key: str, offset: int) -> None:
        self._topic, self._key, self._offset = topic, key, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def key(self) -> bytes:
        return self._key.encode()

    def offset(self) -> int:
        return self._offset


class _Err:
    def str(self) -> str:
        return "Broker: Not enough in-sync replicas"

    def retriable(self) -> bool:
        return True


@dataclass
class FakeProducer:
    topics: set[str]
    capacity: int = 1_000
    fail_keys: set[str] = field(default_factory=set)
    queued: list[tuple[str, str, bytes, Callable[..., None]]] = field(default_factory=list)
    acked: list[tuple[str, str, bytes]] = field(default_factory=list)

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics=dict.fromkeys(self.topics))

    def produce(self, topic: str, value: bytes, key: str, on_delivery: Callable[..., None]) -> None:
        if len(self.queued) >= self.capacity:
            raise BufferError("Local: Queue full")
        self.queued.append((topic, key, value, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        served = 0
        while self.queued:
            topic, key, value, callback = self.queued.pop(0)
            if key in self.fail_keys:
                callback(_Err(), _Msg(topic, key, -1))
            else:
                self.acked.append((topic, key, value))
                callback(None, _Msg(topic, key, len(self.acked) - 1))
            served += 1
        return served

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


class JsonishSerializer:
    """Stands in for the Avro serde: rejects records without 'login'."""

    def serialize(self, record: Mapping[str, Any]) -> bytes:
        if not isinstance(record.get("login"), str):
            raise ValidationError("field 'login': expected string", field="login")
        return repr(sorted(record.items())).encode()


def _serializers(spec: TopicSpec) -> JsonishSerializer:
    return JsonishSerializer()


CATALOG = Catalog.build()
SETTINGS = KafkaSettings(backpressure_timeout_s=0.2)


def _producer(fake: FakeProducer) -> EventProducer:
    return EventProducer(SETTINGS, CATALOG, _serializers, producer=fake)  # type: ignore[arg-type]


def test_config_is_idempotent_acks_all_with_java_compatible_partitioner() -> None:
    conf = producer_config(KafkaSettings())
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["partitioner"] == "murmur2_random"


def test_emit_keys_by_catalog_key_field_and_flushes() -> None:
    fake = FakeProducer({ACCOUNTING.name})
    with _producer(fake) as producer:
        producer.emit(ACCOUNTING, {"login": "joao@fibra", "x": 1})
        producer.emit(ACCOUNTING.name, {"login": "maria@fibra", "x": 2})
    assert [(t, k) for t, k, _ in fake.acked] == [
        (ACCOUNTING.name, "joao@fibra"),
        (ACCOUNTING.name, "maria@fibra"),
    ]


def test_unknown_topic_names_the_known_ones() -> None:
    producer = _producer(FakeProducer({ACCOUNTING.name}))
    with pytest.raises(UnknownTopicError, match=r"known topics: .*radius\.accounting"):
        producer.emit("radius.nope", {"login": "a"})


def test_catalog_topic_missing_from_cluster_says_to_apply() -> None:
    producer = _producer(FakeProducer(set()))
    with pytest.raises(UnknownTopicError, match="filas topics apply"):
        producer.emit(ACCOUNTING, {"login": "a"})


def test_invalid_record_raises_naming_the_field_and_queues_nothing() -> None:
    fake = FakeProducer({ACCOUNTING.name})
    producer = _producer(fake)
    with pytest.raises(ValidationError) as info:
        producer.emit(ACCOUNTING, {"login": 42})
    assert info.value.field == "login"
    assert fake.queued == []
    assert fake.acked == []


def test_delivery_failure_reaches_the_caller_on_flush() -> None:
    fake = FakeProducer({ACCOUNTING.name}, fail_keys={"bad"})
    producer = _producer(fake)
    producer.emit(ACCOUNTING, {"login": "ok"})
    producer.emit(ACCOUNTING, {"login": "bad"})
    with pytest.raises(DeliveryError, match=r"1 events were not delivered.*'bad'"):
        producer.flush()


def test_emit_sync_raises_on_failure_and_returns_offset_on_success() -> None:
    fake = FakeProducer({ACCOUNTING.name}, fail_keys={"bad"})
    producer = _producer(fake)
    assert producer.emit_sync(ACCOUNTING, {"login": "ok"}).offset == 0
    with pytest.raises(DeliveryError, match="in-sync replicas") as info:
        producer.emit_sync(ACCOUNTING, {"login": "bad"})
    assert info.value.retriable


class StuckProducer(FakeProducer):
    """A broker that never drains: the local queue stays full."""

    def poll(self, timeout: float = 0) -> int:
        return 0


def test_full_queue_blocks_then_raises_and_never_drops() -> None:
    fake = StuckProducer({ACCOUNTING.name}, capacity=2)
    producer = _producer(fake)
    producer.emit(ACCOUNTING, {"login": "a"})
    producer.emit(ACCOUNTING, {"login": "b"})
    with pytest.raises(BackpressureTimeoutError) as info:
        producer.emit(ACCOUNTING, {"login": "c"})
    assert info.value.retriable
    assert [k for _, k, _, _ in fake.queued] == ["a", "b"]


def test_async_emit_resolves_with_the_ack() -> None:
    fake = FakeProducer({ACCOUNTING.name}, fail_keys={"bad"})

    async def run() -> None:
        async with AsyncEventProducer(_producer(fake)) as producer:
            deliveries = await asyncio.gather(
                *(producer.emit(ACCOUNTING, {"login": f"user{i}"}) for i in range(50))
            )
            assert sorted(d.offset for d in deliveries) == list(range(50))
            with pytest.raises(DeliveryError):
                await producer.emit(ACCOUNTING, {"login": "bad"})

    asyncio.run(run())
