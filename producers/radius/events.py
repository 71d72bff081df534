"""Publish gateway events to Kafka without ever making a RADIUS reply wait.

``BufferedPublisher.publish`` only appends to a bounded in-memory buffer (a deque): constant time
on the event loop. Flushes between datagrams encode and hand events to the SDK's producer, and
put back any event whose delivery failed (broker down past ``delivery.timeout.ms``), so events
survive a Kafka outage as long as the buffer holds them. When the buffer is full the oldest event is
dropped, counted in ``stats.dropped`` and logged (at most once per 10 s): authentication never
blocks on Kafka (issue 3's design constraint).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from filas.catalog import TopicSpec
from filas.errors import FilasError

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    def publish(self, topic: TopicSpec, record: Mapping[str, Any]) -> None: ...


class Producer(Protocol):
    """The slice of ``producers.sdk.EventProducer`` the publisher uses (fakes in unit tests)."""

    def encode(
        self, topic: TopicSpec | str, record: Mapping[str, Any]
    ) -> tuple[str, str, bytes]: ...

    def try_produce(
        self, topic: str, key: str, value: bytes, callback: Callable[..., None]
    ) -> bool: ...

    def poll(self, timeout_s: float = 0.0) -> int: ...

    def flush(self, timeout_s: float = 30.0) -> None: ...


@dataclass
class PublisherStats:
    published: int = 0
    delivered: int = 0
    dropped: int = 0
    invalid: int = 0
    redelivery_attempts: int = 0


@dataclass(frozen=True, slots=True)
class _Encoded:
    topic: str
    key: str
    value: bytes


_Item = tuple[TopicSpec, Mapping[str, Any]] | _Encoded


class ListSink:
    """In-memory ``EventSink`` for unit tests and for running without Kafka."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Mapping[str, Any]]] = []

    def publish(self, topic: TopicSpec, record: Mapping[str, Any]) -> None:
        self.events.append((topic.name, record))

    def of(self, topic: TopicSpec) -> list[Mapping[str, Any]]:
        return [r for name, r in self.events if name == topic.name]


class BufferedPublisher:
    """Runs on the gateway's event loop: no second Python thread competes for the GIL with the
    datagram handlers (a worker thread woken per event cost the p99 several milliseconds).

    ``publish`` appends and schedules one flush per loop turn; a flush encodes and hands at most
    ``batch`` events to librdkafka (whose own threads do the network I/O) and serves delivery
    reports with ``poll(0)``. A ticker keeps serving reports and retrying while events wait.
    """

    def __init__(self, producer: Producer, *, max_buffered: int, batch: int = 64) -> None:
        self._producer = producer
        self._max = max_buffered
        self._batch = batch
        self._buffer: deque[_Item] = deque()
        self._in_flight = 0
        self._last_drop_log = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._ticker: asyncio.Task[None] | None = None
        self.stats = PublisherStats()

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Bind to the running loop (call from it) and start the ticker."""
        self._loop = loop or asyncio.get_running_loop()
        self._ticker = self._loop.create_task(self._tick())

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def publish(self, topic: TopicSpec, record: Mapping[str, Any]) -> None:
        self._append((topic, record))
        self.stats.published += 1
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _append(self, item: _Item) -> None:
        if len(self._buffer) >= self._max:
            self._buffer.popleft()
            self.stats.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 10:
                self._last_drop_log = now
                logger.error(
                    "radius events: buffer full (%d); dropped %d events so far",
                    self._max,
                    self.stats.dropped,
                )
        self._buffer.append(item)

    def _flush(self) -> None:
        self._scheduled = False
        buffer = self._buffer
        for _ in range(min(self._batch, len(buffer))):
            item = buffer.popleft()
            if not isinstance(item, _Encoded):
                try:
                    item = _Encoded(*self._producer.encode(*item))
                except FilasError as exc:
                    self.stats.invalid += 1
                    logger.error("radius events: unencodable event skipped: %s", exc)
                    continue
            if not self._producer.try_produce(item.topic, item.key, item.value, self._report):
                buffer.appendleft(item)  # librdkafka's queue is full: the ticker retries
                break
            self._in_flight += 1
        self._producer.poll(0)
        if buffer and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            if self._in_flight or self._buffer:
                self._flush()

    def _report(self, err: Any, msg: Any) -> None:
        """Delivery report (one bound method for every event: no closure per event). A failed
        event is rebuilt from the message and buffered again."""
        self._in_flight -= 1
        if err is None:
            self.stats.delivered += 1
            return
        self.stats.redelivery_attempts += 1
        topic = msg.topic()
        logger.warning("radius events: delivery to %s failed, buffered again: %s", topic, err)
        key = msg.key()
        self._append(
            _Encoded(topic, key.decode() if isinstance(key, bytes) else str(key), msg.value())
        )

    def drain(self, timeout_s: float) -> bool:
        """Wait (from another thread) until every event is acknowledged: tests, benchmarks."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._buffer and self._in_flight == 0:
                return True
            time.sleep(0.02)
        return False

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Deliver what is buffered (up to ``timeout_s``), then stop."""
        deadline = time.monotonic() + timeout_s
        while (self._buffer or self._in_flight) and time.monotonic() < deadline:
            self._flush()
            await asyncio.sleep(0.02)
        if self._ticker is not None:
            self._ticker.cancel()
        if self._buffer:
            logger.error("radius events: %d events undelivered at shutdown", len(self._buffer))
        try:
            await asyncio.to_thread(self._producer.flush, max(0.1, deadline - time.monotonic()))
        except FilasError as exc:
            logger.error("radius events: %s", exc)
