"""The monitor loop: one pass = lag snapshot -> status -> rules (+ dependency scrapes) ->
history events -> Prometheus gauges. ``filas monitor serve`` runs it every ``interval_s``.

Every port is injected (collector, publisher, scraper, clock), so unit tests run passes on fakes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from filas.catalog import Catalog
from filas.catalog.monitoring import FINDINGS, LAG_SAMPLES
from filas.catalog.spec import TopicSpec
from filas.errors import FilasError
from filas.metrics import DEPENDENCY_SECONDS, ERRORS, EVENTS_OUT, PROCESSING_SECONDS, timed
from filas.monitoring.exporters import StatusMetrics
from filas.monitoring.history import finding_records, lag_records
from filas.monitoring.rules import Finding, Thresholds, dependency_findings, evaluate
from filas.monitoring.samples import Snapshot, Status, compute_status
from filas.monitoring.scrape import ComponentTimes, Samples, component_times, scrape, window

log = logging.getLogger("filas.monitoring")

COMPONENT = "monitor"


class SnapshotSource(Protocol):
    def sample(self) -> Snapshot: ...


class Publisher(Protocol):
    def emit(self, topic: TopicSpec | str, record: Mapping[str, Any]) -> None: ...

    def flush(self, timeout_s: float = 30.0) -> None: ...


@dataclass(frozen=True)
class MonitorPass:
    status: Status
    findings: tuple[Finding, ...]
    published: int = 0
    errors: tuple[str, ...] = ()
    components: tuple[ComponentTimes, ...] = ()
    """Scraped processes' time in the last scrape window (empty without scrape URLs)."""
    window_s: float | None = None
    """Scrapes that failed and a publish that failed, in words (the pass itself succeeded)."""


@dataclass
class _Peaks:
    values: dict[tuple[str, str], float] = field(default_factory=dict)

    def update(self, status: Status) -> None:
        for g in status.groups:
            if g.consume_rate is not None:
                key = (g.group, g.topic)
                self.values[key] = max(self.values.get(key, 0.0), g.consume_rate)


class Monitor:
    """Runs passes; keeps the last snapshot, the consume-rate peaks and the last scrape."""

    def __init__(
        self,
        collector: SnapshotSource,
        *,
        catalog: Catalog | None = None,
        publisher: Publisher | None = None,
        scrape_urls: Sequence[str] = (),
        scraper: Callable[[str], Samples] | None = None,
        thresholds: Thresholds | None = None,
        metrics: StatusMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collector = collector
        self._publisher = publisher
        self._lag_topic = catalog.resolve(LAG_SAMPLES) if catalog else LAG_SAMPLES
        self._findings_topic = catalog.resolve(FINDINGS) if catalog else FINDINGS
        self._urls = tuple(scrape_urls)
        self._scraper: Callable[[str], Samples] = scraper or scrape
        self._thresholds = thresholds or Thresholds()
        self.metrics = metrics or StatusMetrics()
        self._clock = clock
        self._previous: Snapshot | None = None
        self._peaks = _Peaks()
        self._times: dict[str, ComponentTimes] | None = None
        self._times_at = 0.0
        self.last: MonitorPass | None = None

    def _dependency_pass(
        self,
    ) -> tuple[list[Finding], list[str], tuple[ComponentTimes, ...], float | None]:
        if not self._urls:
            return [], [], (), None
        scraped: list[Samples] = []
        errors: list[str] = []
        for url in self._urls:
            try:
                scraped.append(self._scraper(url))
            except FilasError as exc:
                ERRORS.labels(COMPONENT, exc.code).inc()
                errors.append(f"{url}: {exc}")
        now = self._clock()
        times = component_times(scraped)
        findings: list[Finding] = []
        windowed: tuple[ComponentTimes, ...] = ()
        seconds: float | None = None
        if self._times is not None:
            seconds = now - self._times_at
            windowed = tuple(window(self._times, times).values())
            findings = dependency_findings(windowed, seconds, self._thresholds)
        self._times, self._times_at = times, now
        return findings, errors, windowed, seconds

    def _publish(
        self, current: Snapshot, status: Status, findings: list[Finding]
    ) -> tuple[int, str | None]:
        """Emit the pass's events and wait for their acks; a Kafka failure is reported (the
        history misses this pass), never raised: the gauges and the page keep working."""
        if self._publisher is None:
            return 0, None
        records = [(self._lag_topic, r) for r in lag_records(self._previous, current, status)]
        records += [(self._findings_topic, r) for r in finding_records(findings, current.wall_time)]
        try:
            with timed(DEPENDENCY_SECONDS, component=COMPONENT, dependency="kafka"):
                for topic, record in records:
                    self._publisher.emit(topic, record)
                self._publisher.flush()
        except FilasError as exc:
            ERRORS.labels(COMPONENT, exc.code).inc()
            log.warning("monitor: pass not published: %s", exc)
            return 0, f"publish: {exc}"
        EVENTS_OUT.labels(COMPONENT, self._lag_topic.name).inc(len(records) - len(findings))
        EVENTS_OUT.labels(COMPONENT, self._findings_topic.name).inc(len(findings))
        return len(records), None

    def run_pass(self) -> MonitorPass:
        started = time.perf_counter()
        current = self._collector.sample()
        status = compute_status(self._previous, current)
        findings = evaluate(status.groups, self._peaks.values, self._thresholds)
        self._peaks.update(status)
        dependency, errors, components, window_s = self._dependency_pass()
        findings.extend(dependency)
        # The live view never waits on the history: gauges and the page first, then events.
        self.metrics.update(status, findings)
        published, publish_error = self._publish(current, status, findings)
        if publish_error is not None:
            errors.append(publish_error)
        self._previous = current
        result = MonitorPass(
            status, tuple(findings), published, tuple(errors), components, window_s
        )
        self.last = result
        PROCESSING_SECONDS.labels(COMPONENT, "pass").observe(time.perf_counter() - started)
        return result
