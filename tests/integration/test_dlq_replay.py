"""``filas dlq list/replay`` against real Kafka and the registry: list, re-drive, never twice."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog
from filas.catalog.radius import ACCOUNTING
from filas.cli.dlq_cmds import dlq as dlq_group
from filas.dlq import ORIGIN_HEADER, DeadLetterView, list_dead_letters, replay, replay_group
from filas.errors import DecodeError
from filas.settings import Settings, TopicsSettings
from schemas.dead_letter import SourceRecord, dead_letter

pytestmark = pytest.mark.integration

POISON = b"\x00\x00\x00\x00\x07not avro at all"
KEY = b"cliente1@fibra"


def read_all(settings: Settings, topic: str) -> list[Any]:
    consumer = Consumer(
        settings.kafka.client_config()
        | {"group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    metadata = consumer.list_topics(topic, timeout=10)
    messages: list[Any] = []
    for p in metadata.topics[topic].partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high <= low:
            continue
        consumer.assign([TopicPartition(topic, p, low)])
        deadline = time.monotonic() + 30
        got = 0
        while got < high - low and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                messages.append(msg)
                got += 1
    consumer.close()
    return messages


@pytest.fixture
def setup(platform: Settings, unique_name: str) -> tuple[Settings, Catalog]:
    settings = platform.model_copy(update={"topics": TopicsSettings(prefix=unique_name)})
    catalog = Catalog.build(unique_name)
    source = catalog.resolve(ACCOUNTING)
    dlq = catalog.dead_letter_for(source)
    TopicAdmin(platform.kafka).apply(catalog.only(source, dlq))
    letter = dead_letter(
        SourceRecord(source.name, 2, 41, 1_700_000_000_000, KEY, POISON),
        DecodeError("cannot decode Avro body"),
        "radius-accounting-sink",
    )
    with build_producer(settings, catalog=catalog) as producer:
        producer.emit_sync(dlq, letter)
    return settings, catalog


def test_list_shows_the_letter_and_replay_resends_original_bytes_once(
    setup: tuple[Settings, Catalog],
) -> None:
    settings, catalog = setup
    source = catalog.resolve(ACCOUNTING)
    dlq = catalog.dead_letter_for(source)
    serde = build_serdes(settings)(dlq)

    letters = list(list_dead_letters(settings, serde, dlq))
    assert len(letters) == 1
    view = letters[0]
    assert isinstance(view, DeadLetterView)
    assert (view.source_topic, view.source_partition, view.source_offset) == (source.name, 2, 41)
    assert view.error_code == "decode"
    assert view.size == len(POISON) + len(KEY)

    listed = CliRunner().invoke(dlq_group, ["list", "radius.accounting", "--json"], obj=settings)
    assert listed.exit_code == 0, listed.output
    assert '"source_offset": 41' in listed.output

    dry = replay(settings, catalog, serde, source, dry_run=True)
    assert (dry.replayed, dry.dry_run) == (0, True)
    assert read_all(settings, source.name) == []

    first = replay(settings, catalog, serde, source)
    assert first.replayed == 1
    [msg] = read_all(settings, source.name)
    assert (msg.value(), msg.key(), msg.partition()) == (POISON, KEY, 2)
    assert dict(msg.headers())[ORIGIN_HEADER] == f"{dlq.name}:0:0".encode()

    rerun = CliRunner().invoke(dlq_group, ["replay", "radius.accounting"], obj=settings)
    assert rerun.exit_code == 0, rerun.output
    assert "replayed 0" in rerun.output
    second = replay(settings, catalog, serde, source)
    assert (second.replayed, second.skipped_already_sent) == (0, 0)
    assert len(read_all(settings, source.name)) == 1


def test_a_run_that_died_between_ack_and_commit_does_not_resend(
    setup: tuple[Settings, Catalog],
) -> None:
    settings, catalog = setup
    source = catalog.resolve(ACCOUNTING)
    dlq = catalog.dead_letter_for(source)
    serde = build_serdes(settings)(dlq)
    assert replay(settings, catalog, serde, source).replayed == 1

    # Put the group back where a run that crashed after the ack (before its commit) left it.
    group = replay_group(source)
    consumer = Consumer(settings.kafka.client_config() | {"group.id": group})
    consumer.commit(
        offsets=[TopicPartition(dlq.name, 0, 0, metadata="pending:0")], asynchronous=False
    )
    consumer.close()

    again = replay(settings, catalog, serde, source)
    assert (again.replayed, again.skipped_already_sent) == (0, 1)
    assert len(read_all(settings, source.name)) == 1
