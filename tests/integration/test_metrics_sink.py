"""``filas sink run`` serves /metrics: scraped over HTTP, its counters match what it landed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from consumers.clickhouse.app import run_migrations, tables_for
from consumers.clickhouse.client import ClickHouse, quote
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.radius import ACCOUNTING
from filas.local_platform.processes import free_port
from filas.monitoring.scrape import Samples, ScrapeError, scrape
from filas.settings import Settings, TopicsSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GOOD = 1500
COMPONENT = "clickhouse-sink"


@pytest.fixture
def settings(platform: Settings, unique_name: str) -> Iterator[Settings]:
    database = f"metrics_{uuid.uuid4().hex[:10]}"
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


def _accounting(i: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": now,
            "source_system": "test",
            "correlation_id": None,
        },
        "login": f"cliente{i % 50}@fibra",
        "status_type": "interim_update",
        "session_id": f"S{i}",
        "nas_ip_address": "10.0.0.1",
        "input_octets": i,
        "event_at": now,
        "received_at": now,
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    return sum(v for (n, ls), v in samples.items() if n == name and set(want) <= set(ls))


def test_sink_metrics_count_what_landed(settings: Settings, tmp_path: Path) -> None:
    catalog = Catalog.build(settings.topics.prefix)
    spec = catalog.resolve(ACCOUNTING)
    TopicAdmin(settings.kafka).apply(catalog.only(spec, catalog.dead_letter_for(spec)))
    run_migrations(settings, ["radius.accounting"])
    with build_producer(settings, catalog=catalog) as producer:
        for i in range(GOOD):
            producer.emit(ACCOUNTING, _accounting(i))
    raw = Producer(settings.kafka.client_config())
    raw.produce(spec.name, key=b"poison", value=b"\x00\x00\x00\x00\x01not avro")
    assert raw.flush(10) == 0

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FILAS_")},
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": settings.kafka.security_protocol.value,
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_CLICKHOUSE__HOST": settings.clickhouse.host,
        "FILAS_CLICKHOUSE__PORT": str(settings.clickhouse.port),
        "FILAS_CLICKHOUSE__DATABASE": settings.clickhouse.database,
        "FILAS_TOPICS__PREFIX": settings.topics.prefix,
        "FILAS_METRICS__PORT": str(port),
    }
    log = tmp_path / "sink.log"
    with log.open("ab") as out:
        sink = subprocess.Popen(
            [sys.executable, "-m", "filas.cli.main", "sink", "run", "--topics",
             "radius.accounting", "--group", f"{settings.topics.prefix}sink",
             "--batch-rows", "500", "--linger", "0.2"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        samples: Samples = {}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            assert sink.poll() is None, log.read_text()
            try:
                samples = scrape(f"http://127.0.0.1:{port}/metrics")
            except ScrapeError:
                continue  # not serving yet
            landed = _value(samples, "filas_events_out_total", component=COMPONENT)
            # Rows count as out when ClickHouse acknowledges them (writer thread); the batch is
            # settled (dead letters flushed, offsets committed: stage 'flush') just after.
            settled = _value(
                samples, "filas_processing_seconds_count", component=COMPONENT, stage="flush"
            ) == _value(samples, "filas_batch_size_count", component=COMPONENT)
            if (
                landed >= GOOD
                and settled
                and _value(samples, "filas_dead_letters_total", component=COMPONENT)
            ):
                break
        assert (
            _value(samples, "filas_events_in_total", component=COMPONENT, topic=spec.name)
            == GOOD + 1
        )
        assert _value(samples, "filas_events_out_total", component=COMPONENT) == GOOD
        assert (
            _value(samples, "filas_dead_letters_total", component=COMPONENT, topic=spec.name) == 1
        )
        batches = _value(samples, "filas_batch_size_count", component=COMPONENT)
        assert batches >= 1
        assert _value(samples, "filas_batch_size_sum", component=COMPONENT) == GOOD
        inserts = _value(
            samples, "filas_dependency_seconds_count", component=COMPONENT, dependency="clickhouse"
        )
        assert 1 <= inserts <= batches
        assert (
            _value(
                samples,
                "filas_dependency_seconds_sum",
                component=COMPONENT,
                dependency="clickhouse",
            )
            > 0
        )
        assert (
            _value(samples, "filas_processing_seconds_count", component=COMPONENT, stage="flush")
            == batches
        )
    finally:
        sink.terminate()
        sink.wait(30)
    table = next(iter(tables_for(settings, ["radius.accounting"]).values())).name
    clickhouse = ClickHouse(settings.clickhouse)
    landed_rows = clickhouse.query(f"SELECT count() FROM {quote(table)} FINAL")[0][0]  # noqa: S608
    clickhouse.close()
    assert landed_rows == GOOD
