"""Snapshots of the cluster and the rates between two of them (pure, no Kafka).

A ``Snapshot`` is what one collector pass saw: every partition's end offset and every group's
committed offsets. Rates need two snapshots; with only one they are ``None`` rather than 0, so
"not measured yet" is never mistaken for "stalled".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class GroupOffsets:
    """One consumer group at sampling time: its state, members and committed offsets."""

    group: str
    state: str
    members: int
    committed: Mapping[TopicPartitionKey, int]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One collector pass. ``taken_at`` is monotonic seconds (rates), ``wall_time`` epoch."""

    taken_at: float
    wall_time: float
    partitions: Mapping[str, int]
    """Topic -> partition count."""
    end_offsets: Mapping[TopicPartitionKey, int]
    groups: Mapping[str, GroupOffsets]
    start_offsets: Mapping[TopicPartitionKey, int] = field(default_factory=dict)
    """Log start offsets; a partition the group never committed counts its lag from here."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    """None: the group commits to the topic but never to this partition (lag from log start,
    what ``auto.offset.reset=earliest`` would read; kafka-consumer-groups would show "-")."""
    end_offset: int
    lag: int
    lag_rate: float | None
    """Change of lag in records/s since the previous snapshot (positive: falling behind)."""


@dataclass(frozen=True, slots=True)
class TopicRate:
    topic: str
    partitions: int
    end_offset: int
    """Sum of the partitions' end offsets: records ever written (minus none; offsets only grow)."""
    produce_rate: float | None


@dataclass(frozen=True, slots=True)
class GroupTopicStatus:
    """A consumer group on one topic it commits to: the unit the bottleneck rules judge."""

    group: str
    topic: str
    state: str
    members: int
    partitions: int
    lag: int
    lag_rate: float | None
    consume_rate: float | None
    partition_lags: tuple[PartitionLag, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Status:
    """Everything ``filas status`` shows, computed from the last two snapshots."""

    wall_time: float
    interval_s: float | None
    topics: tuple[TopicRate, ...]
    groups: tuple[GroupTopicStatus, ...]


def rate(before: float, after: float, seconds: float) -> float | None:
    """Per-second change, or None when the interval is not positive (clock did not advance)."""
    if seconds <= 0:
        return None
    return (after - before) / seconds


def lag_of(committed: int, end_offset: int) -> int:
    """Records the group has not committed. Never negative: a truncated or recreated topic can
    briefly report an end offset below an old commit, and a negative lag would mislead the rules.
    """
    return max(end_offset - committed, 0)


def _topic_rates(previous: Snapshot | None, current: Snapshot, seconds: float) -> list[TopicRate]:
    rates = []
    for topic in sorted(current.partitions):
        keys = [(topic, p) for p in range(current.partitions[topic])]
        end = sum(current.end_offsets.get(k, 0) for k in keys)
        produce: float | None = None
        if previous is not None:
            # Only partitions present both times: a partition added in between must not count its
            # whole backlog as one interval's production.
            common = [k for k in keys if k in previous.end_offsets and k in current.end_offsets]
            produce = rate(
                sum(previous.end_offsets[k] for k in common),
                sum(current.end_offsets[k] for k in common),
                seconds,
            )
        rates.append(TopicRate(topic, current.partitions[topic], end, produce))
    return rates


def _lag(committed: int | None, key: TopicPartitionKey, snapshot: Snapshot) -> int:
    end = snapshot.end_offsets.get(key, 0)
    start = snapshot.start_offsets.get(key, 0) if committed is None else committed
    return lag_of(start, end)


def _group_statuses(
    previous: Snapshot | None, current: Snapshot, seconds: float
) -> list[GroupTopicStatus]:
    statuses = []
    for name in sorted(current.groups):
        group = current.groups[name]
        before = previous.groups.get(name) if previous is not None else None
        # Every partition of each topic the group commits to: a partition it never committed
        # still holds a backlog for it, and leaving it out would hide the worst lag of all.
        topics = sorted({t for t, _ in group.committed if t in current.partitions})
        by_topic = {t: [(t, p) for p in range(current.partitions[t])] for t in topics}
        for topic in topics:
            lags = []
            for key in by_topic[topic]:
                committed = group.committed.get(key)
                lag = _lag(committed, key, current)
                lag_rate: float | None = None
                if before is not None and previous is not None:
                    lag_rate = rate(_lag(before.committed.get(key), key, previous), lag, seconds)
                lags.append(
                    PartitionLag(
                        topic, key[1], committed, current.end_offsets.get(key, 0), lag, lag_rate
                    )
                )
            # Consume rate: only partitions committed in both samples have a commit delta.
            common = [
                k
                for k in by_topic[topic]
                if k in group.committed and before is not None and k in before.committed
            ]
            consume: float | None = None
            topic_lag_rate: float | None = None
            if before is not None and common:
                consume = rate(
                    sum(before.committed[k] for k in common),
                    sum(group.committed[k] for k in common),
                    seconds,
                )
                known = [p.lag_rate for p in lags if p.lag_rate is not None]
                topic_lag_rate = sum(known) if known else None
            statuses.append(
                GroupTopicStatus(
                    group=name,
                    topic=topic,
                    state=group.state,
                    members=group.members,
                    partitions=current.partitions.get(topic, len(lags)),
                    lag=sum(p.lag for p in lags),
                    lag_rate=topic_lag_rate,
                    consume_rate=consume,
                    partition_lags=tuple(lags),
                )
            )
    return statuses


def compute_status(previous: Snapshot | None, current: Snapshot) -> Status:
    """Lag, lag rate, produce and consume rates from the last two snapshots (or just one)."""
    seconds = current.taken_at - previous.taken_at if previous is not None else 0.0
    return Status(
        wall_time=current.wall_time,
        interval_s=seconds if previous is not None else None,
        topics=tuple(_topic_rates(previous, current, seconds)),
        groups=tuple(_group_statuses(previous, current, seconds)),
    )
