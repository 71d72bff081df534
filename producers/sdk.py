"""The producer SDK: how every Filas service and gateway puts an event on a queue.

``EventProducer.emit`` validates the record against its topic's Avro schema, keys it by the
catalog's key field (so one subscriber's or device's events stay in order on one partition),
and hands it to an idempotent librdkafka producer (acks=all). Delivery failures reach the caller:
through the ``on_delivery`` callback, ``emit_sync``'s exception, or ``flush()``/``close()`` raising
``DeliveryError``. When librdkafka's local queue is full, ``emit`` blocks up to
``backpressure_timeout_s`` and then raises ``BackpressureTimeoutError``: it never drops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from filas.catalog import Catalog, TopicSpec
from filas.errors import (
    BackpressureTimeoutError,
    BrokerUnavailableError,
    DeliveryError,
    UnknownTopicError,
    ValidationError,
)
from filas.settings import KafkaSettings


class RecordSerializer(Protocol):
    def serialize(self, record: Mapping[str, Any]) -> bytes: ...


SerializerFactory = Callable[[TopicSpec], RecordSerializer]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker acknowledged (acks=all) a record."""

    topic: str
    partition: int
    offset: int
    key: str


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    topic: str
    key: str
    error: str
    retriable: bool


DeliveryCallback = Callable[[Delivery | None, DeliveryFailure | None], None]


def producer_config(settings: KafkaSettings) -> dict[str, Any]:
    conf: dict[str, Any] = dict(settings.client_config())
    conf.update(
        {
            # Fixed on purpose: an event acknowledged to the caller is on every in-sync replica,
            # and retries never duplicate or reorder it (docs/decisions/0030).
            "acks": "all",
            "enable.idempotence": True,
            # Same partition for the same key as Java producers and Kafka tools (murmur2), so a
            # key's order holds whoever produced it.
            "partitioner": "murmur2_random",
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_size,
            "compression.type": settings.compression_type,
            "queue.buffering.max.messages": settings.queue_buffering_max_messages,
            "delivery.timeout.ms": settings.delivery_timeout_ms,
        }
    )
    return conf


def record_key(spec: TopicSpec, record: Mapping[str, Any]) -> str:
    value = record.get(spec.key_field)
    if value is None or value == "":
        raise ValidationError(
            f"{spec.name}: key field {spec.key_field!r} is missing or empty",
            field=spec.key_field,
        )
    return str(value)


class EventProducer:
    """Synchronous producer; thread-safe. Use as a context manager so it flushes on exit."""

    def __init__(
        self,
        settings: KafkaSettings,
        catalog: Catalog,
        serializers: SerializerFactory,
        *,
        connect_timeout_s: float = 10.0,
        producer: Producer | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._serializers = serializers
        self._producer = producer or Producer(producer_config(settings))
        self._topics: dict[str, tuple[TopicSpec, RecordSerializer]] = {}
        self._failures: list[DeliveryFailure] = []
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._produced = 0
        self._cluster_topics = self._connect(connect_timeout_s)

    def _connect(self, timeout_s: float) -> set[str]:
        """Fail fast and clearly when no broker answers, instead of queueing into the void."""
        try:
            metadata = self._producer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {self._settings.bootstrap_servers} "
                f"within {timeout_s:.0f}s ({exc.args[0].str()})"
            ) from exc
        return set(metadata.topics)

    def _resolve(self, topic: TopicSpec | str) -> tuple[TopicSpec, RecordSerializer]:
        name = topic if isinstance(topic, str) else self._catalog.resolve(topic).name
        cached = self._topics.get(name)
        if cached is not None:
            return cached
        spec = self._catalog.get(name)
        if spec.name not in self._cluster_topics:
            self._cluster_topics = set(self._producer.list_topics(timeout=10).topics)
            if spec.name not in self._cluster_topics:
                raise UnknownTopicError(
                    f"topic {spec.name!r} is in the catalog but not in the cluster; "
                    "run 'filas topics apply'"
                )
        resolved = (spec, self._serializers(spec))
        with self._lock:
            self._topics[name] = resolved
        return resolved

    def _record_failure(self, err: KafkaError | None, msg: Message) -> None:
        """Default delivery report: successes need no work, failures wait for flush()."""
        if err is None:
            return
        key = msg.key().decode(errors="replace") if msg.key() else ""
        with self._lock:
            self._failures.append(DeliveryFailure(msg.topic(), key, err.str(), err.retriable()))

    def delivery_callback(
        self, key: str, on_delivery: DeliveryCallback | None
    ) -> Callable[..., None]:
        if on_delivery is None:
            # One shared bound method instead of a closure per event: the hot path allocates less.
            return self._record_failure

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                on_delivery(Delivery(msg.topic(), msg.partition(), msg.offset(), key), None)
            else:
                on_delivery(None, DeliveryFailure(msg.topic(), key, err.str(), err.retriable()))

        return report

    def emit(
        self,
        topic: TopicSpec | str,
        record: Mapping[str, Any],
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one event; returns once librdkafka holds it (the ack arrives later)."""
        name, key, value = self.encode(topic, record)
        self.produce_raw(name, key, value, self.delivery_callback(key, on_delivery))

    def encode(self, topic: TopicSpec | str, record: Mapping[str, Any]) -> tuple[str, str, bytes]:
        """Validate and serialize: (topic name, key, value bytes). Raises ValidationError."""
        spec, serializer = self._resolve(topic)
        key = record_key(spec, record)
        # Serializers reuse one buffer each; the lock keeps emit thread-safe (uncontended: ~0.1 us).
        with self._encode_lock:
            value = serializer.serialize(record)
        return spec.name, key, value

    def try_produce(
        self, topic: str, key: str, value: bytes, callback: Callable[..., None]
    ) -> bool:
        """Hand bytes to librdkafka; False when its local queue is full (nothing was queued)."""
        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=callback)
        except BufferError:
            return False
        # Serving delivery reports costs a call into librdkafka; every 64 events is enough to
        # keep the report queue short (flush and the backpressure loop serve the rest).
        self._produced += 1
        if not self._produced & 63:
            self._producer.poll(0)
        return True

    def backpressure_error(self) -> BackpressureTimeoutError:
        return BackpressureTimeoutError(
            f"producer queue full for {self._settings.backpressure_timeout_s:.1f}s "
            f"({self._settings.queue_buffering_max_messages} messages); "
            "the broker is not keeping up or is unreachable"
        )

    def produce_raw(
        self, topic: str, key: str, value: bytes, callback: Callable[..., None]
    ) -> None:
        """Produce already-encoded bytes, blocking (never dropping) while the queue is full."""
        if self.try_produce(topic, key, value, callback):
            return
        deadline = time.monotonic() + self._settings.backpressure_timeout_s
        while not self.try_produce(topic, key, value, callback):
            if time.monotonic() >= deadline:
                raise self.backpressure_error()
            self._producer.poll(0.05)

    def emit_sync(
        self, topic: TopicSpec | str, record: Mapping[str, Any], *, timeout_s: float = 30.0
    ) -> Delivery:
        """Emit and wait for the broker's acknowledgement; raises DeliveryError on failure."""
        done = threading.Event()
        outcome: list[Delivery | DeliveryFailure] = []

        def on_delivery(ok: Delivery | None, failure: DeliveryFailure | None) -> None:
            result = ok if ok is not None else failure
            assert result is not None
            outcome.append(result)
            done.set()

        self.emit(topic, record, on_delivery=on_delivery)
        deadline = time.monotonic() + timeout_s
        while not done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeliveryError(f"no acknowledgement within {timeout_s:.0f}s", retriable=True)
            self._producer.poll(min(remaining, 0.1))
        result = outcome[0]
        if isinstance(result, DeliveryFailure):
            raise DeliveryError(
                f"{result.topic} key {result.key!r}: {result.error}", retriable=result.retriable
            )
        return result

    def poll(self, timeout_s: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many were served."""
        served: int = self._producer.poll(timeout_s)
        return served

    @property
    def backpressure_timeout_s(self) -> float:
        return self._settings.backpressure_timeout_s

    @property
    def failures(self) -> list[DeliveryFailure]:
        with self._lock:
            return list(self._failures)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued event's ack; raise if any was not delivered."""
        remaining = self._producer.flush(timeout_s)
        with self._lock:
            failures, self._failures = self._failures, []
        if remaining:
            raise DeliveryError(
                f"{remaining} events still unacknowledged after {timeout_s:.0f}s", retriable=True
            )
        if failures:
            first = failures[0]
            raise DeliveryError(
                f"{len(failures)} events were not delivered; first: {first.topic} "
                f"key {first.key!r}: {first.error}",
                retriable=all(f.retriable for f in failures),
            )

    def close(self, timeout_s: float = 30.0) -> None:
        self.flush(timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
