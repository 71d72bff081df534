"""The ClickHouse sink: Kafka -> Avro decode -> batched row-tuple INSERTs -> commit.

No loss, no duplicates (docs/decisions/0040):

* offsets are committed (synchronously, explicitly) only after ClickHouse acknowledged the
  INSERT and every dead letter of the batch was acknowledged by Kafka;
* every row carries its lineage (``_topic``, ``_partition``, ``_offset``); when partitions are
  assigned, each starts at ``max(_offset) + 1`` of what its table already holds if that is ahead
  of the committed offset, so a crash between INSERT and commit does not insert the batch again;
* whatever is still replayed (a crash in the middle of an INSERT) has the same sorting key and
  collapses in the ``ReplacingMergeTree`` (``FINAL`` at query time).

A record that cannot be decoded, or does not fit its table, goes to ``<topic>.dlq`` with the
reason; the rest lands. When ClickHouse is down or slow the sink pauses every partition, keeps
the batch (memory stays bounded by one batch plus one fetch), retries with exponential backoff
while still polling so it stays in the group, and resumes when the INSERT succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from consumers.clickhouse.client import quote
from consumers.clickhouse.columnar import BatchDecodeError, ColumnarDecoder
from consumers.clickhouse.errors import ClickHouseError, RowConversionError
from consumers.clickhouse.row_decoder import RowDecoder
from consumers.clickhouse.tables import Table
from filas.catalog import TopicSpec
from filas.collector import fewer_collections
from filas.errors import DecodeError, DeliveryError, FilasError, ValidationError
from filas.metrics import (
    BATCH_SIZE,
    DEAD_LETTERS,
    DEPENDENCY_SECONDS,
    ERRORS,
    EVENTS_IN,
    EVENTS_OUT,
    PROCESSING_SECONDS,
    timed,
)
from filas.settings import KafkaSettings
from producers.sdk import EventProducer
from schemas.dead_letter import SourceRecord, dead_letter
from schemas.wire import header

log = logging.getLogger("filas.sink.clickhouse")

PROCESSOR = "clickhouse-sink"
DEFAULT_GROUP = "filas-clickhouse-sink"


class Deserializer(Protocol):
    def deserialize(self, data: bytes | bytearray | memoryview | None) -> dict[str, Any]: ...


class DeadLetterSink(Protocol):
    """Where undecodable records go: ``send`` queues one, ``flush`` waits for the acks."""

    def send(self, spec: TopicSpec, record: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...


class Inserter(Protocol):
    def insert(
        self, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> int: ...

    def insert_columns(
        self, table: str, columns: tuple[str, ...], data: Sequence[list[Any]] | Sequence[pl.Series]
    ) -> int: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SinkConfig:
    # 100k rows or linger_s, whichever first: under a steady load the linger decides (latency
    # unchanged); a backlog lands in fewer, larger parts (decision 0122).
    batch_rows: int = 100_000
    linger_s: float = 1.0
    fetch_max: int = 2_000
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 15.0
    # How long partition assignment waits for ClickHouse to say what it holds before failing.
    assign_timeout_s: float = 60.0


@dataclass
class SinkStats:
    rows: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    skipped: int = 0
    batches: int = 0
    retries: int = 0
    resumed_from_clickhouse: dict[str, int] = field(default_factory=dict)
    # time.monotonic() of the first record read and of the last acknowledged INSERT.
    first_record_at: float | None = None
    last_insert_at: float | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def consumer_config(kafka: KafkaSettings, group_id: str) -> dict[str, Any]:
    return dict(kafka.client_config()) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # A crashed sink's partitions move to the others within 10 s, not librdkafka's 45 s.
        "session.timeout.ms": 10_000,
        # Larger fetches: the sink reads in bulk and writes in batches of thousands.
        "fetch.min.bytes": 64 * 1024,
        "fetch.wait.max.ms": 100,
        "fetch.queue.backoff.ms": 20,
    }


@dataclass
class _Raw:
    """Messages of one topic kept undecoded until the batch is handed off (decoded natively,
    all at once: decision 0120). Their parts, not the Message objects: those are tracked by the
    garbage collector, and tens of thousands of them held made every collection slower."""

    values: list[bytes] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)

    def keep(self, topic: str, revoked: set[tuple[str, int]]) -> int:
        """Drop the revoked partitions' messages; returns how many were dropped."""
        kept = [i for i, p in enumerate(self.partitions) if (topic, p) not in revoked]
        dropped = len(self.values) - len(kept)
        if dropped:
            self.values = [self.values[i] for i in kept]
            self.partitions = [self.partitions[i] for i in kept]
            self.offsets = [self.offsets[i] for i in kept]
            self.timestamps = [self.timestamps[i] for i in kept]
            self.keys = [self.keys[i] for i in kept]
        return dropped


@dataclass(frozen=True, slots=True)
class _Held:
    """A kept message, shaped like confluent_kafka's Message for the per-record path."""

    _topic: str
    _partition: int
    _offset: int
    _timestamp: int
    _key: bytes | None
    _value: bytes

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)  # TIMESTAMP_CREATE_TIME; only the value is read

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value


@dataclass
class _Batch:
    """Rows per table and the next offset per partition: what one INSERT round lands.

    A table's rows are row tuples (per-record path), column blocks (the natively decoded
    messages: the data columns then the lineage columns, all of one length), and, until the
    batch is handed off, the messages still to decode natively.
    """

    rows: dict[str, list[Sequence[Any]]] = field(default_factory=dict)
    blocks: dict[str, list[list[pl.Series]]] = field(default_factory=dict)
    raw: dict[str, _Raw] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    pending: int = 0  # rows not yet acknowledged by ClickHouse
    started: float | None = None  # time.monotonic() of its first record

    def drop(self, revoked: set[tuple[str, int]]) -> None:
        """Forget the rows and offsets of revoked partitions (their next owner reads them)."""
        for name, raw in self.raw.items():
            self.pending -= raw.keep(name, revoked)
        for name, blocks in self.blocks.items():
            # Rare (a revoke with rows unwritten): back to row tuples, filtered below.
            for block in blocks:
                self.rows[name].extend(zip(*(c.to_list() for c in block), strict=True))
            self.blocks[name] = []
        for name, rows in self.rows.items():
            kept = [r for r in rows if (name, r[-3]) not in revoked]
            self.pending -= len(rows) - len(kept)
            self.rows[name] = kept
        for key in revoked:
            self.offsets.pop(key, None)


class ClickHouseSink:
    """Lands the given tables' topics; ``run`` until ``stop`` is set (or ``idle_exit_s``).

    Pipelined (docs/decisions/0056): one writer thread INSERTs batch N while this thread
    consumes and decodes batch N+1. At most one batch is in flight, and batch N+1 is handed over
    only after batch N was acknowledged and committed, so per partition ClickHouse always holds
    a prefix of the log and ``max(_offset) + 1`` stays a safe place to resume.
    """

    def __init__(
        self,
        *,
        consumer: Consumer,
        clickhouse: Inserter,
        tables: Mapping[str, Table],
        serdes: Callable[[TopicSpec], Deserializer],
        dead_letters: DeadLetterSink,
        config: SinkConfig | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._consumer = consumer
        self._clickhouse = clickhouse
        # The writer thread inserts while this thread may read held offsets (rebalance).
        self._clickhouse_lock = threading.Lock()
        self._tables = dict(tables)
        self._serdes = {name: serdes(t.topic) for name, t in self._tables.items()}
        self._redact = {name: t.has_secrets for name, t in self._tables.items()}
        # labels() costs a dict lookup and a lock per call: resolved once per topic.
        self._events_in = {name: EVENTS_IN.labels(PROCESSOR, name) for name in self._tables}
        # Topics whose records in the reader's own schema decode straight to rows: the 5-byte
        # Confluent header that selects the compiled decoder (consumers/clickhouse/row_decoder.py).
        self._fast: dict[str, tuple[bytes, RowDecoder]] = {}
        for name, table in self._tables.items():
            schema_id = getattr(self._serdes[name], "schema_id", None)
            if table.decode_row is not None and isinstance(schema_id, int):
                self._fast[name] = (header(schema_id), table.decode_row)
        # Of those, the topics whose fetches decode natively into columns (columnar.py,
        # decision 0120); a fetch that fails there takes the per-record path.
        self._native: dict[str, tuple[bytes, ColumnarDecoder]] = {
            name: (self._fast[name][0], decoder)
            for name, table in self._tables.items()
            if name in self._fast and (decoder := table.decode_columns) is not None
        }
        self._dead_letters = dead_letters
        self.config = config or SinkConfig()
        self._sleep = sleep
        self.stats = SinkStats()
        # The batch being read, and the one handed to the writer and not yet committed.
        self._batch = self._new_batch()
        self._unacked: _Batch | None = None
        # The writer's attempt at _unacked; None once its outcome was taken (or never sent).
        self._future: Future[None] | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-writer")
        self._paused = False
        self._flushing = False
        self._stop = threading.Event()

    def _new_batch(self) -> _Batch:
        return _Batch(
            rows={name: [] for name in self._tables}, blocks={name: [] for name in self._tables}
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def run(
        self, stop: threading.Event | None = None, *, idle_exit_s: float | None = None
    ) -> SinkStats:
        stop = self._stop = stop or threading.Event()
        self._consumer.subscribe(
            list(self._tables), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        last_record = time.monotonic()
        try:
            # The loop allocates per message: fewer collector passes, ~6% less CPU per row
            # (decision 0123).
            with fewer_collections():
                while not stop.is_set():
                    messages = self._consumer.consume(self.config.fetch_max, self._poll_timeout())
                    if messages:
                        with timed(PROCESSING_SECONDS, component=PROCESSOR, stage="decode"):
                            self._add_all(messages)
                        last_record = time.monotonic()
                    if self._unacked is not None and (self._future is None or self._future.done()):
                        # Commit what the writer landed (or retry what it could not) now, not
                        # when the next batch is due.
                        self._settle()
                        last_record = time.monotonic()  # time spent retrying is not idleness
                    if self._due():
                        self._hand_off()
                        last_record = time.monotonic()
                    if not self._consumer.assignment():
                        last_record = time.monotonic()  # joining the group is not idleness
                    elif idle_exit_s is not None and time.monotonic() - last_record > idle_exit_s:
                        break
                self.flush()
        finally:
            # Whatever was not written is not committed: it is read again by the next owner.
            # Dropping it first keeps close()'s revoke callback from writing after an error.
            self._abandon()
            self._writer.shutdown(wait=True)
            self._consumer.close()
            self._clickhouse.close()
        return self.stats

    def _poll_timeout(self) -> float:
        # While the writer works, come back soon to commit its batch when it is done.
        cap = 0.05 if self._future is not None else 0.5
        if self._batch.started is None:
            return min(self.config.linger_s, cap)
        left = self.config.linger_s - (time.monotonic() - self._batch.started)
        return max(0.0, min(left, cap))

    def _due(self) -> bool:
        started = self._batch.started
        if started is None:
            return False
        return (
            self._batch.pending >= self.config.batch_rows
            or time.monotonic() - started >= self.config.linger_s
        )

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            log.warning("sink: %s (run 'filas topics apply')", error.str())
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("sink: consumer error: %s", error.str())

    # -- records -----------------------------------------------------------------------------

    def _add_all(self, messages: Sequence[Any]) -> None:
        """Decode a fetch into the current batch (the hot loop: names bound once per fetch)."""
        batch = self._batch
        if batch.started is None:
            batch.started = time.monotonic()
            if self.stats.first_record_at is None:
                self.stats.first_record_at = batch.started
        if self._native and self._add_bulk(messages):
            return
        offsets, native = batch.offsets, self._native
        seen: dict[str, int] = {}
        added = 0
        for msg in messages:
            if msg.error():
                self._on_error(msg.error())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            offsets[(topic, partition)] = offset + 1
            seen[topic] = seen.get(topic, 0) + 1
            value = msg.value()
            if value is None:  # a tombstone on a compacted state topic: nothing to land
                continue
            if topic in native and value[:5] == native[topic][0]:
                raw = self._raw(topic)
                raw.values.append(value)
                raw.partitions.append(partition)
                raw.offsets.append(offset)
                raw.timestamps.append(msg.timestamp()[1])
                raw.keys.append(msg.key())
                added += 1
                continue
            added += self._add_one(msg, topic, partition, offset, value)
        batch.pending += added
        for topic, n in seen.items():
            self._events_in[topic].inc(n)

    def _add_bulk(self, messages: Sequence[Any]) -> bool:
        """The common fetch: one natively decoded topic, no errors, no tombstones. Handled with
        one pass per attribute (no per-message statements); False: not that case, nothing done.
        """
        errors = [m.error() for m in messages]
        if errors.count(None) != len(errors):
            return False
        topics = {m.topic() for m in messages}
        if len(topics) != 1:
            return False
        topic = topics.pop()
        if topic not in self._native:
            return False
        values = [m.value() for m in messages]
        if None in values:
            return False
        partitions = [m.partition() for m in messages]
        offsets = [m.offset() for m in messages]
        batch = self._batch
        # Offsets ascend per partition within a fetch: the last one per partition wins.
        for partition, offset in dict(zip(partitions, offsets, strict=True)).items():
            batch.offsets[(topic, partition)] = offset + 1
        raw = self._raw(topic)
        raw.values.extend(values)
        raw.partitions.extend(partitions)
        raw.offsets.extend(offsets)
        raw.timestamps.extend([m.timestamp()[1] for m in messages])
        raw.keys.extend([m.key() for m in messages])
        batch.pending += len(messages)
        self._events_in[topic].inc(len(messages))
        return True

    def _raw(self, topic: str) -> _Raw:
        raw = self._batch.raw.get(topic)
        if raw is None:
            raw = self._batch.raw[topic] = _Raw()
        return raw

    def _decode_raw(self) -> None:
        """Decode the current batch's kept messages, one native call per topic (the writer's
        INSERT of the previous batch overlaps it); records dead-lettered here leave ``pending``.
        """
        batch = self._batch
        raws, batch.raw = batch.raw, {}
        for topic, raw in raws.items():
            added = self._add_native(topic, raw)
            batch.pending -= len(raw.values) - added

    def _add_native(self, topic: str, raw: _Raw) -> int:
        """Messages of one topic (in the reader's schema) decoded natively into one column
        block; if that fails (a poison body among them), each through the per-record path,
        which names it. Returns the rows added."""
        count = len(raw.values)
        if not count:
            return 0
        header_bytes, decoder = self._native[topic]
        try:
            columns = decoder.decode_series(header_bytes, raw.values)
        except BatchDecodeError as exc:
            held = [
                _Held(topic, *fields)
                for fields in zip(
                    raw.partitions, raw.offsets, raw.timestamps, raw.keys, raw.values, strict=True
                )
            ]
            ours = [h for h in held if h.value()[:5] == header_bytes]
            if 0 < len(ours) < count:
                # Other writer versions among them (a bulk fetch does not look at headers):
                # those one by one, the rest natively again.
                mine = _Raw(
                    values=[h.value() for h in ours],
                    partitions=[h.partition() for h in ours],
                    offsets=[h.offset() for h in ours],
                    timestamps=[h.timestamp()[1] for h in ours],
                    keys=[h.key() for h in ours],
                )
                others = [h for h in held if h.value()[:5] != header_bytes]
                return self._add_native(topic, mine) + self._add_each(others)
            log.debug("sink: %d records of %s decoded one by one (%s)", count, topic, exc)
            return self._add_each(held)
        columns.append(pl.repeat(topic, count, dtype=pl.String, eager=True))
        columns.append(pl.Series(raw.partitions, dtype=pl.Int64))
        columns.append(pl.Series(raw.offsets, dtype=pl.Int64))
        columns.append(pl.Series(raw.timestamps, dtype=pl.Int64))
        self._batch.blocks[topic].append(columns)
        return count

    def _add_each(self, held: Sequence[_Held]) -> int:
        return sum(self._add_one(h, h.topic(), h.partition(), h.offset(), h.value()) for h in held)

    def _add_one(self, msg: Any, topic: str, partition: int, offset: int, value: bytes) -> int:
        """One record through the compiled decoder, else the general path: rows added (0/1)."""
        compiled = self._fast.get(topic)
        if compiled is not None and value[:5] == compiled[0]:
            # A bad body raises here; the general path below then names the error (and
            # would land the record, were the compiled decoder ever wrong about a valid one).
            try:
                row = compiled[1](value, 5)
            except Exception:  # noqa: S110 - the general path below names the error
                pass
            else:
                row += (topic, partition, offset, msg.timestamp()[1])
                self._batch.rows[topic].append(row)
                return 1
        return 1 if self._add_decoded(msg, topic, partition, offset, value) else 0

    def _add_decoded(self, msg: Any, topic: str, partition: int, offset: int, value: bytes) -> bool:
        """The general path (registry deserializer, any writer version); False: dead letter."""
        table = self._tables[topic]
        try:
            record = self._serdes[topic].deserialize(value)
            row = table.row(record, topic, partition, offset, msg.timestamp()[1])
        except (DecodeError, ValidationError, RowConversionError) as exc:
            self._bury(table, msg, exc)
            return False
        self._batch.rows[topic].append(row)
        return True

    def _add(self, msg: Any) -> None:
        """One record (fetched while backing off), into the current batch."""
        self._add_all([msg])

    def _bury(self, table: Table, msg: Any, error: FilasError) -> None:
        stamp = msg.timestamp()[1]
        source = SourceRecord(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp_ms=stamp if stamp and stamp > 0 else None,
            key=msg.key(),
            value=msg.value(),
        )
        if not table.topic.dead_letter:
            # A topic without a dead-letter queue (filas.logs): its policy is skip.
            self.stats.skipped += 1
            ERRORS.labels(PROCESSOR, "skipped").inc()
            log.warning(
                "sink: %s[%d]@%d skipped: %s", source.topic, source.partition, source.offset, error
            )
            return
        record = dead_letter(source, error, PROCESSOR, redact_value=self._redact[msg.topic()])
        self._dead_letters.send(table.topic, record)
        self.stats.dead_letters += 1
        DEAD_LETTERS.labels(PROCESSOR, msg.topic()).inc()
        log.warning(
            "sink: %s[%d]@%d -> dead letters: %s",
            source.topic,
            source.partition,
            source.offset,
            error,
        )

    # -- writing -----------------------------------------------------------------------------

    def _hand_off(self) -> None:
        """Settle the batch in flight, then give the current one to the writer thread."""
        self._settle()
        batch = self._batch
        if batch.started is None:
            return
        self._decode_raw()
        self._batch = self._new_batch()
        BATCH_SIZE.labels(PROCESSOR).observe(batch.pending)
        self._unacked = batch
        self._future = self._writer.submit(self._write_timed, batch)

    def flush(self, *, retry: bool = True) -> None:
        """Land everything read so far: insert, wait for dead letters, commit; retry while
        retriable. On return nothing is in flight.

        ``retry=False`` (inside a rebalance callback, where polling is not allowed) raises the
        first error instead.
        """
        self._settle(retry=retry)
        if self._batch.started is None:
            return
        self._hand_off()
        self._settle(retry=retry)

    def _settle(self, *, retry: bool = True) -> None:
        """Wait for the writer's attempt at the unacknowledged batch; write it here (with
        backoff, partitions paused) if that failed; then commit its offsets."""
        batch = self._unacked
        if batch is None:
            return
        future, self._future = self._future, None
        self._flushing = True
        delay = self.config.backoff_initial_s
        started = time.perf_counter()
        try:
            while True:
                try:
                    if future is not None:
                        attempt, future = future, None
                        try:
                            attempt.result()
                        finally:
                            # Waiting for the writer is not work: its INSERT is timed there.
                            started = time.perf_counter()
                    else:
                        self._write(batch)
                    with timed(DEPENDENCY_SECONDS, component=PROCESSOR, dependency="kafka"):
                        self._dead_letters.flush()
                    break
                except (ClickHouseError, DeliveryError) as exc:
                    ERRORS.labels(PROCESSOR, exc.code).inc()
                    if not exc.retriable or not retry:
                        raise
                    if self._stop.is_set():
                        # Shutting down with the batch unwritten: nothing is committed, so the
                        # next start reads those records again.
                        log.warning(
                            "sink: stopping with %d rows unwritten (%s)", batch.pending, exc
                        )
                        self._abandon()
                        return
                    self.stats.retries += 1
                    self._pause()
                    log.warning("sink: batch not written (%s); retry in %.2fs", exc, delay)
                    self._wait(delay)
                    delay = min(delay * 2, self.config.backoff_max_s)
        finally:
            self._flushing = False
        self._commit(batch.offsets)
        self._unacked = None
        PROCESSING_SECONDS.labels(PROCESSOR, "flush").observe(time.perf_counter() - started)
        self._resume()
        self.stats.batches += 1

    def _abandon(self) -> None:
        if self._future is not None:
            # An INSERT cannot be called back: let it end (its rows, if acknowledged, are found
            # by the next owner through their lineage) before anything else uses the client.
            wait([self._future])
            self._future = None
        self._batch = self._new_batch()
        self._unacked = None

    def _write_timed(self, batch: _Batch) -> None:
        """The writer thread's attempt, timed as the sink's own stage: the dependency rule
        (decision 0046) compares ClickHouse's seconds with all processing seconds."""
        with timed(PROCESSING_SECONDS, component=PROCESSOR, stage="insert"):
            self._write(batch)

    def _write(self, batch: _Batch) -> None:
        """INSERT each table's rows (writer thread, or this one when retrying); a table whose
        rows were acknowledged is not sent again by a retry."""
        for name, rows in batch.rows.items():
            blocks = batch.blocks[name]
            if not rows and not blocks:
                continue
            table = self._tables[name]
            # Fresh lists per attempt (the driver rewrites a column's list in place); Series
            # are never changed.
            columns = _columns(blocks, rows) if blocks else None
            count = len(columns[0]) if columns else len(rows)
            with (
                self._clickhouse_lock,
                timed(DEPENDENCY_SECONDS, component=PROCESSOR, dependency="clickhouse"),
            ):
                if columns is not None:
                    self._clickhouse.insert_columns(table.name, table.insert_columns, columns)
                else:
                    self._clickhouse.insert(table.name, table.insert_columns, rows)
            EVENTS_OUT.labels(PROCESSOR, name).inc(count)
            self.stats.rows[name] = self.stats.rows.get(name, 0) + count
            batch.pending -= count
            batch.rows[name] = []
            batch.blocks[name] = []
            self.stats.last_insert_at = time.monotonic()

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # The rows are in ClickHouse; the next owner resumes from max(_offset) + 1.
            log.warning("sink: commit failed (%s); ClickHouse lineage covers it", exc)
        offsets.clear()

    def _wait(self, seconds: float) -> None:
        """Back off while serving the group (heartbeats, rebalances); paused: no new records."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            msg = self._consumer.poll(min(left, 0.5))
            if msg is not None and not msg.error():
                self._add(msg)  # fetched before the pause took effect: keep it, it is bounded

    def _pause(self) -> None:
        if not self._paused:
            assignment = self._consumer.assignment()
            if assignment:
                self._consumer.pause(assignment)
            self._paused = True

    def _resume(self) -> None:
        if self._paused:
            assignment = self._consumer.assignment()
            if assignment:
                self._consumer.resume(assignment)
            self._paused = False

    # -- rebalance ---------------------------------------------------------------------------

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self._flushing:
            try:
                self.flush(retry=False)
                return
            except (ClickHouseError, DeliveryError) as exc:
                log.warning("sink: flush on revoke failed (%s); the next owner replays", exc)
        # Not written: forget those partitions' rows; their next owner reads them again.
        revoked = {(p.topic, p.partition) for p in partitions}
        self._batch.drop(revoked)
        if self._unacked is not None:
            self._unacked.drop(revoked)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        positions = self.start_positions(consumer, partitions)
        consumer.assign(positions)
        if self._paused:
            consumer.pause(positions)

    def start_positions(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> list[TopicPartition]:
        """Committed offsets, moved forward to what ClickHouse already holds."""
        committed = consumer.committed(partitions, timeout=30)
        held = self._held_offsets({p.topic for p in partitions})
        for tp in committed:
            top = held.get((tp.topic, tp.partition))
            if top is not None and (tp.offset < 0 or top + 1 > tp.offset):
                log.info(
                    "sink: %s[%d] resumes at %d from ClickHouse (committed %d)",
                    tp.topic,
                    tp.partition,
                    top + 1,
                    tp.offset,
                )
                key = f"{tp.topic}[{tp.partition}]"
                self.stats.resumed_from_clickhouse[key] = top + 1
                tp.offset = top + 1
        return list(committed)

    def _held_offsets(self, topics: set[str]) -> dict[tuple[str, int], int]:
        deadline = time.monotonic() + self.config.assign_timeout_s
        delay = self.config.backoff_initial_s
        while True:
            try:
                held: dict[tuple[str, int], int] = {}
                for topic in topics:
                    # Identifiers cannot be parameters; the name is backquoted by quote().
                    table = quote(self._tables[topic].name)
                    with self._clickhouse_lock:
                        rows = self._clickhouse.query(
                            f"SELECT _partition, max(_offset) FROM {table} "  # noqa: S608
                            "WHERE _topic = %(topic)s GROUP BY _partition",
                            {"topic": topic},
                        )
                    for partition, top in rows:
                        held[(topic, int(partition))] = int(top)
                return held
            except ClickHouseError as exc:
                if not exc.retriable or time.monotonic() + delay > deadline:
                    raise
                log.warning("sink: cannot read held offsets (%s); retry in %.2fs", exc, delay)
                self._sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_s)


def _columns(
    blocks: list[list[pl.Series]], rows: list[Sequence[Any]]
) -> list[pl.Series] | list[list[Any]]:
    """One INSERT's columns: the blocks' columns joined (Series, written from their buffers by
    native_block.py), then, if any, the row tuples' (all as new lists)."""
    if not rows:
        if len(blocks) == 1:
            return blocks[0]
        try:
            return [pl.concat(parts, rechunk=True) for parts in zip(*blocks, strict=True)]
        except pl.exceptions.PolarsError:  # dtypes differ between fetches: as lists
            pass
    columns: list[list[Any]] = [[] for _ in blocks[0]]
    for block in blocks:
        for column, part in zip(columns, block, strict=True):
            column += part.to_list()
    if rows:
        for column, values in zip(columns, zip(*rows, strict=True), strict=True):
            column.extend(values)
    return columns


class ProducerDeadLetters:
    """Dead letters through the producer SDK to each topic's ``.dlq`` topic."""

    def __init__(
        self, producer: EventProducer, dead_letter_topic: Callable[[TopicSpec], TopicSpec]
    ) -> None:
        self._producer = producer
        self._dlq = dead_letter_topic

    def send(self, spec: TopicSpec, record: Mapping[str, Any]) -> None:
        self._producer.emit(self._dlq(spec), record)

    def flush(self) -> None:
        self._producer.flush()
