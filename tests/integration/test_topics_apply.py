"""`filas topics apply` against the real broker: create, idempotence, growth, drift, refusal."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from filas.admin.topic_plan import Action
from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog
from filas.settings import Settings

pytestmark = pytest.mark.integration


def _config(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(15)
    return {k: str(v.value) for k, v in entries.items()}


def test_apply_creates_every_topic_then_is_idempotent(platform: Settings, unique_name: str) -> None:
    catalog = Catalog.build(unique_name)
    admin = TopicAdmin(platform.kafka)

    first = admin.apply(catalog)
    assert {c.action for c in first} == {Action.CREATE}
    assert len(first) == len(catalog)

    second = admin.apply(catalog)
    assert {c.action for c in second} == {Action.IN_SYNC}

    raw = AdminClient(platform.kafka.client_config())
    metadata = raw.list_topics(timeout=10)
    for spec in catalog:
        assert len(metadata.topics[spec.name].partitions) == spec.partitions
    subscribers = catalog.get(f"{unique_name}ixc.subscribers")
    assert _config(raw, subscribers.name)["cleanup.policy"] == "compact"
    accounting = catalog.get(f"{unique_name}radius.accounting")
    conf = _config(raw, accounting.name)
    assert conf["retention.ms"] == str(accounting.retention_ms)
    assert conf["retention.bytes"] == str(accounting.retention_bytes)


def test_apply_grows_partitions_fixes_drift_and_refuses_to_shrink(
    platform: Settings, unique_name: str
) -> None:
    catalog = Catalog.build(unique_name)
    admin = TopicAdmin(platform.kafka)
    name = f"{unique_name}net.alerts"
    only = catalog.only(name)
    admin.apply(only)

    # Someone changed retention by hand: apply reports the drift and restores the catalog value.
    raw = AdminClient(platform.kafka.client_config())
    entry = ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[entry])
    raw.incremental_alter_configs([resource])[resource].result(15)
    # Config changes reach describe_configs asynchronously; wait until the cluster shows it.
    deadline = time.monotonic() + 15
    while _config(raw, name)["retention.ms"] != "1000" and time.monotonic() < deadline:
        time.sleep(0.2)
    [drift] = admin.apply(only)
    assert drift.action is Action.UPDATE_CONFIG
    assert "retention.ms" in drift.detail
    assert _config(raw, name)["retention.ms"] == str(catalog.get(name).retention_ms)

    grown = Catalog({name: replace(catalog.get(name), partitions=9)}, unique_name)
    [grow] = admin.apply(grown)
    assert grow.action is Action.ADD_PARTITIONS
    assert len(raw.list_topics(name, timeout=10).topics[name].partitions) == 9

    [refused] = admin.apply(only)  # the catalog says 6 again: Kafka cannot shrink
    assert refused.action is Action.REFUSED
    assert len(raw.list_topics(name, timeout=10).topics[name].partitions) == 9


def test_describe_counts_records_held(platform: Settings, unique_name: str) -> None:
    catalog = Catalog.build(unique_name)
    name = f"{unique_name}ixc.nas"
    only = catalog.only(name)
    admin = TopicAdmin(platform.kafka)
    admin.apply(only)
    from confluent_kafka import Producer

    producer = Producer(platform.kafka.client_config())
    for i in range(7):
        producer.produce(name, key=f"nas{i}", value=b"x")
    assert producer.flush(15) == 0
    [status] = admin.describe(only)
    assert status.exists
    assert status.records == 7
