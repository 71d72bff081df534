"""Prometheus metrics shared by every Filas process, and the ``/metrics`` endpoint.

One set of metric families with a ``component`` label (``sink``, ``radius-gateway``, ``pinger``,
``campaign-worker`` ...) instead of per-module names, so one Grafana panel and one bottleneck rule
cover every processor. Label values must stay low-cardinality: topic names and dependency names,
never logins, device ids or request ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Event, Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

from filas.settings import MetricsSettings

# Latency buckets from 0.5 ms (a RADIUS decision) to 30 s (a retried SMTP send).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000)

EVENTS_IN = Counter("filas_events_in", "Events consumed or received", ["component", "topic"])
EVENTS_OUT = Counter("filas_events_out", "Events produced or delivered", ["component", "topic"])
ERRORS = Counter("filas_errors", "Errors by kind", ["component", "kind"])
DEAD_LETTERS = Counter(
    "filas_dead_letters", "Records sent to a dead-letter topic", ["component", "topic"]
)
PROCESSING_SECONDS = Histogram(
    "filas_processing_seconds",
    "Time to process one event or batch, end to end inside the process",
    ["component", "stage"],
    buckets=LATENCY_BUCKETS,
)
DEPENDENCY_SECONDS = Histogram(
    "filas_dependency_seconds",
    "Time spent waiting on an external dependency (clickhouse, smtp, sms, nas, ixc, kafka)",
    ["component", "dependency"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "filas_batch_size", "Records per batch", ["component"], buckets=BATCH_BUCKETS
)
RATE_LIMIT_TOKENS = Gauge(
    "filas_rate_limit_tokens", "Tokens left in a rate limiter", ["component", "limiter"]
)
RATE_LIMIT_RATE = Gauge(
    "filas_rate_limit_rate",
    "Configured share of a rate limit (per second)",
    ["component", "limiter"],
)
QUEUE_DEPTH = Gauge(
    "filas_queue_depth", "Items waiting in an in-process queue or buffer", ["component", "queue"]
)


@contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[None]:
    """Observe the block's wall time on ``histogram`` (with ``labels``), even when it raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(**labels).observe(time.perf_counter() - start)


class Readiness:
    """``/ready`` on the metrics port: 200 unless the process said it is not ready yet
    (``pending()``) and has not said ``ready()`` since. Kubernetes probes it where a process
    must not get traffic before it can serve (the RADIUS gateway before its replica is loaded
    and its UDP ports bound: decision 0113)."""

    def __init__(self) -> None:
        self._declared = Event()
        self._ready = Event()

    def pending(self) -> None:
        self._ready.clear()
        self._declared.set()

    def ready(self) -> None:
        self._ready.set()

    def is_ready(self) -> bool:
        return not self._declared.is_set() or self._ready.is_set()

    def wrap(self, app: Any) -> Any:
        """The WSGI app with ``/ready`` in front of it."""

        def with_ready(environ: dict[str, Any], start_response: Any) -> Any:
            if environ.get("PATH_INFO") != "/ready":
                return app(environ, start_response)
            ok = self.is_ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ready\n" if ok else b"not ready\n"]

        return with_ready


READINESS = Readiness()


def serve_metrics(
    settings: MetricsSettings, registry: CollectorRegistry = REGISTRY
) -> tuple[WSGIServer, Thread] | None:
    """Start the ``/metrics`` endpoint (and ``/ready``, see ``Readiness``) in a daemon thread;
    None when no port is configured."""
    if settings.port is None:
        return None
    server, thread = _start_http_server(settings.port, addr=settings.host, registry=registry)
    server.set_app(READINESS.wrap(server.get_app()))
    return server, thread
