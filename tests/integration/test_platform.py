"""The session platform (``filas up``'s code) answers: Kafka metadata and a round trip, the
registry across a restart, ClickHouse ``SELECT 1``, and ``platform.env``."""

from __future__ import annotations

import json
import shlex

import pytest
from clickhouse_driver import Client as ClickHouseClient
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from filas.local_platform.testing import PlatformSession
from filas.settings import Settings

pytestmark = pytest.mark.integration


def _create_topic(admin: AdminClient, name: str, partitions: int = 3) -> None:
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
    for future in futures.values():
        future.result(timeout=30)


def test_kafka_answers_metadata_and_round_trips(platform: Settings, unique_name: str) -> None:
    conf = platform.kafka.client_config()
    admin = AdminClient(conf)
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.brokers) >= 1

    topic = f"{unique_name}roundtrip"
    _create_topic(admin, topic)
    producer = Producer({**conf, "acks": "all", "enable.idempotence": True})
    for i in range(10):
        producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    consumer = Consumer({**conf, "group.id": f"{unique_name}g", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen: set[bytes] = set()
    try:
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                seen.add(msg.value())
            if len(seen) == 10:
                break
    finally:
        consumer.close()
    assert seen == {f"v{i}".encode() for i in range(10)}


def test_auto_create_is_disabled(platform: Settings, unique_name: str) -> None:
    """Topics come from the catalog: a typo in a topic name must not create one."""
    producer = Producer({**platform.kafka.client_config(), "message.timeout.ms": 3000})
    errors: list[object] = []
    producer.produce(
        f"{unique_name}typo", value=b"x", on_delivery=lambda err, _msg: errors.append(err)
    )
    producer.flush(10)
    assert errors
    assert errors[0] is not None


def test_registry_keeps_schemas_across_restart(
    platform_session: PlatformSession, unique_name: str
) -> None:
    local, running = platform_session.local, platform_session.running
    if local is None or running is None or running.registry_url is None:
        pytest.skip("registry given by SCHEMA_REGISTRY_URL; not ours to restart")
    subject = f"{unique_name}value"
    schema = {
        "type": "record",
        "name": "Probe",
        "namespace": "filas.test",
        "fields": [{"name": "id", "type": "long"}],
    }
    client = SchemaRegistryClient(platform_session.settings.registry.client_config())
    schema_id = client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))

    registry = local.registry(running.layout)
    registry.stop()
    assert not registry.running()
    registry.start()

    fresh = SchemaRegistryClient(platform_session.settings.registry.client_config())
    assert subject in fresh.get_subjects()
    assert json.loads(fresh.get_schema(schema_id).schema_str) == schema
    assert fresh.get_latest_version(subject).schema_id == schema_id


def test_clickhouse_answers(platform: Settings) -> None:
    ch = platform.clickhouse
    client = ClickHouseClient(
        host=ch.host, port=ch.port, user=ch.user, password=ch.password.get_secret_value()
    )
    try:
        assert client.execute("SELECT 1") == [(1,)]
        databases = {row[0] for row in client.execute("SHOW DATABASES")}
    finally:
        client.disconnect()
    assert ch.database in databases


def test_env_file_points_at_what_runs_and_up_is_idempotent(
    platform_session: PlatformSession,
) -> None:
    local, running = platform_session.local, platform_session.running
    if local is None or running is None:
        pytest.skip("services given by environment variables")
    env: dict[str, str] = {}
    for line in running.env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    assert env["FILAS_KAFKA__BOOTSTRAP_SERVERS"] == running.bootstrap_servers
    if running.registry_url is not None:
        assert env["FILAS_REGISTRY__URL"] == running.registry_url
    if running.clickhouse_port is not None:
        assert env["FILAS_CLICKHOUSE__PORT"] == str(running.clickhouse_port)

    again = local.up(
        brokers=running.layout.brokers,
        registry=running.layout.registry,
        clickhouse=running.layout.clickhouse,
        external_bootstrap=running.layout.external_bootstrap,
    )
    assert again.already_running
    assert again.bootstrap_servers == running.bootstrap_servers
