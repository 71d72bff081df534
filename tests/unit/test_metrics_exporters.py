"""Stats objects and lag status exported at scrape time (fresh registries, no network)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest

from filas.monitoring.exporters import StatusMetrics, register_stats, stats_of
from filas.monitoring.rules import Finding
from filas.monitoring.samples import GroupTopicStatus, Status, TopicRate
from filas.monitoring.scrape import parse_metrics


@dataclass
class _GatewayStats:
    received: int = 0
    dropped_malformed: int = 0
    healthy: bool = True


def test_stats_are_read_at_scrape_time_and_flags_are_not_counters() -> None:
    registry = CollectorRegistry()
    stats = _GatewayStats()
    register_stats("gw-test", stats_of(stats), registry)
    stats.received, stats.dropped_malformed = 7, 2
    samples = parse_metrics(generate_latest(registry).decode())
    key = (("component", "gw-test"), ("stat", "received"))
    assert samples[("filas_service_stat_total", key)] == 7.0
    dropped = (("component", "gw-test"), ("stat", "dropped_malformed"))
    assert samples[("filas_service_stat_total", dropped)] == 2.0
    assert not any(dict(labels).get("stat") == "healthy" for _, labels in samples)
    stats.received = 9
    again = parse_metrics(generate_latest(registry).decode())
    assert again[("filas_service_stat_total", key)] == 9.0


def _status(lag: int, group: str = "g1") -> Status:
    return Status(
        wall_time=1.0,
        interval_s=5.0,
        topics=(TopicRate("t", 3, 1000, 12.5),),
        groups=(GroupTopicStatus(group, "t", "STABLE", 1, 3, lag, 3.0, 9.5),),
    )


def test_status_metrics_export_only_the_latest_pass() -> None:
    metrics = StatusMetrics()
    registry = CollectorRegistry()
    registry.register(metrics)
    finding = Finding("scale_out", "g1", "t", {"lag": 40}, "scale out")
    metrics.update(_status(40), [finding])
    text = generate_latest(registry).decode()
    assert 'filas_consumer_lag{group="g1",topic="t"} 40.0' in text
    assert 'filas_consume_rate{group="g1",topic="t"} 9.5' in text
    assert 'filas_produce_rate{topic="t"} 12.5' in text
    assert 'filas_bottleneck{group="g1",rule="scale_out",topic="t"} 1.0' in text
    metrics.update(_status(5, group="g2"), [])
    text = generate_latest(registry).decode()
    assert 'group="g1"' not in text  # no stale series for a group that is gone
    assert 'filas_consumer_lag{group="g2",topic="t"} 5.0' in text
    assert "filas_bottleneck{" not in text
