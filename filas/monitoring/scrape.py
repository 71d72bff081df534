"""Reading other processes' ``/metrics``: the text format -> plain sample sums (no Kafka).

The dependency rule compares, per component, the time spent waiting on each external dependency
(``filas_dependency_seconds``) with the time spent processing (``filas_processing_seconds``).
Both are histograms whose ``_sum`` only grows, so the collector keeps the previous scrape and the
rule works on the difference over the window.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from filas.errors import FilasError

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

PROCESSING_SUM = "filas_processing_seconds_sum"
PROCESSING_COUNT = "filas_processing_seconds_count"
DEPENDENCY_SUM = "filas_dependency_seconds_sum"


class ScrapeError(FilasError):
    code = "metrics_scrape"


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = float(sample.value)
    return samples


def scrape(url: str, timeout_s: float = 5.0) -> Samples:
    """One GET of ``url`` (a ``/metrics`` endpoint); ScrapeError (retriable) when it fails."""
    if not url.startswith(("http://", "https://")):
        raise ScrapeError(f"metrics URL must be http(s): {url!r}", retriable=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - checked
            body: bytes = response.read()
    except OSError as exc:
        raise ScrapeError(f"cannot scrape {url}: {exc}", retriable=True) from exc
    return parse_metrics(body.decode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class ComponentTimes:
    """Seconds one component spent processing, and waiting on each dependency, in a window."""

    component: str
    processing_s: float
    dependencies: Mapping[str, float]
    processed: float = 0.0
    """Observations of the processing histogram (events, batches or passes, by stage)."""

    def busy(self, window_s: float) -> float | None:
        """Processing seconds per wall second (1.0: one thread never idle)."""
        return self.processing_s / window_s if window_s > 0 else None

    def mean_latency_s(self) -> float | None:
        return self.processing_s / self.processed if self.processed > 0 else None


def component_times(samples: Iterable[Samples]) -> dict[str, ComponentTimes]:
    """Cumulative processing / dependency seconds per component, over one or more scrapes."""
    processing: dict[str, float] = {}
    processed: dict[str, float] = {}
    deps: dict[str, dict[str, float]] = {}
    for scraped in samples:
        for (name, labels), value in scraped.items():
            label = dict(labels)
            component = label.get("component")
            if component is None:
                continue
            if name == PROCESSING_SUM:
                processing[component] = processing.get(component, 0.0) + value
            elif name == PROCESSING_COUNT:
                processed[component] = processed.get(component, 0.0) + value
            elif name == DEPENDENCY_SUM and "dependency" in label:
                per = deps.setdefault(component, {})
                per[label["dependency"]] = per.get(label["dependency"], 0.0) + value
    return {
        c: ComponentTimes(c, processing.get(c, 0.0), deps.get(c, {}), processed.get(c, 0.0))
        for c in sorted(set(processing) | set(deps))
    }


def window(
    before: Mapping[str, ComponentTimes], after: Mapping[str, ComponentTimes]
) -> dict[str, ComponentTimes]:
    """The seconds spent between two scrapes. A counter that went down (the process restarted)
    counts from zero: its whole new value belongs to the window."""

    def delta(old: float | None, new: float) -> float:
        return new if old is None or new < old else new - old

    out: dict[str, ComponentTimes] = {}
    for name, now in after.items():
        then = before.get(name)
        out[name] = ComponentTimes(
            name,
            delta(then.processing_s if then else None, now.processing_s),
            {
                dep: delta(then.dependencies.get(dep) if then else None, seconds)
                for dep, seconds in now.dependencies.items()
            },
            delta(then.processed if then else None, now.processed),
        )
    return out
