"""Bottleneck rules: from one ``GroupTopicStatus`` to findings that name the fix (pure).

Rules need rates, so a status from a single snapshot yields no findings. "Saturated" means the
group consumes at (or near) the highest rate it has been seen to reach: the caller passes that
peak (``filas status`` keeps it across refreshes); without history the current rate is the peak,
so a group that is consuming and still falling behind counts as saturated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from filas.monitoring.samples import GroupTopicStatus
from filas.monitoring.scrape import ComponentTimes


@dataclass(frozen=True, slots=True)
class Thresholds:
    # Lag growing slower than this (records/s) is noise from commit timing, not a backlog.
    lag_growth_per_s: float = 1.0
    # Consume rate within this fraction of the peak counts as "at its max".
    saturation_ratio: float = 0.9
    # A hot partition must hold at least this lag and this multiple of the others' mean lag,
    # while every other partition stays at or below quiet_lag.
    hot_min_lag: int = 1000
    hot_ratio: float = 10.0
    quiet_lag: int = 100
    # Dependency rule: a dependency's share of the component's processing time, and how busy
    # the component must be (processing seconds per wall second) for it to matter.
    dependency_share: float = 0.5
    busy_ratio: float = 0.2


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    group: str
    topic: str
    evidence: Mapping[str, float | int | None]
    fix: str
    partition: int | None = None
    # Set by the dependency rule: the process (metrics ``component``) and what it waits on.
    component: str | None = None
    dependency: str | None = None


def _stalled(s: GroupTopicStatus) -> Finding | None:
    if s.lag <= 0 or s.consume_rate is None or s.consume_rate > 0:
        return None
    who = "no member is running" if s.members == 0 else f"{s.members} member(s) commit nothing"
    return Finding(
        rule="group_stalled",
        group=s.group,
        topic=s.topic,
        evidence={"lag": s.lag, "lag_rate": s.lag_rate, "consume_rate": 0.0, "members": s.members},
        fix=f"consumer group stalled ({who}): restart or unblock the consumers of {s.group}",
    )


def _saturated_growth(s: GroupTopicStatus, peak: float | None, t: Thresholds) -> Finding | None:
    if s.lag_rate is None or s.consume_rate is None or s.consume_rate <= 0:
        return None
    if s.lag_rate < t.lag_growth_per_s:
        return None
    top = max(peak or 0.0, s.consume_rate)
    if s.consume_rate < t.saturation_ratio * top:
        return None  # consuming below its own best: slowed down, not out of capacity
    evidence: dict[str, float | int | None] = {
        "lag": s.lag,
        "lag_rate": s.lag_rate,
        "consume_rate": s.consume_rate,
        "peak_consume_rate": top,
        "members": s.members,
        "partitions": s.partitions,
    }
    if s.members < s.partitions:
        return Finding(
            rule="scale_out",
            group=s.group,
            topic=s.topic,
            evidence=evidence,
            fix=f"scale out the consumer group (up to {s.partitions} partitions; "
            f"{s.members} member(s) now)",
        )
    return Finding(
        rule="add_partitions",
        group=s.group,
        topic=s.topic,
        evidence=evidence,
        fix=f"add partitions to {s.topic} (every one of {s.partitions} already has a consumer), "
        "then scale out the group",
    )


def _hot_partition(s: GroupTopicStatus, t: Thresholds) -> Finding | None:
    lags = s.partition_lags
    if len(lags) < 2:
        return None
    hot = max(lags, key=lambda p: p.lag)
    others = [p.lag for p in lags if p is not hot]
    mean_others = sum(others) / len(others)
    if hot.lag < t.hot_min_lag or max(others) > t.quiet_lag:
        return None
    if hot.lag < t.hot_ratio * max(mean_others, 1.0):
        return None
    return Finding(
        rule="hot_key",
        group=s.group,
        topic=s.topic,
        partition=hot.partition,
        evidence={
            "partition_lag": hot.lag,
            "others_mean_lag": mean_others,
            "partitions": len(lags),
        },
        fix=f"hot key on partition {hot.partition}: one key carries most of the traffic; "
        "spread it (finer key) or give it its own lane",
    )


def evaluate(
    statuses: Iterable[GroupTopicStatus],
    peaks: Mapping[tuple[str, str], float] | None = None,
    thresholds: Thresholds | None = None,
) -> list[Finding]:
    """Every finding for the given group/topic statuses. ``peaks``: (group, topic) -> best rate."""
    t = thresholds or Thresholds()
    findings: list[Finding] = []
    for s in statuses:
        # A stalled group is the whole story; its other symptoms follow from it.
        stalled = _stalled(s)
        if stalled is not None:
            findings.append(stalled)
            continue
        for finding in (
            _saturated_growth(s, (peaks or {}).get((s.group, s.topic)), t),
            _hot_partition(s, t),
        ):
            if finding is not None:
                findings.append(finding)
    return findings


def dependency_findings(
    times: Iterable[ComponentTimes], window_s: float, thresholds: Thresholds | None = None
) -> list[Finding]:
    """Components whose processing time in the window is dominated by one external call.

    ``times`` are per-component seconds over the window (``scrape.window``). A component fires
    when it was busy (processing seconds >= ``busy_ratio`` x ``window_s``) and its largest
    dependency took >= ``dependency_share`` of that processing time. Dependency time can exceed
    the processing time measured around it only by timer skew, so the share is capped at 1.
    """
    t = thresholds or Thresholds()
    if window_s <= 0:
        return []
    findings: list[Finding] = []
    for c in times:
        if not c.dependencies or c.processing_s <= 0:
            continue
        busy = c.processing_s / window_s
        if busy < t.busy_ratio:
            continue
        dependency, waited = max(c.dependencies.items(), key=lambda kv: (kv[1], kv[0]))
        share = min(waited / c.processing_s, 1.0)
        if share < t.dependency_share:
            continue
        findings.append(
            Finding(
                rule="dependency",
                group=c.component,
                topic="",
                component=c.component,
                dependency=dependency,
                evidence={
                    "dependency_s": round(waited, 6),
                    "processing_s": round(c.processing_s, 6),
                    "share": round(share, 4),
                    "busy": round(busy, 4),
                    "window_s": window_s,
                },
                fix=f"{c.component} spends {share:.0%} of its processing time waiting on "
                f"{dependency}: the bottleneck is {dependency} (check its latency and capacity), "
                "not the queue",
            )
        )
    return findings
