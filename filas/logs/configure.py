"""``configure_logging``: the one call an entrypoint makes to set up logging."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import TextIO

from filas.bootstrap import build_producer
from filas.logs.records import CorrelationFilter, JsonFormatter, Redactor, settings_secrets
from filas.logs.shipping import KafkaLogSink, LogSink, ShippingHandler, ShippingListener
from filas.monitoring.exporters import register_stats
from filas.settings import Settings

# Chatty client libraries: their INFO lines (one per HTTP request) are noise in a log topic.
_QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "aiokafka": logging.WARNING}


@dataclass
class LoggingHandle:
    """What configure_logging installed; ``close()`` flushes and removes it (idempotent)."""

    handlers: list[logging.Handler] = field(default_factory=list)
    shipping: ShippingHandler | None = None
    listener: ShippingListener | None = None
    sink: LogSink | None = None

    @property
    def dropped(self) -> int:
        """Lines not shipped: queue full, sink unavailable or sink failed."""
        if self.shipping is None or self.listener is None:
            return 0
        sink_dropped = getattr(self.sink, "dropped", 0)
        return self.shipping.dropped + self.listener.sink_handler.failed + int(sink_dropped)

    def close(self, timeout_s: float = 5.0) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
        self.handlers = []
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
            if self.sink is not None:
                try:
                    self.sink.close(timeout_s)
                except Exception as exc:  # shutdown must not fail on a missing log line
                    print(f"filas: log shipping did not flush: {exc}", file=sys.stderr)


_current: LoggingHandle | None = None


def configure_logging(
    settings: Settings,
    service: str | None = None,
    *,
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    ship: bool | LogSink = True,
    queue_size: int = 10_000,
    ship_level: int = logging.INFO,
) -> LoggingHandle:
    """JSON lines to ``stream`` (stderr) and, unless ``ship`` is False, events to ``filas.logs``.

    Call once from the entrypoint; calling again replaces the previous configuration. ``ship``
    may be a :class:`LogSink` (tests). Known secrets of ``settings`` and values of secret-looking
    keys are masked before any handler sees the line.
    """
    global _current
    if _current is not None:
        _current.close()
    name = service or settings.service_name
    redactor = Redactor(settings_secrets(settings))
    correlation = CorrelationFilter()
    root = logging.getLogger()
    root.setLevel(level)
    for logger_name, quiet in _QUIET.items():
        logging.getLogger(logger_name).setLevel(quiet)

    console = logging.StreamHandler(stream or sys.stderr)
    console.setFormatter(JsonFormatter(name))
    handle = LoggingHandle()
    for handler in (console, *_shipping(settings, name, ship, queue_size, ship_level, handle)):
        handler.addFilter(correlation)
        handler.addFilter(redactor)
        root.addHandler(handler)
        handle.handlers.append(handler)
    if handle.listener is not None:
        handle.listener.start()
    _current = handle
    return handle


def _shipping(
    settings: Settings,
    service: str,
    ship: bool | LogSink,
    queue_size: int,
    ship_level: int,
    handle: LoggingHandle,
) -> list[logging.Handler]:
    if ship is False:
        return []
    if ship is True:
        sink: LogSink = KafkaLogSink(lambda: build_producer(settings, connect_timeout_s=5.0))
    else:
        sink = ship
    shipping = ShippingHandler(service, queue_size)
    shipping.setLevel(ship_level)
    handle.shipping, handle.sink = shipping, sink
    handle.listener = ShippingListener(shipping, sink)
    listener = handle.listener
    register_stats(
        "log-shipper",
        lambda: {
            "dropped_queue_full": shipping.dropped,
            "failed_send": listener.sink_handler.failed,
            **{f"sink_{k}": v for k, v in vars(sink).items() if k in ("sent", "dropped")},
        },
    )
    return [shipping]
