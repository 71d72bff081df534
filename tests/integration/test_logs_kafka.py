"""Log lines reach ``filas.logs`` on the real broker, decode, and carry no secret."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer
from pydantic import SecretStr

from consumers.clickhouse.app import build_sink, run_migrations, tables_for
from consumers.clickhouse.client import ClickHouse, quote
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_serdes
from filas.catalog import Catalog
from filas.catalog.logs import LOGS
from filas.logs import bind_correlation, configure_logging
from filas.settings import IxcSettings, Settings, TopicsSettings

pytestmark = pytest.mark.integration

TOKEN = f"ixc-token-{uuid.uuid4().hex}"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def consume(settings: Settings, topic: str, expected: int) -> list[Any]:
    consumer = Consumer(
        settings.kafka.client_config()
        | {"group.id": f"read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + 60
    while len(messages) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            messages.append(msg)
    consumer.close()
    return messages


@pytest.mark.usefixtures("restore_root")
def test_logs_reach_the_topic_decoded_and_redacted(platform: Settings, unique_name: str) -> None:
    settings = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "ixc": IxcSettings(token=SecretStr(TOKEN)),
        }
    )
    catalog = Catalog.build(unique_name)
    spec = catalog.resolve(LOGS)
    TopicAdmin(platform.kafka).apply(catalog.only(spec))

    stderr = io.StringIO()
    handle = configure_logging(settings, "it-logs", stream=stderr)
    log = logging.getLogger("filas.it.logs")
    with bind_correlation("corr-it-1"):
        log.info("polling IXC with token %s", TOKEN, extra={"page": 3})
    log.warning("second line")
    handle.close(timeout_s=30)
    assert handle.dropped == 0

    messages = consume(settings, spec.name, 2)
    assert len(messages) == 2
    for msg in messages:
        assert TOKEN.encode() not in msg.value()
    assert TOKEN not in stderr.getvalue()
    serde = build_serdes(settings)(spec)
    records = sorted((serde.deserialize(m.value()) for m in messages), key=lambda r: r["level"])
    info, warning = records
    assert info["message"] == "polling IXC with token ***"
    assert info["envelope"]["correlation_id"] == "corr-it-1"
    assert info["extra"] == {"page": "3"}
    assert (info["service"], info["logger"]) == ("it-logs", "filas.it.logs")
    assert warning["level"] == "WARNING"
    assert {m.key() for m in messages} == {b"it-logs"}


@pytest.mark.usefixtures("restore_root")
def test_logs_land_in_clickhouse_without_the_secret(platform: Settings, unique_name: str) -> None:
    database = f"logs_{uuid.uuid4().hex[:10]}"
    settings = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "ixc": IxcSettings(token=SecretStr(TOKEN)),
            "clickhouse": platform.clickhouse.model_copy(update={"database": database}),
        }
    )
    catalog = Catalog.build(unique_name)
    spec = catalog.resolve(LOGS)
    TopicAdmin(platform.kafka).apply(catalog.only(spec))

    handle = configure_logging(settings, "it-logs-ch", stream=io.StringIO())
    log = logging.getLogger("filas.it.logs")
    for i in range(20):
        log.info("page %d with token=%s", i, TOKEN, extra={"password": TOKEN})
    try:
        raise RuntimeError(f"IXC refused {TOKEN}")
    except RuntimeError:
        log.exception("poll failed")
    handle.close(timeout_s=30)
    assert handle.dropped == 0

    run_migrations(settings, ["filas.logs"])
    sink = build_sink(settings, topics=["filas.logs"], group_id=f"{unique_name}sink")
    stats = sink.run(idle_exit_s=5)
    assert stats.total_rows == 21

    clickhouse = ClickHouse(settings.clickhouse)
    try:
        table = quote(next(iter(tables_for(settings, ["filas.logs"]).values())).name)
        rows = clickhouse.query(f"SELECT * FROM {table}")  # noqa: S608
        assert len(rows) == 21
        dump = repr(rows)
        assert TOKEN not in dump
        assert "***" in dump
        assert "poll failed" in dump
    finally:
        clickhouse.query(f"DROP DATABASE IF EXISTS `{database}`")
        clickhouse.close()
