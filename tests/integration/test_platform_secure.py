"""``filas up --secure``: the client listener demands SCRAM-SHA-256; the registry still works.

Its own platform (own home and ports): the session platform is PLAINTEXT.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from filas.local_platform.local import LocalPlatform, RunningPlatform
from filas.local_platform.testing import local_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory, platform_cache_dir: Path
) -> Iterator[RunningPlatform]:
    local = LocalPlatform(
        local_settings(
            tmp_path_factory.mktemp("secure"),
            platform_cache_dir,
            start_timeout_s=240.0,
            scram_username="tester",
            scram_password="s3cret-for-tests",
        )
    )
    try:
        yield local.up(secure=True, registry=True, clickhouse=False)
    finally:
        local.down()


def _produce_one(conf: dict[str, str | int | float | bool], topic: str) -> KafkaError | None:
    """Produce one record; the delivery error, or None when it was acknowledged."""
    producer = Producer({**conf, "message.timeout.ms": 5000, "log_level": 0})
    result: list[KafkaError | None] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        result.append(err)

    producer.produce(topic, value=b"x", on_delivery=report)
    producer.flush(15)
    assert result, "no delivery report within 15 s"
    return result[0]


def test_client_without_credentials_is_refused(secure: RunningPlatform, unique_name: str) -> None:
    plain: dict[str, str | int | float | bool] = {
        "bootstrap.servers": secure.bootstrap_servers,
        "log_level": 0,
    }
    with pytest.raises(KafkaException):
        AdminClient(plain).list_topics(timeout=5)
    assert _produce_one(plain, f"{unique_name}anything") is not None


def test_wrong_password_is_refused(secure: RunningPlatform) -> None:
    conf = {
        **secure.kafka_settings().client_config(),
        "sasl.password": "not-the-password",
        "log_level": 0,
    }
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=5)


def test_scram_client_lists_creates_and_produces(secure: RunningPlatform, unique_name: str) -> None:
    conf = secure.kafka_settings().client_config()
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    admin = AdminClient(conf)
    assert admin.list_topics(timeout=10).brokers
    topic = f"{unique_name}secure"
    for future in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
        future.result(timeout=30)
    assert _produce_one(conf, topic) is None


def test_registry_reaches_scram_kafka(secure: RunningPlatform, unique_name: str) -> None:
    """The registry stores schemas in Kafka over SCRAM too (a registration is a journal write)."""
    assert secure.registry_url is not None
    client = SchemaRegistryClient({"url": secure.registry_url})
    schema = {"type": "record", "name": "S", "fields": [{"name": "a", "type": "int"}]}
    schema_id = client.register_schema(f"{unique_name}value", Schema(json.dumps(schema), "AVRO"))
    assert json.loads(client.get_schema(schema_id).schema_str) == schema
    topics = AdminClient(secure.kafka_settings().client_config()).list_topics(timeout=10).topics
    assert "kafkasql-journal" in topics


def test_env_file_carries_sasl_settings(secure: RunningPlatform) -> None:
    text = secure.env_file.read_text()
    assert "FILAS_KAFKA__SECURITY_PROTOCOL=SASL_PLAINTEXT" in text
    assert "FILAS_KAFKA__SASL_USERNAME=tester" in text
    assert "FILAS_KAFKA__SASL_PASSWORD=s3cret-for-tests" in text
    assert oct(secure.env_file.stat().st_mode & 0o777) == "0o600"
