"""The ClickHouse sink against the session's real Kafka, registry and ClickHouse (18.16).

Each test has its own topic prefix (hence its own table names) and its own ClickHouse database.
Counts are checked three ways: ``count()`` (rows physically inserted: a duplicate insert shows
here), ``count() FINAL`` (after ReplacingMergeTree collapsing) and ``uniqExact`` on the lineage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from consumers.clickhouse.app import build_sink, run_migrations, tables_for
from consumers.clickhouse.client import ClickHouse, quote
from consumers.clickhouse.sink import SinkConfig
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.radius import ACCOUNTING
from filas.local_platform.clickhouse import LocalClickHouse
from filas.local_platform.processes import free_port
from filas.settings import Settings, TopicsSettings
from schemas.catalog import SchemaCatalog
from schemas.samples import sample_records

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def settings(platform: Settings, unique_name: str) -> Iterator[Settings]:
    """The platform with this test's topic prefix and its own ClickHouse database."""
    database = f"sink_{uuid.uuid4().hex[:10]}"
    ours = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "clickhouse": platform.clickhouse.model_copy(update={"database": database}),
        }
    )
    yield ours
    admin = ClickHouse(ours.clickhouse, database="default")
    admin.query(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()


def apply_topics(settings: Settings, names: list[str]) -> Catalog:
    catalog = Catalog.build(settings.topics.prefix)
    wanted: dict[str, TopicSpec] = {}
    for name in names:
        spec = catalog.get(name)
        wanted[spec.name] = spec
        if spec.dead_letter:
            dlq = catalog.dead_letter_for(spec)
            wanted[dlq.name] = dlq
    TopicAdmin(settings.kafka).apply(Catalog(wanted, catalog.prefix))
    return catalog


def accounting(i: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": now,
            "source_system": "test",
            "correlation_id": None,
        },
        "login": f"cliente{i % 500}@fibra",
        "status_type": "interim_update",
        "session_id": f"S{i}",
        "nas_ip_address": "10.0.0.1",
        "input_octets": i,
        "event_at": now,
        "received_at": now,
    }


def produce_accounting(settings: Settings, catalog: Catalog, count: int) -> None:
    with build_producer(settings, catalog=catalog) as producer:
        for i in range(count):
            producer.emit(ACCOUNTING, accounting(i))


def counts(clickhouse: ClickHouse, table: str) -> tuple[int, int, int]:
    """(count(), count() FINAL, uniqExact lineage)."""
    name = quote(table)
    raw = clickhouse.query(f"SELECT count() FROM {name}")[0][0]  # noqa: S608
    final = clickhouse.query(f"SELECT count() FROM {name} FINAL")[0][0]  # noqa: S608
    lineage = "uniqExact(_topic, _partition, _offset)"
    unique = clickhouse.query(f"SELECT {lineage} FROM {name}")[0][0]  # noqa: S608
    return int(raw), int(final), int(unique)


def read_all(settings: Settings, topic: str, expected: int, wait_s: float = 30) -> list[Any]:
    consumer = Consumer(
        settings.kafka.client_config()
        | {"group.id": f"read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and len(messages) < expected:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            messages.append(msg)
    # A little longer: more than expected would be a failure too.
    end = time.monotonic() + 2
    while time.monotonic() < end:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            messages.append(msg)
    consumer.close()
    return messages


def test_ddl_of_every_family_is_valid_and_migrate_is_idempotent(settings: Settings) -> None:
    first = run_migrations(settings)
    tables = tables_for(settings)
    assert sorted(first.created) == sorted(t.name for t in tables.values())
    clickhouse = ClickHouse(settings.clickhouse)
    for table in tables.values():
        assert counts(clickhouse, table.name) == (0, 0, 0)
        engine = clickhouse.query(
            "SELECT engine, partition_key, sorting_key FROM system.tables "
            "WHERE database = %(db)s AND name = %(t)s",
            {"db": settings.clickhouse.database, "t": table.name},
        )
        assert engine[0][0] == "ReplacingMergeTree"
        assert "_offset" in engine[0][2]

    again = run_migrations(settings)
    assert not again.changed
    assert not again.type_mismatches

    # A schema that gained an optional field: the table lacks a column the schema now maps.
    target = tables_for(settings, ["radius.accounting"])
    name = next(iter(target.values())).name
    clickhouse.query(f"ALTER TABLE `{name}` DROP COLUMN `nas_port_id`")
    evolved = run_migrations(settings, ["radius.accounting"])
    assert evolved.added_columns == [(name, "nas_port_id")]
    log = clickhouse.query(
        "SELECT statement FROM filas_schema_migrations WHERE table = %(t)s ORDER BY applied_at",
        {"t": name},
    )
    assert any("ADD COLUMN `nas_port_id`" in row[0] for row in log)
    assert not run_migrations(settings, ["radius.accounting"]).changed
    clickhouse.close()


def test_every_family_lands_with_exact_counts(settings: Settings) -> None:
    catalog = Catalog.build(settings.topics.prefix)
    schemas = SchemaCatalog.load()
    names = [t.topic.name.removeprefix(catalog.prefix) for t in tables_for(settings).values()]
    apply_topics(settings, names)
    expected: dict[str, int] = {}
    with build_producer(settings, catalog=catalog) as producer:
        for name in names:
            spec = catalog.get(name)
            schema = schemas.get(spec.value_schema)
            records = sample_records(schema.parsed, schema.named_types)
            copies = 3
            for _ in range(copies):
                for record in records:
                    producer.emit(spec, record)
            expected[name] = copies * len(records)

    run_migrations(settings)
    sink = build_sink(settings, group_id=f"{settings.topics.prefix}sink")
    stats = sink.run(idle_exit_s=5)
    assert stats.dead_letters == 0

    clickhouse = ClickHouse(settings.clickhouse)
    tables = tables_for(settings)
    for name, want in expected.items():
        table = tables[catalog.get(name).name].name
        assert counts(clickhouse, table) == (want, want, want), name
    # Values survive the trip: a map becomes parallel arrays, a timestamp seconds + millis.
    decisions = tables[catalog.get("radius.auth-decisions").name].name
    rows = clickhouse.query(
        f"SELECT reply_attributes_keys, toUnixTimestamp(envelope_occurred_at), "  # noqa: S608
        f"envelope_occurred_at_ms FROM `{decisions}` WHERE length(reply_attributes_keys) = 2 "
        "LIMIT 1"
    )
    assert rows
    assert rows[0][0] == ["k0", "k1"]
    # No column of any table holds a credential.
    secret_columns = clickhouse.query(
        "SELECT table, name FROM system.columns WHERE database = %(db)s AND "
        "(name LIKE '%%password%%' OR name LIKE '%%secret%%' OR name LIKE '%%token%%')",
        {"db": settings.clickhouse.database},
    )
    assert secret_columns == []
    clickhouse.close()


def test_poison_record_goes_to_the_dlq_and_the_rest_lands(settings: Settings) -> None:
    catalog = apply_topics(settings, ["radius.accounting"])
    spec = catalog.resolve(ACCOUNTING)
    produce_accounting(settings, catalog, 200)
    raw = Producer(settings.kafka.client_config())
    # Two in the reader's own schema id, among records decoded a batch at a time in native
    # code (decision 0120): the batch falls back to one by one and only these are buried.
    valid = build_serdes(settings)(spec).serialize(accounting(0))
    poison = [
        b"\x00\x00\x00\x00\x01garbage",
        b"not avro at all",
        valid[:5] + b"garbage",
        valid[: len(valid) // 2],
    ]
    for value in poison:
        raw.produce(spec.name, key=b"cliente1@fibra", value=value)
    raw.flush(10)
    produce_accounting(settings, catalog, 100)

    run_migrations(settings, ["radius.accounting"])
    sink = build_sink(
        settings, topics=["radius.accounting"], group_id=f"{settings.topics.prefix}sink"
    )
    stats = sink.run(idle_exit_s=5)
    assert stats.dead_letters == len(poison)
    assert stats.total_rows == 300

    clickhouse = ClickHouse(settings.clickhouse)
    assert counts(
        clickhouse, next(iter(tables_for(settings, ["radius.accounting"]).values())).name
    ) == (
        300,
        300,
        300,
    )
    clickhouse.close()

    dlq = catalog.dead_letter_for(spec)
    letters = read_all(settings, dlq.name, len(poison))
    assert len(letters) == len(poison)
    serde = build_serdes(settings)(dlq)
    decoded = [serde.deserialize(m.value()) for m in letters]
    assert sorted(d["raw_value"] for d in decoded) == sorted(poison)
    for letter in decoded:
        assert letter["source_topic"] == spec.name
        assert letter["error_code"] == "decode"
        assert letter["processor"] == "clickhouse-sink"
        assert letter["error_message"]


class _NoCommit:
    """A consumer that never commits: the crash between INSERT and commit, made deterministic."""

    def __init__(self, inner: Consumer) -> None:
        self._inner = inner

    def commit(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_crash_between_insert_and_commit_does_not_insert_twice(settings: Settings) -> None:
    catalog = apply_topics(settings, ["radius.accounting"])
    produce_accounting(settings, catalog, 3000)
    run_migrations(settings, ["radius.accounting"])
    group = f"{settings.topics.prefix}sink"
    config = SinkConfig(batch_rows=500, linger_s=0.2)

    first = build_sink(settings, topics=["radius.accounting"], group_id=group, config=config)
    first._consumer = _NoCommit(first._consumer)  # type: ignore[assignment]
    assert first.run(idle_exit_s=4).total_rows == 3000

    second = build_sink(settings, topics=["radius.accounting"], group_id=group, config=config)
    stats = second.run(idle_exit_s=4)
    assert stats.total_rows == 0, "the second run must start where ClickHouse already is"
    assert stats.resumed_from_clickhouse

    table = next(iter(tables_for(settings, ["radius.accounting"]).values())).name
    clickhouse = ClickHouse(settings.clickhouse)
    assert counts(clickhouse, table) == (3000, 3000, 3000)
    clickhouse.close()


def _sink_process(settings: Settings, group: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FILAS_")},
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": settings.kafka.security_protocol.value,
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_CLICKHOUSE__HOST": settings.clickhouse.host,
        "FILAS_CLICKHOUSE__PORT": str(settings.clickhouse.port),
        "FILAS_CLICKHOUSE__DATABASE": settings.clickhouse.database,
        "FILAS_TOPICS__PREFIX": settings.topics.prefix,
    }
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "filas.cli.main",
                "sink",
                "run",
                "--topics",
                "radius.accounting",
                "--group",
                group,
                "--batch-rows",
                "1000",
                "--linger",
                "0.2",
                "--idle-exit",
                "5",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_sink_killed_mid_stream_and_restarted_lands_every_record_once(
    settings: Settings, tmp_path: Path
) -> None:
    total = 40_000
    catalog = apply_topics(settings, ["radius.accounting"])
    run_migrations(settings, ["radius.accounting"])
    produce_accounting(settings, catalog, total)
    table = next(iter(tables_for(settings, ["radius.accounting"]).values())).name
    clickhouse = ClickHouse(settings.clickhouse)
    group = f"{settings.topics.prefix}sink"

    log = tmp_path / "sink.log"
    victim = _sink_process(settings, group, log)
    deadline = time.monotonic() + 90
    landed = 0
    while time.monotonic() < deadline and landed < 5_000:
        time.sleep(0.05)
        landed = counts(clickhouse, table)[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    at_kill = counts(clickhouse, table)[0]
    assert 0 < at_kill < total, f"the kill must land mid-stream ({at_kill} of {total})"

    survivor = _sink_process(settings, group, log)
    assert survivor.wait(180) == 0, log.read_text(errors="replace")[-3000:]
    assert counts(clickhouse, table) == (total, total, total)
    clickhouse.close()


def test_clickhouse_down_under_load_then_back_lands_every_record_once(
    settings: Settings, tmp_path: Path
) -> None:
    """A private ClickHouse (the session's is shared) is stopped while records keep coming."""
    server = LocalClickHouse(
        home=tmp_path / "ch",
        tcp_port=free_port(),
        http_port=free_port(),
        database=settings.clickhouse.database,
    )
    server.start()
    try:
        ours = settings.model_copy(
            update={"clickhouse": settings.clickhouse.model_copy(update={"port": server.tcp_port})}
        )
        catalog = apply_topics(ours, ["radius.accounting"])
        run_migrations(ours, ["radius.accounting"])
        produce_accounting(ours, catalog, 10_000)
        table = next(iter(tables_for(ours, ["radius.accounting"]).values())).name
        sink = build_sink(
            ours,
            topics=["radius.accounting"],
            group_id=f"{ours.topics.prefix}sink",
            config=SinkConfig(batch_rows=1000, linger_s=0.2, backoff_max_s=2),
        )
        stop = threading.Event()
        worker = threading.Thread(target=sink.run, args=(stop,), daemon=True)
        worker.start()
        clickhouse = ClickHouse(ours.clickhouse)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and counts(clickhouse, table)[0] < 10_000:
            time.sleep(0.1)
        assert counts(clickhouse, table)[0] == 10_000

        server.stop()
        down_at = time.monotonic()
        produce_accounting(ours, catalog, 10_000)  # load while ClickHouse is down
        # Down for 30 s (issue 6), counted from the stop, with the load produced meanwhile.
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        assert sink.stats.retries > 0, "the sink must have noticed ClickHouse was down"
        assert worker.is_alive()
        server.start()

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and counts(clickhouse, table)[0] < 20_000:
            time.sleep(0.2)
        stop.set()
        worker.join(60)
        assert not worker.is_alive()
        assert counts(clickhouse, table) == (20_000, 20_000, 20_000)
        assert sink.stats.total_rows == 20_000
        clickhouse.close()
    finally:
        server.stop()
