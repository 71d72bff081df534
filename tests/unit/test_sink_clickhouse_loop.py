"""The sink loop with in-memory fakes of Kafka, ClickHouse and the dead-letter producer."""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
from confluent_kafka import TopicPartition
from fastavro import schemaless_reader, schemaless_writer
from prometheus_client import REGISTRY

from consumers.clickhouse.errors import ClickHouseError
from consumers.clickhouse.sink import ClickHouseSink, SinkConfig, _Batch, _Raw
from consumers.clickhouse.tables import Table, build_table
from filas.catalog import Catalog, TopicSpec
from filas.errors import DecodeError
from schemas.catalog import SchemaCatalog
from schemas.samples import sample_records

TOPIC = "radius.accounting"


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes:
        return b"k"

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class FakeConsumer:
    """Hands out queued messages from assigned, unpaused partitions; records commits."""

    def __init__(self, messages: list[FakeMessage], committed: Mapping[int, int] | None = None):
        self.queue = list(messages)
        self.committed_offsets: dict[int, int] = dict(committed or {})
        self.commits: list[dict[int, int]] = []
        self.paused: set[int] = set()
        self.assigned: list[TopicPartition] = []
        self.pause_calls = 0
        self.on_assign: Any = None
        self.closed = False

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any) -> None:
        self.on_assign = on_assign
        on_assign(self, [TopicPartition(TOPIC, p) for p in (0, 1)])

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.committed_offsets.get(tp.partition, -1001))
            for tp in partitions
        ]

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions
        starts = {tp.partition: tp.offset for tp in partitions}
        self.queue = [m for m in self.queue if m.offset() >= starts.get(m.partition(), -1)]

    def assignment(self) -> list[TopicPartition]:
        return self.assigned

    def _take(self, n: int) -> list[FakeMessage]:
        out = [m for m in self.queue if m.partition() not in self.paused][:n]
        for m in out:
            self.queue.remove(m)
        return out

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        return self._take(n)

    def poll(self, timeout: float) -> FakeMessage | None:
        taken = self._take(1)
        return taken[0] if taken else None

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.pause_calls += 1
        self.paused |= {tp.partition for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in partitions}

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        self.commits.append({tp.partition: tp.offset for tp in offsets})
        self.committed_offsets.update({tp.partition: tp.offset for tp in offsets})

    def close(self) -> None:
        self.closed = True


class FakeClickHouse:
    def __init__(self, held: Mapping[int, int] | None = None, failures: int = 0) -> None:
        self.rows: list[Sequence[Any]] = []
        self.held = dict(held or {})
        self.failures = failures
        self.inserts = 0
        self.columnar_inserts = 0
        self.closed = False

    def insert(self, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> int:
        if self.failures:
            self.failures -= 1
            raise ClickHouseError("connection refused", retriable=True)
        assert len(rows[0]) == len(columns)
        self.inserts += 1
        self.rows.extend(rows)
        return len(rows)

    def insert_columns(
        self, table: str, columns: tuple[str, ...], data: Sequence[list[Any]] | Sequence[pl.Series]
    ) -> int:
        assert len(data) == len(columns)
        assert len({len(c) for c in data}) == 1
        self.columnar_inserts += 1
        return self.insert(table, columns, [tuple(r) for r in zip(*data, strict=True)])

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        assert "max(_offset)" in sql
        return sorted(self.held.items())

    def close(self) -> None:
        self.closed = True


class FakeSerde:
    def deserialize(self, data: bytes | bytearray | memoryview | None) -> dict[str, Any]:
        if data == b"poison":
            raise DecodeError("not Avro")
        now = datetime(2026, 1, 1, tzinfo=UTC)
        return {
            "envelope": {"event_id": "e", "occurred_at": now, "source_system": "t"},
            "login": bytes(data or b"").decode(),
            "status_type": "start",
            "session_id": "s",
            "nas_ip_address": "10.0.0.1",
            "input_octets": 0,
            "output_octets": 0,
            "input_packets": 0,
            "output_packets": 0,
            "session_time_s": 0,
            "delay_s": 0,
            "event_at": now,
            "received_at": now,
        }


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.flushes = 0

    def send(self, spec: TopicSpec, record: Mapping[str, Any]) -> None:
        self.sent.append(dict(record))

    def flush(self) -> None:
        self.flushes += 1


def table() -> Table:
    spec = Catalog.build().get(TOPIC)
    return build_table(spec, SchemaCatalog.load().get(spec.value_schema))


def messages(per_partition: int) -> list[FakeMessage]:
    return [FakeMessage(p, o, b"ana") for o in range(per_partition) for p in (0, 1)]


def sink(
    consumer: FakeConsumer, clickhouse: FakeClickHouse, dead: FakeDeadLetters | None = None
) -> ClickHouseSink:
    return ClickHouseSink(
        consumer=consumer,
        clickhouse=clickhouse,
        tables={TOPIC: table()},
        serdes=lambda spec: FakeSerde(),
        dead_letters=dead or FakeDeadLetters(),
        config=SinkConfig(batch_rows=100, linger_s=0.05, backoff_initial_s=0.01),
        sleep=lambda s: None,
    )


def test_rows_are_inserted_in_batches_and_committed_after_the_insert() -> None:
    consumer, clickhouse = FakeConsumer(messages(150)), FakeClickHouse()
    stats = sink(consumer, clickhouse).run(idle_exit_s=0.2)
    assert stats.total_rows == 300
    assert len(clickhouse.rows) == 300
    assert {(r[-3], r[-2]) for r in clickhouse.rows} == {(p, o) for o in range(150) for p in (0, 1)}
    assert consumer.committed_offsets == {0: 150, 1: 150}
    assert clickhouse.inserts == len(consumer.commits)  # one commit per acknowledged insert
    assert consumer.closed
    assert clickhouse.closed


def test_clickhouse_down_pauses_retries_and_loses_nothing() -> None:
    consumer, clickhouse = FakeConsumer(messages(150)), FakeClickHouse(failures=4)
    stats = sink(consumer, clickhouse).run(idle_exit_s=0.2)
    assert stats.retries == 4
    assert consumer.pause_calls >= 1
    assert not consumer.paused, "partitions resume once ClickHouse is back"
    assert len(clickhouse.rows) == 300
    assert len({(r[-3], r[-2]) for r in clickhouse.rows}) == 300
    assert consumer.committed_offsets == {0: 150, 1: 150}


def test_nothing_is_committed_while_clickhouse_refuses_and_stop_gives_up_cleanly() -> None:
    consumer, clickhouse = FakeConsumer(messages(10)), FakeClickHouse(failures=10**9)
    stop = threading.Event()
    worker = threading.Thread(target=sink(consumer, clickhouse).run, args=(stop,), daemon=True)
    worker.start()
    worker.join(0.5)
    assert worker.is_alive(), "the sink keeps retrying while ClickHouse refuses"
    assert consumer.paused == {0, 1}
    stop.set()
    worker.join(20)
    assert not worker.is_alive()
    assert clickhouse.rows == []
    assert consumer.commits == []
    assert consumer.closed


def test_poison_goes_to_dead_letters_and_the_rest_lands() -> None:
    batch = [*messages(5), FakeMessage(0, 5, b"poison"), FakeMessage(0, 6, b"bia")]
    consumer, clickhouse, dead = FakeConsumer(batch), FakeClickHouse(), FakeDeadLetters()
    stats = sink(consumer, clickhouse, dead).run(idle_exit_s=0.2)
    assert stats.dead_letters == 1
    assert len(clickhouse.rows) == 11
    (letter,) = dead.sent
    assert letter["source_offset"] == 5
    assert letter["error_code"] == "decode"
    assert letter["raw_value"] == b"poison"
    assert dead.flushes >= 1
    assert consumer.committed_offsets == {0: 7, 1: 5}


def test_start_resumes_after_what_clickhouse_holds_when_ahead_of_the_commit() -> None:
    # Partition 0: committed 10 but ClickHouse holds up to 59 (crash before the commit).
    # Partition 1: committed 40, ClickHouse holds up to 29 (older rows): the commit wins.
    consumer = FakeConsumer(messages(100), committed={0: 10, 1: 40})
    clickhouse = FakeClickHouse(held={0: 59, 1: 29})
    stats = sink(consumer, clickhouse).run(idle_exit_s=0.2)
    landed = {(r[-3], r[-2]) for r in clickhouse.rows}
    assert min(o for p, o in landed if p == 0) == 60
    assert min(o for p, o in landed if p == 1) == 40
    assert stats.total_rows == 40 + 60
    assert stats.resumed_from_clickhouse == {f"{TOPIC}[0]": 60}


class OrderedClickHouse(FakeClickHouse):
    """Checks, at every INSERT, what the pipelined sink promises (docs/decisions/0056): one
    INSERT at a time, and per partition ClickHouse holds a gap-free prefix of the log."""

    def __init__(self, consumer: CountingConsumer) -> None:
        super().__init__()
        self.consumer = consumer
        self.active = 0
        self.overlapped = False
        self.attempts = 0
        self.gate: threading.Event | None = None
        self.gate_opened = False
        self.violations: list[str] = []
        self._lock = threading.Lock()

    def insert(self, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> int:
        with self._lock:
            self.active += 1
            if self.active > 1:
                self.violations.append("two INSERTs in flight")
        try:
            self.attempts += 1
            if self.attempts == 1 and self.gate is not None:
                # Held until the test's event (a revoke) has begun: in flight at that moment.
                self.gate_opened = self.gate.wait(10)
            elif self.attempts == 1:
                # The first batch waits (generously) for the sink to read on meanwhile: the
                # next batch is consumed and decoded while this INSERT is in flight.
                fetches = self.consumer.fetches
                deadline = threading.Event()
                for _ in range(400):
                    if self.consumer.fetches > fetches:
                        self.overlapped = True
                        break
                    deadline.wait(0.025)
            written = super().insert(table, columns, rows)
            held: dict[int, set[int]] = {}
            for row in self.rows:
                held.setdefault(row[-3], set()).add(row[-2])
            for partition, offsets in held.items():
                if offsets != set(range(len(offsets))):
                    self.violations.append(f"partition {partition} has a gap")
            return written
        finally:
            with self._lock:
                self.active -= 1


class CountingConsumer(FakeConsumer):
    """Counts fetches; at each commit, checks that ClickHouse holds every committed record."""

    def __init__(self, messages: list[FakeMessage]) -> None:
        super().__init__(messages)
        self.fetches = 0
        self.clickhouse: FakeClickHouse | None = None
        self.early_commits: list[dict[int, int]] = []

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        taken = self._take(n)
        if taken:
            self.fetches += 1
        return taken

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert self.clickhouse is not None
        held = {(r[-3], r[-2]) for r in self.clickhouse.rows}
        for tp in offsets:
            if not all((tp.partition, o) in held for o in range(tp.offset)):
                self.early_commits.append({tp.partition: tp.offset})
        super().commit(offsets, asynchronous)


def _samples(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"component": "clickhouse-sink", **labels}) or 0.0


def test_the_next_batch_is_read_while_the_previous_one_is_inserted() -> None:
    inserts_before = _samples("filas_processing_seconds_count", stage="insert")
    consumer = CountingConsumer(messages(400))
    clickhouse = OrderedClickHouse(consumer)
    consumer.clickhouse = clickhouse
    the_sink = ClickHouseSink(
        consumer=consumer,
        clickhouse=clickhouse,
        tables={TOPIC: table()},
        serdes=lambda spec: FakeSerde(),
        dead_letters=FakeDeadLetters(),
        # Fetches of 50 rows, batches of 100: several fetches per batch.
        config=SinkConfig(batch_rows=100, linger_s=5.0, fetch_max=50),
        sleep=lambda s: None,
    )
    stats = the_sink.run(idle_exit_s=0.3)
    assert stats.total_rows == 800
    assert clickhouse.overlapped, "the sink waited for the INSERT before reading on"
    assert clickhouse.violations == []
    assert consumer.early_commits == [], "an offset was committed before ClickHouse held it"
    assert consumer.committed_offsets == {0: 400, 1: 400}
    assert len({(r[-3], r[-2]) for r in clickhouse.rows}) == len(clickhouse.rows) == 800
    # The writer's INSERTs count as the sink's processing time (the dependency rule, 0046).
    inserted = _samples("filas_processing_seconds_count", stage="insert") - inserts_before
    assert inserted == clickhouse.inserts


def test_an_insert_failing_in_flight_is_retried_before_anything_later_is_written() -> None:
    consumer = CountingConsumer(messages(300))
    clickhouse = OrderedClickHouse(consumer)
    clickhouse.failures = 3  # the writer's attempt and two retries fail
    consumer.clickhouse = clickhouse
    the_sink = ClickHouseSink(
        consumer=consumer,
        clickhouse=clickhouse,
        tables={TOPIC: table()},
        serdes=lambda spec: FakeSerde(),
        dead_letters=FakeDeadLetters(),
        config=SinkConfig(batch_rows=100, linger_s=5.0, fetch_max=50, backoff_initial_s=0.01),
        sleep=lambda s: None,
    )
    stats = the_sink.run(idle_exit_s=0.3)
    assert stats.retries == 3
    assert consumer.pause_calls >= 1
    assert not consumer.paused
    assert clickhouse.violations == []
    assert consumer.early_commits == []
    assert consumer.committed_offsets == {0: 300, 1: 300}
    assert len({(r[-3], r[-2]) for r in clickhouse.rows}) == len(clickhouse.rows) == 600


class RevokingConsumer(CountingConsumer):
    """Revokes partition 1 during a fetch while a batch is in flight; its rest goes elsewhere."""

    def __init__(self, messages: list[FakeMessage], at_fetch: int) -> None:
        super().__init__(messages)
        self.at_fetch = at_fetch
        self.on_revoke: Any = None
        self.revoking = threading.Event()
        self.committed_at_revoke: dict[int, int] = {}

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any) -> None:
        self.on_revoke = on_revoke
        super().subscribe(topics, on_assign, on_revoke)

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        if self.fetches + 1 == self.at_fetch:
            self.revoking.set()
            self.on_revoke(self, [TopicPartition(TOPIC, 1)])
            self.committed_at_revoke = dict(self.committed_offsets)
            self.assigned = [tp for tp in self.assigned if tp.partition != 1]
            self.queue = [m for m in self.queue if m.partition() != 1]
        return super().consume(n, timeout)


def test_a_revoke_with_a_batch_in_flight_lands_and_commits_it_first() -> None:
    consumer = RevokingConsumer(messages(400), at_fetch=4)
    clickhouse = OrderedClickHouse(consumer)
    clickhouse.gate = consumer.revoking  # the first batch's INSERT ends only after the revoke began
    consumer.clickhouse = clickhouse
    the_sink = ClickHouseSink(
        consumer=consumer,
        clickhouse=clickhouse,
        tables={TOPIC: table()},
        serdes=lambda spec: FakeSerde(),
        dead_letters=FakeDeadLetters(),
        config=SinkConfig(batch_rows=100, linger_s=5.0, fetch_max=50),
        sleep=lambda s: None,
    )
    the_sink.run(idle_exit_s=0.3)
    assert clickhouse.gate_opened, "the first batch was not in flight when the revoke came"
    assert clickhouse.violations == []
    assert consumer.early_commits == []
    # Everything read from partition 1 before the revoke was landed and committed in the
    # callback: the next owner starts exactly after it, and ClickHouse holds nothing beyond.
    handed_over = consumer.committed_at_revoke[1]
    assert handed_over > 0
    landed_1 = sorted(r[-2] for r in clickhouse.rows if r[-3] == 1)
    assert landed_1 == list(range(handed_over))
    assert consumer.committed_offsets == {0: 400, 1: handed_over}
    assert len({(r[-3], r[-2]) for r in clickhouse.rows}) == len(clickhouse.rows)


# -- the native (columnar) path: bodies in the reader's schema id, decoded per batch -------------

SCHEMA_ID = 7
READER = b"\x00" + SCHEMA_ID.to_bytes(4, "big")
OLDER = b"\x00" + (SCHEMA_ID - 1).to_bytes(4, "big")


class AvroSerde:
    """The registry deserializer's contract: any known writer id, DecodeError otherwise."""

    schema_id = SCHEMA_ID

    def __init__(self) -> None:
        spec = Catalog.build().get(TOPIC)
        self.schema = SchemaCatalog.load().get(spec.value_schema).parsed

    def deserialize(self, data: bytes | bytearray | memoryview | None) -> dict[str, Any]:
        raw = bytes(data or b"")
        if raw[:5] not in (READER, OLDER):
            raise DecodeError("unknown magic byte or schema id")
        try:
            record: dict[str, Any] = schemaless_reader(io.BytesIO(raw[5:]), self.schema, None)
        except Exception as exc:
            raise DecodeError(f"not Avro: {exc}") from exc
        return record


def avro_messages(per_partition: int, table: Table) -> list[FakeMessage]:
    schema = AvroSerde().schema
    records = sample_records(schema, SchemaCatalog.load().get(table.topic.value_schema).named_types)
    out = []
    for o in range(per_partition):
        for p in (0, 1):
            buffer = io.BytesIO()
            schemaless_writer(buffer, schema, records[(o + p) % len(records)])
            out.append(FakeMessage(p, o, READER + buffer.getvalue()))
    return out


def native_sink(
    consumer: FakeConsumer, clickhouse: FakeClickHouse, dead: FakeDeadLetters
) -> ClickHouseSink:
    return ClickHouseSink(
        consumer=consumer,
        clickhouse=clickhouse,
        tables={TOPIC: table()},
        serdes=lambda spec: AvroSerde(),
        dead_letters=dead,
        config=SinkConfig(batch_rows=60, linger_s=0.05, fetch_max=25, backoff_initial_s=0.01),
        sleep=lambda s: None,
    )


def test_native_batches_land_the_rows_of_the_per_record_path() -> None:
    the_table = table()
    assert the_table.decode_columns is not None
    batch = avro_messages(100, the_table)
    consumer, clickhouse = FakeConsumer(batch), FakeClickHouse(failures=2)
    stats = native_sink(consumer, clickhouse, FakeDeadLetters()).run(idle_exit_s=0.2)
    assert stats.total_rows == 200
    assert stats.retries == 2  # a retried columnar INSERT sends the same rows
    assert clickhouse.columnar_inserts >= 1
    expected = {
        the_table.fast_row(m.value() or b"", 5, TOPIC, m.partition(), m.offset(), 1_700_000_000_000)
        for m in batch
    }
    assert set(map(tuple, clickhouse.rows)) == expected
    assert len(clickhouse.rows) == 200
    assert consumer.committed_offsets == {0: 100, 1: 100}


def test_a_poison_body_or_an_older_writer_in_a_native_batch_loses_nothing() -> None:
    the_table = table()
    batch = avro_messages(30, the_table)
    good = batch[3].value() or b""
    older = FakeMessage(0, 30, OLDER + good[5:])
    poisons = [
        FakeMessage(1, 30, READER + b"garbage"),
        FakeMessage(0, 31, good + b"\x00"),  # trailing bytes: lands as today's path lands it
        FakeMessage(1, 31, good[: len(good) // 2]),  # truncated
    ]
    tombstone = FakeMessage(0, 32, None)
    tail = [FakeMessage(p, o + 33, m.value()) for o, m in enumerate(batch[:10]) for p in (0,)]
    messages_in = [*batch, older, *poisons, tombstone, *tail]
    consumer, clickhouse, dead = FakeConsumer(messages_in), FakeClickHouse(), FakeDeadLetters()
    stats = native_sink(consumer, clickhouse, dead).run(idle_exit_s=0.2)
    assert sorted(d["source_offset"] for d in dead.sent) == [30, 31]
    assert {d["source_partition"] for d in dead.sent} == {1}
    assert stats.dead_letters == 2
    assert stats.total_rows == 60 + 1 + 1 + 10
    landed = {(r[-3], r[-2]) for r in clickhouse.rows}
    assert len(landed) == len(clickhouse.rows) == stats.total_rows
    assert (0, 30) in landed  # the older writer's record, through fastavro
    assert (0, 31) in landed  # trailing bytes are ignored, as the row decoder ignores them
    rows = {(r[-3], r[-2]): r for r in clickhouse.rows}
    assert tuple(rows[(0, 31)]) == the_table.fast_row(good, 5, TOPIC, 0, 31, 1_700_000_000_000)
    assert consumer.committed_offsets == {0: 43, 1: 32}


def test_a_revoke_with_a_native_batch_in_flight_lands_and_commits_it_first() -> None:
    consumer = RevokingConsumer(avro_messages(200, table()), at_fetch=4)
    clickhouse = OrderedClickHouse(consumer)
    clickhouse.gate = consumer.revoking
    consumer.clickhouse = clickhouse
    the_sink = ClickHouseSink(
        consumer=consumer,
        clickhouse=clickhouse,
        tables={TOPIC: table()},
        serdes=lambda spec: AvroSerde(),
        dead_letters=FakeDeadLetters(),
        config=SinkConfig(batch_rows=100, linger_s=5.0, fetch_max=50),
        sleep=lambda s: None,
    )
    the_sink.run(idle_exit_s=0.3)
    assert clickhouse.gate_opened
    assert clickhouse.columnar_inserts >= 1
    assert clickhouse.violations == []
    assert consumer.early_commits == []
    handed_over = consumer.committed_at_revoke[1]
    assert handed_over > 0
    assert sorted(r[-2] for r in clickhouse.rows if r[-3] == 1) == list(range(handed_over))
    assert consumer.committed_offsets == {0: 200, 1: handed_over}


def test_a_batch_drops_the_revoked_partitions_undecoded_decoded_and_row_records() -> None:
    raw = _Raw(
        values=[b"a", b"b", b"c"],
        partitions=[0, 1, 0],
        offsets=[5, 7, 6],
        timestamps=[1, 2, 3],
        keys=[b"k", None, b"k"],
    )
    block = [pl.Series(c) for c in (["x", "y"], [TOPIC, TOPIC], [0, 1], [3, 4], [9, 9])]
    batch = _Batch(
        rows={TOPIC: [("z", TOPIC, 1, 8, 9)]},
        blocks={TOPIC: [block]},
        raw={TOPIC: raw},
        offsets={(TOPIC, 0): 7, (TOPIC, 1): 9},
        pending=6,
    )
    batch.drop({(TOPIC, 1)})
    assert batch.raw[TOPIC].values == [b"a", b"c"]
    assert batch.raw[TOPIC].keys == [b"k", b"k"]
    assert batch.blocks[TOPIC] == []
    assert batch.rows[TOPIC] == [("x", TOPIC, 0, 3, 9)]
    assert batch.offsets == {(TOPIC, 0): 7}
    assert batch.pending == 3
