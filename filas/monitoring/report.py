"""Status and findings as one JSON-ready document (the ``filas status --json`` contract)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from filas.monitoring.rules import Finding
from filas.monitoring.samples import Status
from filas.monitoring.scrape import ComponentTimes


def components_document(
    components: Sequence[ComponentTimes], window_s: float | None
) -> list[dict[str, Any]]:
    """Scraped processes: busy ratio, mean processing latency and dependency shares."""
    rows = []
    for c in components:
        busy = c.busy(window_s) if window_s else None
        mean = c.mean_latency_s()
        rows.append(
            {
                "component": c.component,
                "window_s": window_s,
                "processing_s": c.processing_s,
                "processed": c.processed,
                "busy": busy,
                "mean_latency_ms": None if mean is None else mean * 1000,
                "dependencies": {
                    d: {
                        "seconds": s,
                        "share": s / c.processing_s if c.processing_s > 0 else None,
                    }
                    for d, s in sorted(c.dependencies.items())
                },
            }
        )
    return rows


def document(
    status: Status,
    findings: list[Finding],
    components: Sequence[ComponentTimes] = (),
    window_s: float | None = None,
) -> dict[str, Any]:
    """Plain dicts/lists only, so ``json.dumps`` needs no hooks. Rates are records/s or null."""
    return {
        "wall_time": status.wall_time,
        "interval_s": status.interval_s,
        "topics": [asdict(t) for t in status.topics],
        "groups": [
            {
                **{k: v for k, v in asdict(g).items() if k != "partition_lags"},
                "partitions_detail": [asdict(p) for p in g.partition_lags],
            }
            for g in status.groups
        ],
        "findings": [
            {
                "rule": f.rule,
                "group": f.group,
                "topic": f.topic,
                "partition": f.partition,
                "evidence": dict(f.evidence),
                "fix": f.fix,
                "component": f.component,
                "dependency": f.dependency,
            }
            for f in findings
        ],
        "components": components_document(components, window_s),
    }
