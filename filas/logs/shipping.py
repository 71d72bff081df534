"""Ship log lines to ``filas.logs`` without ever blocking or failing the caller.

The caller's thread only redacts, builds the event and ``put_nowait``s it on a bounded queue; a
``QueueListener`` thread drains the queue into a :class:`LogSink`. A full queue drops the line and
counts it. Lines logged by the listener thread itself (the producer, the registry's HTTP client)
are never shipped, so a Kafka client that logs cannot recurse into its own queue.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from filas.catalog.logs import LOGS
from filas.logs.records import log_event
from producers.sdk import EventProducer

_log = logging.getLogger(__name__)
# Logger name prefixes whose lines stay on stderr only.
UNSHIPPED_LOGGERS = ("confluent_kafka", "rdkafka", "filas.logs")


class LogSink(Protocol):
    """Where shipped log events go; called from the listener thread only."""

    def send(self, event: Mapping[str, Any]) -> None: ...

    def close(self, timeout_s: float) -> None: ...


class ShippingHandler(logging.handlers.QueueHandler):
    """A QueueHandler over a bounded queue that drops (and counts) instead of blocking."""

    def __init__(self, service: str, maxsize: int = 10_000) -> None:
        self.log_queue: queue.Queue[logging.LogRecord] = queue.Queue(maxsize)
        super().__init__(self.log_queue)
        self.service = service
        self.dropped = 0
        self.shipper_thread: threading.Thread | None = None

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Build the event in the caller's thread: the record is redacted and carries the
        # caller's correlation id now; the listener only sends.
        shipped = logging.makeLogRecord({"filas_event": log_event(record, self.service)})
        shipped.levelno, shipped.name = record.levelno, record.name
        return shipped

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.log_queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def handle(self, record: logging.LogRecord) -> bool:
        if threading.current_thread() is self.shipper_thread:
            return False  # the sink's own logging: shipping it would feed the queue it drains
        if record.name.startswith(UNSHIPPED_LOGGERS):
            # The Kafka client's lines (librdkafka calls a configured logger from its own
            # threads) and this package's: shipping them through Kafka could feed back.
            return False
        try:
            return bool(super().handle(record))
        except Exception:  # never raise into the application
            self.dropped += 1
            return False


class _SinkHandler(logging.Handler):
    """The listener-side handler: hands each event to the sink, counting failures."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink
        self.failed = 0

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "filas_event", None)
        if event is None:
            return
        try:
            self.sink.send(event)
        except Exception:
            self.failed += 1


class ShippingListener(logging.handlers.QueueListener):
    """A QueueListener whose thread is known to its handler (to break recursion)."""

    def __init__(self, handler: ShippingHandler, sink: LogSink) -> None:
        self.sink_handler = _SinkHandler(sink)
        super().__init__(handler.log_queue, self.sink_handler, respect_handler_level=False)
        self.shipping = handler

    def start(self) -> None:
        super().start()
        self.shipping.shipper_thread = self._thread

    def stop(self) -> None:
        # Stop only when the thread still runs; a stuck sink keeps it (it is a daemon thread).
        thread = self._thread
        if thread is None:
            return
        try:
            self.queue.put_nowait(self._sentinel)  # type: ignore[attr-defined]
        except queue.Full:
            return
        thread.join(timeout=5.0)
        self._thread = None


class KafkaLogSink:
    """Emits LogRecord events through the producer SDK; builds the producer on first use.

    Building lazily keeps start-up from waiting on Kafka; a failed build is retried after
    ``retry_after_s``, dropping (and counting) lines meanwhile.
    """

    def __init__(
        self, producer_factory: Callable[[], EventProducer], *, retry_after_s: float = 30.0
    ) -> None:
        self._factory = producer_factory
        self._producer: EventProducer | None = None
        self._retry_after_s = retry_after_s
        self._next_try = 0.0
        self.dropped = 0
        self.sent = 0

    def _get(self) -> EventProducer | None:
        if self._producer is None and time.monotonic() >= self._next_try:
            try:
                self._producer = self._factory()
            except Exception as exc:
                self._next_try = time.monotonic() + self._retry_after_s
                _log.warning("log shipping to Kafka unavailable: %s", exc)
        return self._producer

    def send(self, event: Mapping[str, Any]) -> None:
        producer = self._get()
        if producer is None:
            self.dropped += 1
            return
        producer.emit(LOGS, event)
        self.sent += 1

    def close(self, timeout_s: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout_s)
