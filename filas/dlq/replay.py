"""Read ``<topic>.dlq`` and re-drive its letters' raw bytes to the source topic.

Replay is resumable and does not duplicate (docs/decisions/0041): a replay consumer group commits
each letter's offset only after the broker acknowledged (acks=all) the re-sent record. Before
sending, the group's committed metadata records the source partition's end offset; every re-sent
record carries an ``ORIGIN_HEADER`` naming the letter. A run that finds such a "pending" mark (a
previous run died between the ack and the commit) scans the source partition from the recorded
end offset for that header and skips the letter when it is already there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from filas.catalog import Catalog, TopicSpec
from filas.errors import DecodeError, DeliveryError, FilasError
from filas.settings import Settings
from producers.sdk import producer_config
from schemas.serde import AvroSerde

log = logging.getLogger(__name__)

ORIGIN_HEADER = "filas-dlq-origin"
_PENDING = "pending:"


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter as ``filas dlq list`` shows it."""

    dlq_partition: int
    dlq_offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    error_code: str
    error_type: str
    error_message: str
    retriable: bool
    failed_at: datetime
    processor: str
    size: int

    @classmethod
    def of(cls, partition: int, offset: int, letter: dict[str, Any]) -> DeadLetterView:
        failed = letter["failed_at"]
        if not isinstance(failed, datetime):
            failed = datetime.fromtimestamp(int(failed) / 1000, UTC)
        return cls(
            dlq_partition=partition,
            dlq_offset=offset,
            source_topic=letter["source_topic"],
            source_partition=letter["source_partition"],
            source_offset=letter["source_offset"],
            error_code=letter["error_code"],
            error_type=letter["error_type"],
            error_message=letter["error_message"],
            retriable=letter["retriable"],
            failed_at=failed,
            processor=letter["processor"],
            size=len(letter["raw_value"]) + len(letter["raw_key"] or b""),
        )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    replayed: int
    skipped_already_sent: int
    undecodable: int
    dry_run: bool


class ReplayError(FilasError):
    code = "dlq_replay"
    retriable = True


def replay_group(spec: TopicSpec) -> str:
    """The stable default consumer group replaying ``spec``'s DLQ (prefix included)."""
    return f"filas-dlq-replay.{spec.name}"


def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(
        settings.kafka.client_config()
        | {
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
        }
    )


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=10)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise ReplayError(f"topic {topic!r} is not in the cluster; run 'filas topics apply'")
    return sorted(found.partitions)


def _read(
    consumer: Consumer, topic: str, starts: dict[int, int], ends: dict[int, int]
) -> Iterator[Any]:
    """Records of ``topic`` from ``starts`` up to (excluding) ``ends``, per partition."""
    todo = {p: end for p, end in ends.items() if starts.get(p, 0) < end}
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, starts.get(p, OFFSET_BEGINNING)) for p in todo])
    idle_deadline = time.monotonic() + 30
    while todo:
        msg = consumer.poll(0.5)
        if msg is None:
            if time.monotonic() > idle_deadline:
                raise ReplayError(f"{topic}: no records within 30 s before the end offsets")
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise ReplayError(f"{topic}: {msg.error().str()}")
        idle_deadline = time.monotonic() + 30
        partition, offset = msg.partition(), msg.offset()
        if partition in todo and offset < todo[partition]:
            yield msg
        if partition in todo and offset + 1 >= todo[partition]:
            del todo[partition]
    consumer.unassign()


def _ends(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in partitions
    }


def list_dead_letters(
    settings: Settings,
    serde: AvroSerde,
    dlq: TopicSpec,
    *,
    max_letters: int | None = None,
) -> Iterator[DeadLetterView | tuple[int, int, str]]:
    """Every letter on ``dlq`` up to its end now; undecodable ones as (partition, offset, error).

    Reads without committing, so it never moves a replay group's position.
    """
    consumer = _consumer(settings, f"filas-dlq-list.{dlq.name}")
    try:
        partitions = _partitions(consumer, dlq.name)
        ends = _ends(consumer, dlq.name, partitions)
        for seen, msg in enumerate(_read(consumer, dlq.name, {}, ends)):
            if max_letters is not None and seen >= max_letters:
                return
            partition, offset = msg.partition(), msg.offset()
            try:
                yield DeadLetterView.of(partition, offset, serde.deserialize(msg.value()))
            except DecodeError as exc:
                yield (partition, offset, str(exc))
    finally:
        consumer.close()


def _origin(dlq: str, partition: int, offset: int) -> bytes:
    return f"{dlq}:{partition}:{offset}".encode()


def _already_sent(
    settings: Settings, source: str, partition: int, from_offset: int, origin: bytes
) -> bool:
    """Whether a record carrying ``origin`` is on ``source``/``partition`` at or after the mark."""
    scanner = _consumer(settings, f"filas-dlq-scan.{source}")
    try:
        end = _ends(scanner, source, [partition])
        for msg in _read(scanner, source, {partition: from_offset}, end):
            if (ORIGIN_HEADER, origin) in (msg.headers() or []):
                return True
        return False
    finally:
        scanner.close()


def replay(
    settings: Settings,
    catalog: Catalog,
    serde: AvroSerde,
    source: TopicSpec,
    *,
    group: str | None = None,
    dry_run: bool = False,
    on_letter: Callable[[DeadLetterView, str], None] | None = None,
    ack_timeout_s: float = 30.0,
) -> ReplayResult:
    """Re-send every not-yet-replayed letter of ``source``'s DLQ to ``source``, as raw bytes.

    Each letter goes back to the partition it was read from (so a key keeps its partition) with
    its original key and value bytes. ``on_letter(view, action)`` reports each one (``replayed``,
    ``already-sent``, ``would-replay``). Letters dead-lettered again during the run wait for the
    next run: the run stops at the DLQ's end offsets taken when it started.
    """
    source = catalog.resolve(source)
    dlq = catalog.dead_letter_for(source)
    group = group or replay_group(source)
    consumer = _consumer(settings, group)
    producer = Producer(producer_config(settings.kafka))
    replayed = skipped = undecodable = 0
    try:
        source_partitions = _partitions(consumer, source.name)
        partitions = _partitions(consumer, dlq.name)
        committed = consumer.committed(
            [TopicPartition(dlq.name, p) for p in partitions], timeout=10
        )
        starts = {tp.partition: max(tp.offset, 0) for tp in committed}
        pending = {
            tp.partition: int(tp.metadata.removeprefix(_PENDING))
            for tp in committed
            if tp.metadata and tp.metadata.startswith(_PENDING) and tp.offset >= 0
        }
        for msg in _read(consumer, dlq.name, starts, _ends(consumer, dlq.name, partitions)):
            partition, offset = msg.partition(), msg.offset()
            try:
                letter = serde.deserialize(msg.value())
            except DecodeError as exc:
                log.error("undecodable dead letter %s[%d]@%d: %s", dlq.name, partition, offset, exc)
                undecodable += 1
                if not dry_run:
                    _commit(consumer, dlq.name, partition, offset + 1, "")
                continue
            view = DeadLetterView.of(partition, offset, letter)
            target = view.source_partition if view.source_partition in source_partitions else -1
            origin = _origin(dlq.name, partition, offset)
            if dry_run:
                if on_letter:
                    on_letter(view, "would-replay")
                continue
            mark = pending.pop(partition, None)
            if (
                mark is not None
                and target >= 0
                and _already_sent(settings, source.name, target, mark, origin)
            ):
                _commit(consumer, dlq.name, partition, offset + 1, "")
                skipped += 1
                if on_letter:
                    on_letter(view, "already-sent")
                continue
            if target >= 0:
                end = producer_end(consumer, source.name, target)
                _commit(consumer, dlq.name, partition, offset, f"{_PENDING}{end}")
            _send(producer, source.name, target, letter, origin, ack_timeout_s)
            _commit(consumer, dlq.name, partition, offset + 1, "")
            replayed += 1
            if on_letter:
                on_letter(view, "replayed")
    finally:
        producer.flush(ack_timeout_s)
        consumer.close()
    return ReplayResult(replayed, skipped, undecodable, dry_run)


def producer_end(consumer: Consumer, topic: str, partition: int) -> int:
    high: int = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    return high


def _commit(consumer: Consumer, topic: str, partition: int, offset: int, metadata: str) -> None:
    consumer.commit(
        offsets=[TopicPartition(topic, partition, offset, metadata=metadata)], asynchronous=False
    )


def _send(
    producer: Producer,
    topic: str,
    partition: int,
    letter: dict[str, Any],
    origin: bytes,
    timeout_s: float,
) -> None:
    """Produce the letter's raw bytes and wait for acks=all; raise when not acknowledged."""
    outcome: list[KafkaError | None] = []
    kwargs: dict[str, Any] = {"partition": partition} if partition >= 0 else {}
    producer.produce(
        topic,
        value=letter["raw_value"],
        key=letter["raw_key"],
        headers=[(ORIGIN_HEADER, origin)],
        on_delivery=lambda err, _msg: outcome.append(err),
        **kwargs,
    )
    deadline = time.monotonic() + timeout_s
    while not outcome and time.monotonic() < deadline:
        producer.poll(0.1)
    if not outcome:
        raise DeliveryError(f"{topic}: replayed record not acknowledged in {timeout_s:.0f}s")
    if outcome[0] is not None:
        raise DeliveryError(
            f"{topic}: replayed record failed: {outcome[0].str()}", retriable=outcome[0].retriable()
        )
