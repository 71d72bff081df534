"""Status and findings as one JSON-ready document (the ``filas status --json`` contract)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from filas.monitoring.rules import Finding
from filas.monitoring.samples import Status


def document(status: Status, findings: list[Finding]) -> dict[str, Any]:
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
    }
