"""Apply the topic catalog to a live cluster and inspect it, through Kafka's Admin API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from filas.admin.futures import ADMIN_TIMEOUT_S, admin_result
from filas.admin.topic_plan import Action, Change, LiveTopic, plan
from filas.catalog import Catalog, TopicSpec
from filas.errors import BrokerUnavailableError, FilasError
from filas.settings import KafkaSettings

_TIMEOUT_S = ADMIN_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """One catalog topic as it is in the cluster right now."""

    spec: TopicSpec
    exists: bool
    partitions: int
    replication_factor: int
    records: int
    """Records currently held (end offset minus start offset, summed over partitions)."""


class TopicAdmin:
    def __init__(self, settings: KafkaSettings, client: AdminClient | None = None) -> None:
        self._client = client or AdminClient(settings.client_config())
        self._bootstrap = settings.bootstrap_servers

    def broker_count(self) -> int:
        try:
            metadata = self._client.list_topics(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailableError(
                f"Kafka at {self._bootstrap} did not answer a metadata request "
                f"within {_TIMEOUT_S:.0f}s: {exc.args[0].str()}"
            ) from exc
        return len(metadata.brokers)

    def live_topics(self, names: Iterable[str]) -> dict[str, LiveTopic]:
        metadata = self._client.list_topics(timeout=_TIMEOUT_S)
        present = [n for n in names if n in metadata.topics]
        if not present:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in present]
        configs = self._client.describe_configs(resources, request_timeout=_TIMEOUT_S)
        live: dict[str, LiveTopic] = {}
        for resource, future in configs.items():
            entries: Mapping[str, ConfigEntry] = admin_result(future, f"describe {resource.name}")
            topic = metadata.topics[resource.name]
            partitions = topic.partitions
            replication = len(next(iter(partitions.values())).replicas) if partitions else 0
            live[resource.name] = LiveTopic(
                name=resource.name,
                partitions=len(partitions),
                replication_factor=replication,
                config={k: str(e.value) for k, e in entries.items()},
            )
        return live

    def plan(self, catalog: Catalog) -> list[Change]:
        brokers = self.broker_count()
        specs = list(catalog)
        return plan(specs, self.live_topics(s.name for s in specs), brokers)

    def apply(self, catalog: Catalog, *, dry_run: bool = False) -> list[Change]:
        """Create missing topics, add partitions and update configs; never shrink anything."""
        changes = self.plan(catalog)
        if dry_run:
            return changes
        creates = [
            NewTopic(
                c.topic,
                num_partitions=c.partitions,
                replication_factor=c.replication_factor,
                config=dict(c.config),
            )
            for c in changes
            if c.action is Action.CREATE
        ]
        if creates:
            for name, future in self._client.create_topics(
                creates, request_timeout=_TIMEOUT_S
            ).items():
                try:
                    admin_result(future, f"create {name}")
                except FilasError as exc:
                    # Another apply racing us created it first: that is the state we want.
                    if "already exists" not in str(exc).lower():
                        raise
            self._wait_visible({t.topic: t.num_partitions for t in creates})
        grows = [
            NewPartitions(c.topic, c.partitions)
            for c in changes
            if c.action is Action.ADD_PARTITIONS
        ]
        if grows:
            for name, future in self._client.create_partitions(
                grows, request_timeout=_TIMEOUT_S
            ).items():
                admin_result(future, f"add partitions to {name}")
            self._wait_visible({g.topic: g.new_total_count for g in grows})
        updates = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                c.topic,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in c.config.items()
                ],
            )
            for c in changes
            if c.action is Action.UPDATE_CONFIG
        ]
        if updates:
            for resource, future in self._client.incremental_alter_configs(updates).items():
                admin_result(future, f"update config of {resource.name}")
            self._wait_configs(
                {c.topic: c.config for c in changes if c.action is Action.UPDATE_CONFIG}
            )
        return changes

    def _wait_configs(
        self, wanted: Mapping[str, Mapping[str, str]], timeout_s: float = 30.0
    ) -> None:
        """Return once DescribeConfigs shows every value just set.

        The broker applies an IncrementalAlterConfigs from the metadata log after answering it;
        a plan or describe right after would otherwise report the old value as drift.
        """

        def lagging(names: set[str]) -> set[str]:
            resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
            configs = self._client.describe_configs(resources, request_timeout=_TIMEOUT_S)
            behind: set[str] = set()
            for resource, future in configs.items():
                entries: Mapping[str, ConfigEntry] = admin_result(
                    future, f"describe {resource.name}"
                )
                want = wanted[resource.name]
                if not all(k in entries and str(entries[k].value) == v for k, v in want.items()):
                    behind.add(resource.name)
            return behind

        _poll_until_settled(set(wanted), lagging, "config changes", timeout_s)

    def _wait_visible(self, partitions: Mapping[str, int], timeout_s: float = 30.0) -> None:
        """Return once each topic shows its expected partition count, each with a leader.

        CreateTopics and CreatePartitions answer before the metadata reaches every broker; a
        caller that describes, plans or produces right after would otherwise see
        UNKNOWN_TOPIC_OR_PART or the old partition count (and a second apply would plan
        against it).
        """

        def lagging(names: set[str]) -> set[str]:
            metadata = self._client.list_topics(timeout=_TIMEOUT_S)
            return {
                n
                for n in names
                if n not in metadata.topics
                or metadata.topics[n].error is not None
                or len(metadata.topics[n].partitions) < partitions[n]
                or any(p.leader < 0 for p in metadata.topics[n].partitions.values())
            }

        _poll_until_settled(set(partitions), lagging, "topic changes", timeout_s)

    def describe(self, catalog: Catalog) -> list[TopicStatus]:
        metadata = self._client.list_topics(timeout=_TIMEOUT_S)
        statuses: list[TopicStatus] = []
        for spec in catalog:
            topic = metadata.topics.get(spec.name)
            if topic is None or topic.error is not None:
                statuses.append(TopicStatus(spec, False, 0, 0, 0))
                continue
            tps = [TopicPartition(spec.name, p) for p in topic.partitions]
            statuses.append(
                TopicStatus(
                    spec,
                    True,
                    len(topic.partitions),
                    len(next(iter(topic.partitions.values())).replicas) if tps else 0,
                    self._record_count(tps),
                )
            )
        return statuses

    def _record_count(self, partitions: list[TopicPartition]) -> int:
        def offsets(spec: OffsetSpec) -> dict[TopicPartition, int]:
            futures = self._client.list_offsets(
                dict.fromkeys(partitions, spec), request_timeout=_TIMEOUT_S
            )
            return {tp: admin_result(f, "list offsets").offset for tp, f in futures.items()}

        latest = offsets(OffsetSpec.latest())
        earliest = offsets(OffsetSpec.earliest())
        return sum(latest[tp] - earliest[tp] for tp in latest)


def _poll_until_settled(
    names: set[str], lagging: Callable[[set[str]], set[str]], what: str, timeout_s: float
) -> None:
    """Ask ``lagging`` every 200 ms which of ``names`` the cluster does not show yet, until none.

    Raises BrokerUnavailableError naming them once ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    pending = names
    while pending:
        pending = lagging(pending)
        if pending and time.monotonic() > deadline:
            raise BrokerUnavailableError(
                f"{what} not visible after {timeout_s:.0f}s: {sorted(pending)}"
            )
        if pending:
            time.sleep(0.2)
