"""Lag samples and findings as event records (pure): what ``filas monitor`` publishes each pass."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from filas.monitoring.rules import Finding
from filas.monitoring.samples import Snapshot, Status, rate
from producers.envelope import envelope

SOURCE = "filas-monitor"


def _at(wall_time: float) -> datetime:
    return datetime.fromtimestamp(wall_time, UTC)


def lag_records(
    previous: Snapshot | None, current: Snapshot, status: Status
) -> list[dict[str, Any]]:
    """One ``LagSample`` per group / topic / partition of ``status`` (computed from the two
    snapshots). Per-partition consume and produce rates come from the snapshots' deltas."""
    seconds = current.taken_at - previous.taken_at if previous is not None else 0.0
    at = _at(current.wall_time)
    records = []
    for g in status.groups:
        before = previous.groups.get(g.group) if previous is not None else None
        for p in g.partition_lags:
            key = (p.topic, p.partition)
            consume: float | None = None
            produce: float | None = None
            if previous is not None and key in previous.end_offsets:
                produce = rate(previous.end_offsets[key], p.end_offset, seconds)
            if before is not None and p.committed is not None and key in before.committed:
                consume = rate(before.committed[key], p.committed, seconds)
            records.append(
                {
                    "envelope": envelope(SOURCE, occurred_at=at),
                    "consumer_group": g.group,
                    "topic": p.topic,
                    "partition": p.partition,
                    "state": g.state,
                    "members": g.members,
                    "committed": p.committed,
                    "end_offset": p.end_offset,
                    "lag": p.lag,
                    "lag_rate": p.lag_rate,
                    "consume_rate": consume,
                    "produce_rate": produce,
                }
            )
    return records


def finding_records(findings: Iterable[Finding], wall_time: float) -> list[dict[str, Any]]:
    """One ``BottleneckFinding`` per finding; evidence keeps only the numbers (no nulls)."""
    at = _at(wall_time)
    return [
        {
            "envelope": envelope(SOURCE, occurred_at=at),
            "rule": f.rule,
            "consumer_group": f.group,
            "topic": f.topic,
            "partition": f.partition,
            "component": f.component,
            "dependency": f.dependency,
            "fix": f.fix,
            "evidence": {k: float(v) for k, v in f.evidence.items() if v is not None},
        }
        for f in findings
    ]
