"""Brokers crash and restart mid-stream; no acknowledged record may be lost.

Each test module here starts its own cluster (own home, own free ports): killing brokers of the
session platform would break every other test. Records carry unique ids; after the fault, every
id the producer saw acknowledged must be read back, exactly.

Events go through the producer SDK (``EventProducer.emit``: Avro, keyed, acks=all, idempotent)
into the catalog's accounting topic under a per-test prefix; the clusters have no registry, so
the serializer uses confluent's in-process mock registry (same wire format).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from filas.admin.topics import TopicAdmin
from filas.bootstrap import Serdes
from filas.catalog import Catalog
from filas.catalog.radius import ACCOUNTING
from filas.local_platform.kafka import KafkaCluster
from filas.local_platform.maven import KafkaVersions, fetch_kafka
from filas.local_platform.testing import local_settings
from filas.settings import KafkaSettings, RegistrySettings
from producers.envelope import envelope
from producers.sdk import Delivery, DeliveryCallback, DeliveryFailure, EventProducer
from schemas.catalog import SchemaCatalog
from schemas.registry_client import SchemaRegistry

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


def _catalog(cluster: KafkaCluster, prefix: str) -> Catalog:
    """Just the accounting topic, applied as the catalog says (replication 3, min.insync 2 on
    three brokers; clamped to 1/1 on one)."""
    catalog = Catalog.build(prefix)
    spec = catalog.resolve(ACCOUNTING)
    only = catalog.only(spec)
    TopicAdmin(KafkaSettings(bootstrap_servers=cluster.bootstrap_servers)).apply(only)
    return only


def _serdes() -> Serdes:
    # The fault clusters run without a registry; confluent's in-process mock gives the same
    # wire format, and the SDK path under test is otherwise the production one.
    registry = SchemaRegistry(RegistrySettings(url="mock://faults"))
    return Serdes(SchemaCatalog.load(), registry)


def _record(record_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "envelope": envelope("fault-test"),
        "login": f"cliente{record_id % 97}@fibra",
        "status_type": "interim_update",
        "session_id": f"S{record_id}",
        "nas_ip_address": "10.0.0.1",
        "input_octets": record_id,  # the id each acknowledgement is counted by
        "event_at": now,
        "received_at": now,
    }


class _Tally:
    """Ids the broker acknowledged, and the errors for those it did not."""

    def __init__(self) -> None:
        self.acked: set[int] = set()
        self.failed: dict[int, str] = {}

    def callback(self, record_id: int) -> DeliveryCallback:
        def on_delivery(ok: Delivery | None, failure: DeliveryFailure | None) -> None:
            if ok is not None:
                self.acked.add(record_id)
            else:
                self.failed[record_id] = failure.error if failure else "?"

        return on_delivery


def _sdk_producer(
    cluster: KafkaCluster, catalog: Catalog, serdes: Serdes, **kafka: Any
) -> EventProducer:
    settings = KafkaSettings(bootstrap_servers=cluster.bootstrap_servers, linger_ms=5, **kafka)
    return EventProducer(settings, catalog, serdes)


def _produce_with_fault(
    cluster: KafkaCluster,
    catalog: Catalog,
    serdes: Serdes,
    fault: Callable[[], None],
    recover: Callable[[], object] | None = None,
) -> _Tally:
    """Emit RECORDS events through the SDK at a steady pace; call ``fault()`` at FAULT_AT,
    ``recover()`` at twice that; then wait for every outstanding ack."""
    producer = _sdk_producer(cluster, catalog, serdes)
    tally = _Tally()
    for record_id in range(RECORDS):
        if record_id == FAULT_AT:
            fault()
        if record_id == 2 * FAULT_AT and recover is not None:
            recover()
        producer.emit(ACCOUNTING, _record(record_id), on_delivery=tally.callback(record_id))
        producer.poll(0)
        if record_id % 100 == 0:
            time.sleep(0.05)
    producer.flush(150)
    return tally


def _consume_ids(
    cluster: KafkaCluster, catalog: Catalog, serdes: Serdes, group: str, want: set[int]
) -> list[int]:
    spec = catalog.resolve(ACCOUNTING)
    serde = serdes(spec)
    consumer = Consumer(
        {
            **cluster.client_config(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([spec.name])
    seen: list[int] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and not want <= set(seen):
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            seen.append(serde.deserialize(msg.value())["input_octets"])
        # Drain a little longer so ids beyond ``want`` (unexpected extras) show up too.
        end = time.monotonic() + 2
        while time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                seen.append(serde.deserialize(msg.value())["input_octets"])
    finally:
        consumer.close()
    return seen


def test_kill_one_of_three_brokers_mid_stream_loses_no_acked_record(
    three_brokers: KafkaCluster, unique_name: str
) -> None:
    catalog, serdes = _catalog(three_brokers, unique_name), _serdes()
    # Node 0 is a voter and may be the active controller: the harder case.
    tally = _produce_with_fault(three_brokers, catalog, serdes, lambda: three_brokers.kill_node(0))
    assert three_brokers.running_nodes() == [1, 2]

    seen = _consume_ids(three_brokers, catalog, serdes, f"{unique_name}g", tally.acked)

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
    catalog, serdes = _catalog(three_brokers, unique_name), _serdes()
    three_brokers.stop_node(1)
    three_brokers.stop_node(2)
    try:
        producer = _sdk_producer(three_brokers, catalog, serdes, delivery_timeout_ms=8000)
        tally = _Tally()
        for record_id in range(20):
            producer.emit(ACCOUNTING, _record(record_id), on_delivery=tally.callback(record_id))
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
    catalog, serdes = _catalog(one_broker, unique_name), _serdes()
    tally = _produce_with_fault(
        one_broker,
        catalog,
        serdes,
        fault=lambda: one_broker.stop_node(0),
        recover=lambda: one_broker.start_node(0),
    )
    seen = _consume_ids(one_broker, catalog, serdes, f"{unique_name}g", tally.acked)
    lost = tally.acked - set(seen)
    assert not lost, f"{len(lost)} acknowledged ids never consumed, e.g. {sorted(lost)[:10]}"
    assert len(seen) == len(set(seen)), "duplicates in the log"
    # The producer buffers while the broker is down and delivers after the restart.
    assert not tally.failed
    assert len(tally.acked) == RECORDS
