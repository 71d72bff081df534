"""Prometheus collectors that render state at scrape time: service stats and consumer lag.

* ``register_stats(component, source)``: a service that already keeps counters in a stats
  object (``GatewayStats``, the CoA processor's stats, the log shipper) exposes them as
  ``filas_service_stat_total{component, stat}`` without a metrics call at every increment site.
* ``StatusMetrics``: the last ``filas status`` / ``filas monitor`` pass as gauges. Rendered
  from the latest pass only, so a group or topic that disappears stops being exported (no
  stale series). Labels stay low-cardinality: group and topic, never partition (per-partition
  lag goes to ClickHouse as ``LagSample`` events instead).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from filas.monitoring.rules import Finding
from filas.monitoring.samples import Status

StatsSource = Callable[[], Mapping[str, Any]]


def stats_of(obj: Any) -> StatsSource:
    """A source reading a stats dataclass (or any object's public int/float attributes)."""

    def read() -> Mapping[str, Any]:
        values = asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else vars(obj)
        return {k: v for k, v in values.items() if not k.startswith("_")}

    return read


class _StatsBridge(Collector):
    def __init__(self) -> None:
        self._sources: dict[str, StatsSource] = {}
        self._lock = threading.Lock()

    def add(self, component: str, source: StatsSource) -> None:
        with self._lock:
            self._sources[component] = source

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "filas_service_stat",
            "A service's own counters (received, dropped_malformed ...), read at scrape time",
            labels=["component", "stat"],
        )
        with self._lock:
            sources = list(self._sources.items())
        for component, source in sources:
            for stat, value in sorted(source().items()):
                # bool is an int: flags are not counters.
                if isinstance(value, int | float) and not isinstance(value, bool):
                    family.add_metric([component, stat], float(value))
        yield family

    def describe(self) -> Iterable[CounterMetricFamily]:
        return []


_BRIDGE = _StatsBridge()
_BRIDGE_REGISTERED: set[int] = set()


def register_stats(
    component: str, source: StatsSource, registry: CollectorRegistry = REGISTRY
) -> None:
    """Export ``source()``'s numeric values for ``component`` (replacing an earlier source)."""
    _BRIDGE.add(component, source)
    if id(registry) not in _BRIDGE_REGISTERED:
        registry.register(_BRIDGE)
        _BRIDGE_REGISTERED.add(id(registry))


class StatusMetrics(Collector):
    """The latest lag/rate pass and its findings as gauges (see the module doc)."""

    def __init__(self) -> None:
        self._status: Status | None = None
        self._findings: list[Finding] = []
        self._lock = threading.Lock()

    def update(self, status: Status, findings: list[Finding]) -> None:
        with self._lock:
            self._status, self._findings = status, list(findings)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            status, findings = self._status, list(self._findings)
        lag = GaugeMetricFamily(
            "filas_consumer_lag", "Records a group has not committed", labels=["group", "topic"]
        )
        lag_rate = GaugeMetricFamily(
            "filas_consumer_lag_rate",
            "Change of lag, records/s (positive: falling behind)",
            labels=["group", "topic"],
        )
        consume = GaugeMetricFamily(
            "filas_consume_rate", "Commit growth, records/s", labels=["group", "topic"]
        )
        members = GaugeMetricFamily(
            "filas_consumer_members", "Members of the group", labels=["group", "topic"]
        )
        end = GaugeMetricFamily(
            "filas_topic_end_offset", "Sum of the topic's end offsets", labels=["topic"]
        )
        produce = GaugeMetricFamily(
            "filas_produce_rate", "End-offset growth, records/s", labels=["topic"]
        )
        active = GaugeMetricFamily(
            "filas_bottleneck", "1 per current finding", labels=["rule", "group", "topic"]
        )
        if status is not None:
            for t in status.topics:
                end.add_metric([t.topic], float(t.end_offset))
                if t.produce_rate is not None:
                    produce.add_metric([t.topic], t.produce_rate)
            for g in status.groups:
                labels = [g.group, g.topic]
                lag.add_metric(labels, float(g.lag))
                members.add_metric(labels, float(g.members))
                if g.lag_rate is not None:
                    lag_rate.add_metric(labels, g.lag_rate)
                if g.consume_rate is not None:
                    consume.add_metric(labels, g.consume_rate)
        for f in findings:
            active.add_metric([f.rule, f.group, f.topic], 1.0)
        yield from (lag, lag_rate, consume, members, end, produce, active)
