"""The frozen description of one Kafka topic: the only place a topic's name is spelled."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DAY_MS = 24 * 60 * 60 * 1000
GIB = 1024**3


class CleanupPolicy(StrEnum):
    DELETE = "delete"
    # State topics (one current record per key): Kafka keeps the latest value per key forever.
    COMPACT = "compact"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """Name, key, value schema and queue size of one topic.

    ``retention_bytes`` is per partition (Kafka's semantics): the queue's size is
    ``partitions * retention_bytes``. ``key_field`` names the value field whose string form is the
    Kafka key, so one subscriber's or one device's events land on one partition, in order.
    """

    name: str
    value_schema: str
    key_field: str
    partitions: int
    description: str
    replication_factor: int = 3
    min_insync_replicas: int = 2
    retention_ms: int = 7 * DAY_MS
    retention_bytes: int = -1
    cleanup_policy: CleanupPolicy = CleanupPolicy.DELETE
    dead_letter: bool = True
    # Priority lane this topic belongs to (None when the family has no lanes).
    lane: str | None = None

    @property
    def dlq_name(self) -> str:
        return f"{self.name}.dlq"

    def kafka_config(self) -> dict[str, str]:
        """Topic-level configs as the Admin API takes them."""
        conf = {
            "cleanup.policy": self.cleanup_policy.value,
            "min.insync.replicas": str(self.min_insync_replicas),
            "retention.bytes": str(self.retention_bytes),
        }
        if self.cleanup_policy is CleanupPolicy.DELETE:
            conf["retention.ms"] = str(self.retention_ms)
        else:
            # Compacted topics keep the latest value per key; tombstones live one day.
            conf["retention.ms"] = "-1"
            conf["delete.retention.ms"] = str(DAY_MS)
            conf["min.compaction.lag.ms"] = str(60_000)
        return conf
