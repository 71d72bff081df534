"""The dependency rule, the metrics scrape arithmetic and the monitor pass on fakes (no network)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from fastavro.validation import validate
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from filas.catalog import Catalog
from filas.catalog.monitoring import FINDINGS, LAG_SAMPLES
from filas.catalog.spec import TopicSpec
from filas.errors import DeliveryError
from filas.monitoring.report import document
from filas.monitoring.rules import Thresholds, dependency_findings
from filas.monitoring.samples import GroupOffsets, Snapshot
from filas.monitoring.scrape import (
    ComponentTimes,
    Samples,
    ScrapeError,
    component_times,
    parse_metrics,
    scrape,
    window,
)
from filas.monitoring.service import Monitor
from schemas.catalog import SchemaCatalog


def _times(component: str, processing: float, **deps: float) -> ComponentTimes:
    return ComponentTimes(component, processing, deps)


def test_busy_component_waiting_mostly_on_smtp_names_smtp() -> None:
    [finding] = dependency_findings([_times("campaign-worker", 8.0, smtp=7.0, kafka=0.5)], 10.0)
    assert finding.rule == "dependency"
    assert finding.component == "campaign-worker"
    assert finding.dependency == "smtp"
    assert finding.evidence["share"] == pytest.approx(0.875)
    assert finding.evidence["busy"] == pytest.approx(0.8)
    assert "smtp" in finding.fix


def test_component_busy_on_its_own_work_is_not_a_dependency_bottleneck() -> None:
    assert dependency_findings([_times("sink", 8.0, clickhouse=2.0)], 10.0) == []


def test_idle_component_is_not_judged_even_when_its_little_work_is_all_waiting() -> None:
    assert dependency_findings([_times("radius-coa", 0.5, nas=0.5)], 10.0) == []


def test_thresholds_are_configurable_and_share_is_capped() -> None:
    t = Thresholds(dependency_share=0.2, busy_ratio=0.01)
    [finding] = dependency_findings([_times("sink", 1.0, clickhouse=1.3)], 10.0, t)
    assert finding.dependency == "clickhouse"
    assert finding.evidence["share"] == 1.0
    assert dependency_findings([_times("sink", 1.0, clickhouse=1.0)], 0.0, t) == []


def _exposition(
    processing: float, waits: Mapping[str, float], component: str = "sink", events: int = 1
) -> str:
    registry = CollectorRegistry()
    proc = Histogram("filas_processing_seconds", "p", ["component", "stage"], registry=registry)
    dep = Histogram("filas_dependency_seconds", "d", ["component", "dependency"], registry=registry)
    for _ in range(events):
        proc.labels(component, "flush").observe(processing * 0.75 / events)
    proc.labels(component, "decode").observe(processing * 0.25)
    for name, seconds in waits.items():
        dep.labels(component, name).observe(seconds)
    return generate_latest(registry).decode()


def test_component_times_sum_stages_and_window_takes_the_difference() -> None:
    before = component_times([parse_metrics(_exposition(2.0, {"clickhouse": 1.0}))])
    after = component_times([parse_metrics(_exposition(10.0, {"clickhouse": 8.0, "kafka": 0.5}))])
    assert before["sink"].processing_s == pytest.approx(2.0)
    delta = window(before, after)["sink"]
    assert delta.processing_s == pytest.approx(8.0)
    assert delta.dependencies == {"clickhouse": pytest.approx(7.0), "kafka": pytest.approx(0.5)}
    # A restarted process (counters went down) counts from zero.
    restarted = window(after, before)["sink"]
    assert restarted.processing_s == pytest.approx(2.0)


def test_scrape_refuses_non_http_urls() -> None:
    with pytest.raises(ScrapeError) as bad:
        scrape("file:///etc/passwd")
    assert not bad.value.retriable


class _Snapshots:
    def __init__(self, snapshots: list[Snapshot]) -> None:
        self._snapshots = snapshots

    def sample(self) -> Snapshot:
        return self._snapshots.pop(0)


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Mapping[str, Any]]] = []
        self.flushes = 0

    def emit(self, topic: TopicSpec | str, record: Mapping[str, Any]) -> None:
        self.sent.append((topic.name if isinstance(topic, TopicSpec) else topic, record))

    def flush(self, timeout_s: float = 30.0) -> None:
        self.flushes += 1


def _snap(t: float, end: int, committed: int) -> Snapshot:
    return Snapshot(
        taken_at=t,
        wall_time=1_800_000_000 + t,
        partitions={"p-work": 2},
        end_offsets={("p-work", 0): end, ("p-work", 1): end},
        groups={"p-worker": GroupOffsets("p-worker", "EMPTY", 0, {("p-work", 0): committed})},
    )


def test_monitor_pass_publishes_valid_lag_samples_and_findings() -> None:
    catalog = Catalog.build("p-")
    publisher = _Publisher()
    clock = iter([100.0, 110.0])
    scrapes: list[Samples] = [
        parse_metrics(_exposition(1.0, {"smtp": 0.9}, "mailer")),
        parse_metrics(_exposition(9.0, {"smtp": 8.5}, "mailer", events=7)),
    ]
    monitor = Monitor(
        _Snapshots([_snap(0, 100, 40), _snap(10, 300, 40)]),
        catalog=catalog,
        publisher=publisher,
        scrape_urls=["http://mailer/metrics"],
        scraper=lambda url: scrapes.pop(0),
        clock=lambda: next(clock),
    )
    first = monitor.run_pass()
    assert first.findings == ()
    second = monitor.run_pass()
    rules = {(f.rule, f.group) for f in second.findings}
    assert rules == {("group_stalled", "p-worker"), ("dependency", "mailer")}
    # The window's numbers, as `filas status` and the page show them.
    [row] = document(second.status, list(second.findings), second.components, second.window_s)[
        "components"
    ]
    assert row["component"] == "mailer"
    assert row["window_s"] == 10.0
    assert row["processing_s"] == pytest.approx(8.0)
    assert row["processed"] == 6  # 7 flushes + 1 decode, minus the first scrape's 2
    assert row["busy"] == pytest.approx(0.8)
    assert row["mean_latency_ms"] == pytest.approx(8000.0 / 6)
    assert row["dependencies"]["smtp"]["share"] == pytest.approx(7.6 / 8.0)

    lag_topic, findings_topic = catalog.resolve(LAG_SAMPLES).name, catalog.resolve(FINDINGS).name
    lag = [r for t, r in publisher.sent if t == lag_topic]
    assert len(lag) == 4  # two passes x two partitions
    last = {r["partition"]: r for r in lag[2:]}
    assert last[0]["lag"] == 260
    assert last[0]["committed"] == 40
    assert last[0]["consume_rate"] == 0.0
    assert last[0]["produce_rate"] == 20.0
    assert last[1]["committed"] is None
    assert last[1]["lag"] == 300
    assert last[1]["lag_rate"] == pytest.approx(20.0)
    found = [r for t, r in publisher.sent if t == findings_topic]
    assert {r["rule"] for r in found} == {"group_stalled", "dependency"}
    dep = next(r for r in found if r["rule"] == "dependency")
    assert dep["dependency"] == "smtp"
    assert dep["component"] == "mailer"
    assert publisher.flushes == 2

    # Every published record is valid for its schema (what the sink will decode).
    schemas = SchemaCatalog.load()
    for topic, record in publisher.sent:
        spec = catalog.get(topic)
        assert validate(record, schemas.get(spec.value_schema).parsed, raise_errors=True)

    exported = generate_latest(_registry_with(monitor)).decode()
    assert 'filas_consumer_lag{group="p-worker",topic="p-work"} 560.0' in exported
    assert 'filas_bottleneck{group="p-worker",rule="group_stalled",topic="p-work"} 1.0' in exported


def _registry_with(monitor: Monitor) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(monitor.metrics)
    return registry


class _DownPublisher(_Publisher):
    def flush(self, timeout_s: float = 30.0) -> None:
        raise DeliveryError("broker unreachable", retriable=True)


def test_a_pass_whose_events_cannot_be_published_still_updates_the_live_view() -> None:
    monitor = Monitor(
        _Snapshots([_snap(0, 100, 40), _snap(10, 300, 40)]),
        catalog=Catalog.build("p-"),
        publisher=_DownPublisher(),
    )
    monitor.run_pass()
    result = monitor.run_pass()
    assert result.published == 0
    assert any("broker unreachable" in e for e in result.errors)
    assert monitor.last is result
    assert [f.rule for f in result.findings] == ["group_stalled"]
    exported = generate_latest(_registry_with(monitor)).decode()
    assert 'filas_consumer_lag{group="p-worker",topic="p-work"} 560.0' in exported
