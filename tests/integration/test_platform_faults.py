"""Brokers crash and restart mid-stream; no acknowledged record may be lost.

Each test module here starts its own cluster (own home, own free ports): killing brokers of the
session platform would break every other test. Records carry unique ids; after the fault, every
id the producer saw acknowledged must be read back, exactly.

The producer uses the SDK's real librdkafka config (``producers.sdk.producer_config``: acks=all,
idempotent) on a plain confluent_kafka Producer, since these topics are not in the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from filas.platform.kafka import KafkaCluster
from filas.platform.maven import KafkaVersions, fetch_kafka
from filas.platform.testing import local_settings
from filas.settings import KafkaSettings
from producers.sdk import producer_config

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

RECORDS = 3000
FAULT_AT = 1000


def _cluster(home: Path, cache_dir: Path, brokers: int) -> KafkaCluster:
    local = local_settings(home, cache_dir, brokers=brokers, start_timeout_s=240.0)
    libs = fetch_kafka(
        cache_dir, KafkaVersions(local.kafka_version, local.log4j_version, local.slf4j_version)
    )
    return KafkaCluster.from_settings(local, libs, brokers=brokers)


@pytest.fixture(scope="module")
def three_brokers(
    tmp_path_factory: pytest.TempPathFactory, platform_cache_dir: Path
) -> Iterator[KafkaCluster]:
    cluster = _cluster(tmp_path_factory.mktemp("kafka3"), platform_cache_dir, 3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop(grace_s=20)


@pytest.fixture(scope="module")
def one_broker(
    tmp_path_factory: pytest.TempPathFactory, platform_cache_dir: Path
) -> Iterator[KafkaCluster]:
    cluster = _cluster(tmp_path_factory.mktemp("kafka1"), platform_cache_dir, 1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop(grace_s=20)


def _create_topic(cluster: KafkaCluster, topic: str, replication: int, min_isr: int) -> None:
    admin = AdminClient(cluster.client_config())
    new = NewTopic(
        topic,
        num_partitions=3,
        replication_factor=replication,
        config={"min.insync.replicas": str(min_isr)},
    )
    for future in admin.create_topics([new]).values():
        future.result(timeout=60)


class _Tally:
    """Ids the broker acknowledged, and the errors for those it did not."""

    def __init__(self) -> None:
        self.acked: set[int] = set()
        self.failed: dict[int, str] = {}

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        record_id = int(msg.value())
        if err is None:
            self.acked.add(record_id)
        else:
            self.failed[record_id] = str(err)


def _produce_with_fault(
    cluster: KafkaCluster,
    topic: str,
    fault: Callable[[], None],
    recover: Callable[[], object] | None = None,
) -> _Tally:
    """Produce RECORDS ids at a steady pace; call ``fault()`` at FAULT_AT, ``recover()`` at
    twice that; then wait for every outstanding ack."""
    settings = KafkaSettings(bootstrap_servers=cluster.bootstrap_servers, linger_ms=5)
    producer = Producer(producer_config(settings))
    tally = _Tally()
    for record_id in range(RECORDS):
        if record_id == FAULT_AT:
            fault()
        if record_id == 2 * FAULT_AT and recover is not None:
            recover()
        producer.produce(
            topic,
            key=str(record_id % 97).encode(),
            value=str(record_id).encode(),
            on_delivery=tally.on_delivery,
        )
        producer.poll(0)
        if record_id % 100 == 0:
            time.sleep(0.05)
    remaining = producer.flush(150)
    assert remaining == 0, f"{remaining} records never got an answer from the cluster"
    return tally


def _consume_ids(cluster: KafkaCluster, topic: str, group: str, want: set[int]) -> list[int]:
    consumer = Consumer(
        {
            **cluster.client_config(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: list[int] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and not want <= set(seen):
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            seen.append(int(msg.value()))
        # Drain a little longer so ids beyond ``want`` (unexpected extras) show up too.
        end = time.monotonic() + 2
        while time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                seen.append(int(msg.value()))
    finally:
        consumer.close()
    return seen


def test_kill_one_of_three_brokers_mid_stream_loses_no_acked_record(
    three_brokers: KafkaCluster, unique_name: str
) -> None:
    topic = f"{unique_name}kill"
    _create_topic(three_brokers, topic, replication=3, min_isr=2)
    # Node 0 is a voter and may be the active controller: the harder case.
    tally = _produce_with_fault(three_brokers, topic, lambda: three_brokers.kill_node(0))
    assert three_brokers.running_nodes() == [1, 2]

    seen = _consume_ids(three_brokers, topic, f"{unique_name}g", tally.acked)

    lost = tally.acked - set(seen)
    assert not lost, f"{len(lost)} acknowledged ids never consumed, e.g. {sorted(lost)[:10]}"
    assert set(seen) <= set(range(RECORDS))
    # Idempotence: a retried batch is not written twice.
    assert len(seen) == len(set(seen)), "duplicates in the log"
    # Two of three replicas stay in sync, so acks=all writes must all have gone on.
    assert not tally.failed, f"{len(tally.failed)} failed, e.g. {next(iter(tally.failed.values()))}"
    assert len(tally.acked) == RECORDS

    three_brokers.start_node(0)
    assert three_brokers.metadata_brokers() == 3


def test_two_of_three_down_refuses_acks_all_writes(
    three_brokers: KafkaCluster, unique_name: str
) -> None:
    """With min.insync.replicas=2, one replica left must refuse writes, not accept them."""
    topic = f"{unique_name}isr"
    _create_topic(three_brokers, topic, replication=3, min_isr=2)
    three_brokers.stop_node(1)
    three_brokers.stop_node(2)
    try:
        settings = KafkaSettings(
            bootstrap_servers=three_brokers.bootstrap_servers, delivery_timeout_ms=8000
        )
        producer = Producer(producer_config(settings))
        tally = _Tally()
        for record_id in range(20):
            producer.produce(topic, value=str(record_id).encode(), on_delivery=tally.on_delivery)
        producer.flush(30)
        assert not tally.acked, "a write was acknowledged with only one in-sync replica"
        assert len(tally.failed) == 20
    finally:
        three_brokers.start_node(1, wait=False)
        three_brokers.start_node(2, wait=False)
        three_brokers.wait_ready()


def test_single_broker_restart_mid_stream_loses_no_acked_record(
    one_broker: KafkaCluster, unique_name: str
) -> None:
    topic = f"{unique_name}restart"
    _create_topic(one_broker, topic, replication=1, min_isr=1)
    tally = _produce_with_fault(
        one_broker,
        topic,
        fault=lambda: one_broker.stop_node(0),
        recover=lambda: one_broker.start_node(0),
    )
    seen = _consume_ids(one_broker, topic, f"{unique_name}g", tally.acked)
    lost = tally.acked - set(seen)
    assert not lost, f"{len(lost)} acknowledged ids never consumed, e.g. {sorted(lost)[:10]}"
    assert len(seen) == len(set(seen)), "duplicates in the log"
    # The producer buffers while the broker is down and delivers after the restart.
    assert not tally.failed
    assert len(tally.acked) == RECORDS
