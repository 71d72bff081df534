"""TopicAdmin.apply returns only once the cluster's metadata shows what it changed.

A real broker answers CreatePartitions before its metadata cache holds the new partitions; the
fake below lags the same way, deterministically, so the wait is proven without a race.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from confluent_kafka.admin import ConfigResource, NewPartitions

from filas.admin.topic_plan import Action, desired_config
from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog
from filas.errors import BrokerUnavailableError
from filas.settings import KafkaSettings


@dataclass
class _Partition:
    leader: int = 1
    replicas: list[int] = field(default_factory=lambda: [1])


@dataclass
class _Topic:
    partitions: dict[int, _Partition]
    error: Any = None


@dataclass
class _Metadata:
    topics: dict[str, _Topic]
    brokers: dict[int, object] = field(default_factory=lambda: {1: object()})


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


class _LaggingAdmin:
    """Partition growth becomes visible in metadata only after ``lag`` further requests."""

    def __init__(self, name: str, partitions: int, config: dict[str, str], lag: int) -> None:
        self.name = name
        self.visible = partitions
        self.config = config
        self.lag = lag
        self.target: int | None = None
        self.metadata_requests_after_grow = 0
        self.pending_config: dict[str, str] | None = None
        self.describes_after_alter = 0

    def list_topics(self, *_: Any, **__: Any) -> _Metadata:
        if self.target is not None:
            self.metadata_requests_after_grow += 1
            if self.metadata_requests_after_grow > self.lag:
                self.visible = self.target
        parts = {i: _Partition() for i in range(self.visible)}
        return _Metadata({self.name: _Topic(parts)})

    def describe_configs(self, resources: list[ConfigResource], **_: Any) -> dict[Any, Future[Any]]:
        if self.pending_config is not None:
            self.describes_after_alter += 1
            if self.describes_after_alter > self.lag:
                self.config, self.pending_config = self.pending_config, None

        @dataclass
        class _Entry:
            value: str

        return {r: _done({k: _Entry(v) for k, v in self.config.items()}) for r in resources}

    def incremental_alter_configs(self, resources: list[ConfigResource]) -> dict[Any, Future[Any]]:
        [resource] = resources
        changed = {e.name: e.value for e in resource.incremental_configs}
        self.pending_config = {**self.config, **changed}
        return {resource: _done(None)}

    def create_partitions(self, grows: list[NewPartitions], **_: Any) -> dict[str, Future[Any]]:
        [grow] = grows
        self.target = grow.new_total_count
        return {grow.topic: _done(None)}


def _setup(lag: int) -> tuple[TopicAdmin, _LaggingAdmin, Catalog, str]:
    catalog = Catalog.build("t-")
    name = "t-net.alerts"
    spec = catalog.get(name)
    fake = _LaggingAdmin(name, spec.partitions, desired_config(spec, 1), lag)
    admin = TopicAdmin(KafkaSettings(), client=fake)  # type: ignore[arg-type]
    grown = Catalog({name: replace(spec, partitions=spec.partitions + 3)}, "t-")
    return admin, fake, grown, name


def test_apply_waits_until_added_partitions_are_in_metadata() -> None:
    admin, fake, grown, name = _setup(lag=3)
    [change] = admin.apply(grown)
    assert change.action is Action.ADD_PARTITIONS
    assert fake.metadata_requests_after_grow > fake.lag
    # The next plan sees the new count, so a second apply is in sync instead of growing again.
    assert [c.action for c in admin.apply(grown)] == [Action.IN_SYNC]
    assert fake.visible == grown.get(name).partitions


def test_apply_waits_until_a_config_fix_is_described() -> None:
    admin, fake, grown, name = _setup(lag=3)
    fake.visible = grown.get(name).partitions
    fake.config = {**fake.config, "retention.ms": "1000"}  # changed by hand
    [change] = admin.apply(grown)
    assert change.action is Action.UPDATE_CONFIG
    assert fake.describes_after_alter > fake.lag
    assert fake.config["retention.ms"] == str(grown.get(name).retention_ms)
    assert [c.action for c in admin.apply(grown)] == [Action.IN_SYNC]


def test_apply_says_so_when_partitions_never_appear(monkeypatch: pytest.MonkeyPatch) -> None:
    admin, _fake, grown, _ = _setup(lag=10**9)
    clock = iter(range(0, 10**6, 10))
    monkeypatch.setattr("filas.admin.topics.time.monotonic", lambda: float(next(clock)))
    monkeypatch.setattr("filas.admin.topics.time.sleep", lambda _s: None)
    with pytest.raises(BrokerUnavailableError, match="not visible"):
        admin.apply(grown)
