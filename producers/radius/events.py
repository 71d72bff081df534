"""Publish gateway events to Kafka without ever making a RADIUS reply wait.

``BufferedPublisher.publish`` only appends to a bounded in-memory buffer (a deque): constant time
on the event loop. A worker thread encodes and hands events to the SDK's producer, and puts back
any event whose delivery failed (broker down past ``delivery.timeout.ms``), so events survive a
Kafka outage as long as the buffer holds them. When the buffer is full the oldest event is
dropped, counted in ``stats.dropped`` and logged (at most once per 10 s): authentication never
blocks on Kafka (issue 3's design constraint).
"""

from __future__ import annotations

import logging
import threading
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
    def __init__(self, producer: Producer, *, max_buffered: int) -> None:
        self._producer = producer
        self._max = max_buffered
        self._buffer: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._in_flight = 0
        self._last_drop_log = 0.0
        self.stats = PublisherStats()
        self._thread = threading.Thread(target=self._run, name="filas-radius-events", daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def publish(self, topic: TopicSpec, record: Mapping[str, Any]) -> None:
        self._append((topic, record))
        self.stats.published += 1
        self._wake.set()

    def _append(self, item: _Item, *, front: bool = False) -> None:
        with self._lock:
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
            if front:
                self._buffer.appendleft(item)
            else:
                self._buffer.append(item)

    def _pop(self) -> _Item | None:
        with self._lock:
            return self._buffer.popleft() if self._buffer else None

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._pop()
            if item is None:
                self._producer.poll(0.02)
                if not self._buffer:
                    self._wake.wait(0.05)
                    self._wake.clear()
                continue
            if not isinstance(item, _Encoded):
                try:
                    item = _Encoded(*self._producer.encode(*item))
                except FilasError as exc:
                    self.stats.invalid += 1
                    logger.error("radius events: unencodable event skipped: %s", exc)
                    continue
            if self._producer.try_produce(item.topic, item.key, item.value, self._callback(item)):
                self._in_flight += 1
            else:  # librdkafka's queue is full: keep the event, let deliveries drain
                self._append(item, front=True)
                self._producer.poll(0.1)

    def _callback(self, item: _Encoded) -> Callable[..., None]:
        def report(err: Any, _msg: Any) -> None:
            self._in_flight -= 1
            if err is None:
                self.stats.delivered += 1
                return
            self.stats.redelivery_attempts += 1
            logger.warning(
                "radius events: delivery to %s failed, buffered again: %s", item.topic, err
            )
            self._append(item)
            self._wake.set()

        return report

    def drain(self, timeout_s: float) -> bool:
        """Wait until every buffered event is acknowledged (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._buffer and self._in_flight == 0:
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        self.drain(timeout_s)
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._producer.flush(timeout_s)
        except FilasError as exc:
            logger.error("radius events: %s", exc)
