"""Whole-topic readers that keep an in-memory state current (decision 0050).

A plain confluent-kafka consumer thread ``assign()``s every partition of the given topics at the
beginning, with no committed group (every process holds all of the state), and sets ``ready``
once it has read up to the high watermarks seen at start-up. Subclasses say which topics and how
one record is applied; the RADIUS replica and the campaign fan-out's subscriber state use it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from filas.catalog import TopicSpec
from filas.errors import BrokerUnavailableError, FilasError
from filas.settings import KafkaSettings

logger = logging.getLogger(__name__)


def watermarks(consumer: Any, tp: TopicPartition, timeout_s: float = 15.0) -> tuple[int, int]:
    """(low, high) of one partition, retrying while a new topic's leader is being elected."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline or not exc.args[0].retriable():
                raise BrokerUnavailableError(
                    f"no watermarks for {tp.topic}[{tp.partition}]: {exc}"
                ) from exc
            time.sleep(0.2)


class TopicStateFeeder(ABC):
    """Reads ``topics()`` from the beginning on a daemon thread into a subclass's state."""

    def __init__(self, kafka: KafkaSettings, *, label: str, batch: int = 500) -> None:
        self._kafka = kafka
        self._label = label  # in logs, errors, the thread's and the throwaway group's names
        self._batch = batch
        self.ready = threading.Event()
        self.applied = 0
        self.decode_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._pending: dict[tuple[str, int], int] = {}

    @abstractmethod
    def topics(self) -> Sequence[TopicSpec]:
        """The topics read whole, from their beginning."""

    @abstractmethod
    def _apply(self, msg: Any) -> None:
        """Apply one record; call ``_progress`` for it (also when it is skipped)."""

    def _extra_partitions(self, consumer: Any, metadata: Any) -> list[TopicPartition]:
        """Partitions read from elsewhere than the beginning (``_expect`` their high marks)."""
        return []

    def _expect(self, topic: str, partition: int, high: int) -> None:
        self._pending[(topic, partition)] = high

    def _topic_or_fail(self, consumer: Any, metadata: Any, name: str) -> Any:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            consumer.close()
            raise FilasError(f"{self._label}: topic {name!r} missing; run 'filas topics apply'")
        return topic

    def start(self) -> None:
        conf = dict(self._kafka.client_config()) | {
            # No commits: the id only names this reader.
            "group.id": f"filas-{self._label.replace(' ', '-')}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
        consumer = Consumer(conf)
        try:
            metadata = consumer.list_topics(timeout=10)
        except KafkaException as exc:
            consumer.close()
            raise BrokerUnavailableError(f"{self._label}: no broker answered ({exc})") from exc
        partitions: list[TopicPartition] = []
        for spec in self.topics():
            topic = self._topic_or_fail(consumer, metadata, spec.name)
            for p in sorted(topic.partitions):
                partitions.append(TopicPartition(spec.name, p, OFFSET_BEGINNING))
                low, high = watermarks(consumer, TopicPartition(spec.name, p))
                if high > low:
                    self._expect(spec.name, p, high)
        partitions += self._extra_partitions(consumer, metadata)
        consumer.assign(partitions)
        self._consumer = consumer
        if not self._pending:
            self.ready.set()
        self._thread = threading.Thread(
            target=self._run, name=f"filas-{self._label.replace(' ', '-')}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        consumer = self._consumer
        while not self._stop.is_set():
            try:
                messages = consumer.consume(num_messages=self._batch, timeout=0.2)
            except KafkaException as exc:  # transient: librdkafka reconnects by itself
                logger.warning("%s: consume failed: %s", self._label, exc)
                time.sleep(0.5)
                continue
            for msg in messages:
                if not msg.error():
                    self._apply(msg)
        consumer.close()

    def _progress(self, topic: str, partition: int, offset: int) -> None:
        if self.ready.is_set():
            return
        high = self._pending.get((topic, partition))
        if high is not None and offset + 1 >= high:
            del self._pending[(topic, partition)]
            if not self._pending:
                logger.info("%s: caught up (%d records)", self._label, self.applied)
                self.ready.set()

    def wait_ready(self, timeout_s: float) -> bool:
        return self.ready.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def offsets_for_times(
    consumer: Any, wanted: list[TopicPartition], timeout_s: float
) -> list[TopicPartition]:
    """``offsets_for_times`` retried until no partition reports an error (a busy or fresh
    topic's leader may not answer at once): a silent per-partition error would skip it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found: list[TopicPartition] = consumer.offsets_for_times(wanted, timeout=10)
            failed = [tp for tp in found if tp.error is not None]
        except KafkaException as exc:
            failed, error = wanted, exc
        else:
            if not failed:
                return found
            error = failed[0].error
        if time.monotonic() > deadline:
            raise BrokerUnavailableError(f"no offsets for {failed[0].topic}: {error}")
        time.sleep(0.2)


def read_topic_once(
    kafka: KafkaSettings,
    spec: TopicSpec,
    handle: Callable[[Any], None],
    timeout_s: float,
    *,
    label: str,
    code: str,
    since_ms: int | None = None,
    tombstones: bool = False,
    ends: dict[int, int] | None = None,
) -> int:
    """Read every partition of ``spec`` from the beginning (or from ``since_ms``) up to the high
    watermarks seen now, calling ``handle(message)`` (tombstones too when ``tombstones``), with
    a throwaway consumer and no group offsets; returns how many records were handed over.
    ``ends`` receives those high watermarks (where a follower goes on from). Not read within
    ``timeout_s``: a retriable ``FilasError`` with ``code``."""
    conf = dict(kafka.client_config()) | {
        "group.id": f"filas-{label.replace(' ', '-')}-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    consumer = Consumer(conf)
    count = 0
    try:
        try:
            topic = consumer.list_topics(spec.name, timeout=10).topics.get(spec.name)
        except KafkaException as exc:
            raise BrokerUnavailableError(f"{label}: no broker answered ({exc})") from exc
        if topic is None or topic.error is not None:
            raise FilasError(f"{label}: topic {spec.name!r} missing; run 'filas topics apply'")
        starts = [
            TopicPartition(spec.name, p, since_ms if since_ms is not None else OFFSET_BEGINNING)
            for p in sorted(topic.partitions)
        ]
        if since_ms is not None:
            starts = offsets_for_times(consumer, starts, timeout_s)
        pending: dict[int, int] = {}
        assignment = []
        for tp in starts:
            low, high = watermarks(consumer, TopicPartition(spec.name, tp.partition))
            if ends is not None:
                ends[tp.partition] = high
            # No offset at or after since_ms: nothing newer to read in this partition.
            start = tp.offset if tp.offset >= 0 else (high if since_ms is not None else low)
            if start < high:
                pending[tp.partition] = high
                assignment.append(TopicPartition(spec.name, tp.partition, start))
        if not assignment:
            return 0
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise FilasError(
                    f"{label}: {spec.name} not read within {timeout_s:.0f}s",
                    code=code,
                    retriable=True,
                )
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    continue
                if tombstones or msg.value() is not None:
                    handle(msg)
                    count += 1
                p = msg.partition()
                if p in pending and msg.offset() + 1 >= pending[p]:
                    del pending[p]
        return count
    finally:
        consumer.close()
