"""The lag collector, the stalled-group rule and `filas status --json --once` on the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from filas.monitoring.collector import LagCollector
from filas.monitoring.rules import evaluate
from filas.monitoring.samples import compute_status
from filas.settings import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 3


def _produce(settings: Settings, topic: str, count: int, start: int = 0) -> None:
    producer = Producer(settings.kafka.client_config())
    for i in range(start, start + count):
        producer.produce(topic, key=f"login{i % 50}", value=b"x" * 32)
        producer.poll(0)
    assert producer.flush(15) == 0


def _consume_and_commit(settings: Settings, topic: str, group: str, wanted: int) -> int:
    """Consume about ``wanted`` records, commit synchronously, leave the group. Returns count."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    consumed = 0
    next_offsets: dict[int, int] = {}
    deadline = time.monotonic() + 60
    try:
        while consumed < wanted and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=min(100, wanted - consumed), timeout=1):
                assert message.error() is None
                next_offsets[message.partition()] = message.offset() + 1
                consumed += 1
        # Explicit offsets: exactly what was handed to us, so committed == consumed.
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in next_offsets.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()
    return consumed


def test_stopped_consumer_shows_growing_lag_and_is_named_stalled(
    platform: Settings, unique_name: str
) -> None:
    topic = f"{unique_name}monitoring.events"
    group = f"{unique_name}worker"
    admin = AdminClient(platform.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[
        topic
    ].result(15)
    _produce(platform, topic, 2000)
    consumed = _consume_and_commit(platform, topic, group, 800)
    assert 0 < consumed <= 800

    # The consumer is gone; production goes on: lag grows, nothing commits.
    collector = LagCollector(platform.kafka, topic_prefix=unique_name)
    first = collector.sample()
    _produce(platform, topic, 500, start=2000)
    time.sleep(1.0)
    second = collector.sample()
    status = compute_status(first, second)

    [topic_rate] = status.topics
    assert topic_rate.end_offset == 2500
    assert topic_rate.produce_rate is not None
    assert topic_rate.produce_rate > 0
    [lagging] = [g for g in status.groups if g.group == group]
    assert lagging.lag == 2500 - consumed
    assert lagging.members == 0
    assert lagging.partitions == PARTITIONS
    assert lagging.lag_rate is not None
    assert lagging.lag_rate > 0
    assert lagging.consume_rate == 0.0
    assert sum(p.committed or 0 for p in lagging.partition_lags) == consumed

    findings = [f for f in evaluate(status.groups) if f.group == group]
    assert [f.rule for f in findings] == ["group_stalled"]
    assert findings[0].evidence["lag"] == 2500 - consumed

    env = {
        **os.environ,
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": platform.kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": platform.kafka.security_protocol.value,
        "FILAS_TOPICS__PREFIX": unique_name,
    }
    result = subprocess.run(
        [sys.executable, "-m", "filas.cli.main", "status", "--json", "--once", "--interval", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    [row] = [g for g in doc["groups"] if g["group"] == group]
    assert row["topic"] == topic
    assert row["lag"] == 2500 - consumed
    assert row["consume_rate"] == 0.0
    assert [f["rule"] for f in doc["findings"] if f["group"] == group] == ["group_stalled"]
    assert [t["end_offset"] for t in doc["topics"] if t["topic"] == topic] == [2500]

    table = subprocess.run(
        [sys.executable, "-m", "filas.cli.main", "status", "--once", "--interval", "0.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert table.returncode == 0, table.stderr
    assert group in table.stdout
    assert "group_stalled" in table.stdout
