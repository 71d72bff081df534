"""Pure reconciliation: compare the catalog with the cluster and decide what to change.

Kept free of any client so the rules (never shrink, clamp replication on small dev clusters)
are unit-tested without a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from filas.catalog import TopicSpec


class Action(StrEnum):
    CREATE = "create"
    ADD_PARTITIONS = "add-partitions"
    UPDATE_CONFIG = "update-config"
    REFUSED = "refused"
    IN_SYNC = "in-sync"


@dataclass(frozen=True, slots=True)
class LiveTopic:
    """What the cluster says about one topic."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Change:
    topic: str
    action: Action
    detail: str
    partitions: int = 0
    replication_factor: int = 0
    config: Mapping[str, str] = field(default_factory=dict)


def effective_replication(spec: TopicSpec, broker_count: int) -> tuple[int, int]:
    """Replication and min.insync.replicas that this cluster can honour.

    A single-broker dev cluster cannot hold replication 3; clamping (and saying so in the plan) is
    what a developer expects, while a production cluster of 3+ brokers gets the spec unchanged.
    """
    replication = max(1, min(spec.replication_factor, broker_count))
    min_insync = max(1, min(spec.min_insync_replicas, replication - 1 if replication > 1 else 1))
    return replication, min_insync


def desired_config(spec: TopicSpec, broker_count: int) -> dict[str, str]:
    _, min_insync = effective_replication(spec, broker_count)
    conf = spec.kafka_config()
    conf["min.insync.replicas"] = str(min_insync)
    return conf


def plan(
    specs: Iterable[TopicSpec], live: Mapping[str, LiveTopic], broker_count: int
) -> list[Change]:
    changes: list[Change] = []
    for spec in specs:
        replication, _ = effective_replication(spec, broker_count)
        wanted = desired_config(spec, broker_count)
        current = live.get(spec.name)
        clamp_note = (
            f" (replication {spec.replication_factor} clamped to {replication}: "
            f"{broker_count} broker(s))"
            if replication != spec.replication_factor
            else ""
        )
        if current is None:
            changes.append(
                Change(
                    spec.name,
                    Action.CREATE,
                    f"{spec.partitions} partitions, replication {replication}{clamp_note}",
                    partitions=spec.partitions,
                    replication_factor=replication,
                    config=wanted,
                )
            )
            continue
        if current.partitions > spec.partitions:
            # Kafka cannot remove partitions, and re-keying would break per-key ordering.
            changes.append(
                Change(
                    spec.name,
                    Action.REFUSED,
                    f"cluster has {current.partitions} partitions, catalog says "
                    f"{spec.partitions}: refusing to shrink (update the catalog instead)",
                )
            )
        elif current.partitions < spec.partitions:
            changes.append(
                Change(
                    spec.name,
                    Action.ADD_PARTITIONS,
                    f"{current.partitions} -> {spec.partitions} partitions "
                    "(existing keys may move to other partitions)",
                    partitions=spec.partitions,
                )
            )
        drift = {k: v for k, v in wanted.items() if current.config.get(k) != v}
        if drift:
            detail = ", ".join(f"{k}: {current.config.get(k)!r} -> {v!r}" for k, v in drift.items())
            changes.append(Change(spec.name, Action.UPDATE_CONFIG, detail, config=drift))
        if current.replication_factor != replication:
            changes.append(
                Change(
                    spec.name,
                    Action.REFUSED,
                    f"replication is {current.replication_factor}, catalog wants {replication}: "
                    "change it with a partition reassignment, not apply",
                )
            )
        if (
            not drift
            and current.partitions == spec.partitions
            and (current.replication_factor == replication)
        ):
            changes.append(Change(spec.name, Action.IN_SYNC, "matches the catalog"))
    return changes
