"""The lag collector: one AdminClient pass -> a ``Snapshot`` (the only Kafka-facing module)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from filas.admin.futures import ADMIN_TIMEOUT_S, admin_result
from filas.errors import BrokerUnavailableError
from filas.monitoring.samples import GroupOffsets, Snapshot, TopicPartitionKey
from filas.settings import KafkaSettings

_TIMEOUT_S = ADMIN_TIMEOUT_S


class LagCollector:
    """Samples end offsets of the topics under ``topic_prefix`` and every group's commits.

    Internal topics (``__consumer_offsets``...) are skipped: their lag is Kafka's business.
    """

    def __init__(
        self, settings: KafkaSettings, *, topic_prefix: str = "", client: AdminClient | None = None
    ) -> None:
        self._client = client or AdminClient(settings.client_config())
        self._prefix = topic_prefix
        self._bootstrap = settings.bootstrap_servers

    def sample(self) -> Snapshot:
        wall, taken = time.time(), time.monotonic()
        partitions = self._partitions()
        return Snapshot(
            taken_at=taken,
            wall_time=wall,
            partitions=partitions,
            end_offsets=self._offsets(partitions, OffsetSpec.latest()),
            groups=self._groups(),
            start_offsets=self._offsets(partitions, OffsetSpec.earliest()),
        )

    def _partitions(self) -> dict[str, int]:
        try:
            metadata = self._client.list_topics(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailableError(
                f"Kafka at {self._bootstrap} did not answer a metadata request: {exc.args[0].str()}"
            ) from exc
        return {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None and not name.startswith("__") and name.startswith(self._prefix)
        }

    def _offsets(self, partitions: dict[str, int], spec: Any) -> dict[TopicPartitionKey, int]:
        request = {
            TopicPartition(topic, p): spec
            for topic, count in partitions.items()
            for p in range(count)
        }
        if not request:
            return {}
        futures = self._client.list_offsets(request, request_timeout=_TIMEOUT_S)
        return {
            (tp.topic, tp.partition): admin_result(f, f"offsets of {tp.topic}").offset
            for tp, f in futures.items()
        }

    def _groups(self) -> dict[str, GroupOffsets]:
        listing = admin_result(
            self._client.list_consumer_groups(request_timeout=_TIMEOUT_S), "list groups"
        )
        ids = sorted(g.group_id for g in listing.valid)
        if not ids:
            return {}
        descriptions = {
            gid: admin_result(f, f"describe group {gid}")
            for gid, f in self._client.describe_consumer_groups(
                ids, request_timeout=_TIMEOUT_S
            ).items()
        }
        groups: dict[str, GroupOffsets] = {}
        for gid in ids:
            # The API answers one group per request (librdkafka limit), so ask group by group.
            [future] = self._client.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(gid)], request_timeout=_TIMEOUT_S
            ).values()
            offsets = admin_result(future, f"offsets of group {gid}")
            committed = {
                (tp.topic, tp.partition): tp.offset
                for tp in offsets.topic_partitions
                # Negative offsets are "nothing committed" sentinels, not positions.
                if tp.offset >= 0 and tp.topic.startswith(self._prefix)
            }
            if not committed:
                continue
            description = descriptions[gid]
            groups[gid] = GroupOffsets(
                group=gid,
                state=str(getattr(description.state, "name", description.state)),
                members=len(description.members),
                committed=committed,
            )
        return groups
