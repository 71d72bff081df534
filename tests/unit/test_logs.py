"""Structured logging: JSON shape, redaction, correlation, and a stuck sink never blocks."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import SecretStr

from filas.logs import bind_correlation, configure_logging, settings_secrets
from filas.settings import IxcSettings, RadiusSettings, Settings

SECRET = "s3cr3t-nas-shared"
TOKEN = "ixc-token-abcdef123"


class ListSink:
    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []
        self.arrived = threading.Event()

    def send(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)
        self.arrived.set()

    def close(self, timeout_s: float) -> None:
        pass


class StuckSink:
    """A sink whose send never returns (Kafka unreachable with an unbounded wait)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, event: Mapping[str, Any]) -> None:
        self.release.wait()

    def close(self, timeout_s: float) -> None:
        pass


def settings() -> Settings:
    return Settings(
        service_name="unit",
        ixc=IxcSettings(token=SecretStr(TOKEN)),
        radius=RadiusSettings(nas_secrets={"ixc/nas/1": SecretStr(SECRET)}),
    )


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_root")
def test_json_lines_carry_service_level_logger_correlation_host_pid() -> None:
    stream = io.StringIO()
    handle = configure_logging(settings(), "radius-gateway", stream=stream, ship=False)
    try:
        with bind_correlation({"envelope": {"event_id": "e-1", "correlation_id": "corr-9"}}):
            logging.getLogger("filas.radius.gateway").info("accepted %s", "ana", extra={"nas": 7})
        logging.getLogger("x").warning("no context")
    finally:
        handle.close()
    first, second = lines(stream)
    assert first["service"] == "radius-gateway"
    assert first["level"] == "INFO"
    assert first["logger"] == "filas.radius.gateway"
    assert first["message"] == "accepted ana"
    assert first["correlation_id"] == "corr-9"
    assert first["pid"] == os.getpid()
    assert first["host"]
    assert first["extra"] == {"nas": 7}
    assert second["correlation_id"] is None


@pytest.mark.usefixtures("restore_root")
def test_secrets_are_redacted_on_stderr_and_in_shipped_events() -> None:
    stream = io.StringIO()
    sink = ListSink()
    handle = configure_logging(settings(), "unit", stream=stream, ship=sink)
    log = logging.getLogger("filas.test")
    try:
        log.info("connecting with %s", SECRET)
        log.info("url http://h/?token=%s&x=1", "abc123zz")
        log.info("login", extra={"senha": "hunter22", "context": {"password": "pw-x1"}})
        try:
            raise RuntimeError(f"auth failed for {TOKEN}")
        except RuntimeError:
            log.exception("boom")
        deadline = time.monotonic() + 5
        while len(sink.events) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        handle.close()
    text = stream.getvalue() + json.dumps(sink.events, default=str)
    for secret in (SECRET, TOKEN, "abc123zz", "hunter22", "pw-x1"):
        assert secret not in text
    assert "***" in text
    assert len(sink.events) == 4
    assert sink.events[3]["exception"] is not None
    assert "RuntimeError" in sink.events[3]["exception"]


def test_settings_secrets_finds_nested_and_mapped_secrets() -> None:
    found = settings_secrets(settings())
    assert SECRET in found
    assert TOKEN in found
    assert "filas-local-secret" in found


@pytest.mark.usefixtures("restore_root")
def test_a_stuck_sink_never_blocks_the_caller_and_drops_are_counted() -> None:
    sink = StuckSink()
    handle = configure_logging(settings(), "unit", stream=io.StringIO(), ship=sink, queue_size=1000)
    log = logging.getLogger("filas.test.stuck")
    try:
        # The sink never returns until released below: a handler that waited on it would keep
        # the writer thread stuck, so finishing at all proves the caller is never blocked.
        def write() -> None:
            for i in range(10_000):
                log.info("line %d", i)

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=60)
        assert not writer.is_alive(), "logging blocked on a stuck sink"
        assert handle.dropped >= 10_000 - 1000 - 1
    finally:
        sink.release.set()
        handle.close()


@pytest.mark.usefixtures("restore_root")
def test_lines_logged_by_the_sink_itself_are_not_shipped() -> None:
    class LoggingSink(ListSink):
        def send(self, event: Mapping[str, Any]) -> None:
            logging.getLogger("confluent_kafka.fake").warning("producer says hi")
            super().send(event)

    sink = LoggingSink()
    handle = configure_logging(settings(), "unit", stream=io.StringIO(), ship=sink)
    try:
        logging.getLogger("filas.test").info("one")
        assert sink.arrived.wait(5)
        time.sleep(0.2)
    finally:
        handle.close()
    assert [e["message"] for e in sink.events] == ["one"]


@pytest.mark.usefixtures("restore_root")
def test_a_failing_sink_never_raises_into_the_app() -> None:
    class FailingSink(ListSink):
        def send(self, event: Mapping[str, Any]) -> None:
            raise RuntimeError("kafka down")

    handle = configure_logging(settings(), "unit", stream=io.StringIO(), ship=FailingSink())
    try:
        logging.getLogger("filas.test").error("still fine")
        deadline = time.monotonic() + 5
        while handle.dropped < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handle.dropped == 1
    finally:
        handle.close()


@pytest.mark.usefixtures("restore_root")
def test_kafka_client_lines_stay_on_stderr() -> None:
    stream = io.StringIO()
    sink = ListSink()
    handle = configure_logging(settings(), "unit", stream=stream, ship=sink)
    try:
        logging.getLogger("confluent_kafka.producer").warning("broker down")
        logging.getLogger("filas.test").info("two")
        assert sink.arrived.wait(5)
        time.sleep(0.1)
    finally:
        handle.close()
    assert [e["message"] for e in sink.events] == ["two"]
    assert "broker down" in stream.getvalue()
