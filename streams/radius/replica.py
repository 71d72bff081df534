"""The in-memory replica of subscriber and NAS state the RADIUS gateway answers from.

``StateReplica`` holds frozen entries built from ``ixc.subscribers``, ``ixc.contracts`` (status
only) and ``ixc.nas`` records; ``ReplicaFeeder`` keeps it current with a plain confluent-kafka
consumer thread (``streams.topic_state``) that reads the three compacted topics from the
beginning (no committed group: every gateway holds all of it) and sets ``ready`` once it has
caught up with the high watermarks seen at start-up
(docs/decisions/0050-radius-replica-plain-consumer-thread.md).

Lookups are plain dict reads (atomic under the GIL) on the event loop; only the feeder thread
writes, replacing whole entries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition

from filas.catalog import Catalog, TopicSpec
from filas.catalog.ixc_state import CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING
from filas.errors import FilasError
from filas.settings import KafkaSettings
from streams.radius.sessions import SessionTable
from streams.topic_state import TopicStateFeeder, watermarks

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Subscriber:
    """What authorization needs from one ``SubscriberLogin`` (the password never leaves here)."""

    login: str
    contract_id: str
    status: str
    password: str | None
    plan_name: str | None
    download_kbps: int | None
    upload_kbps: int | None
    static_ipv4: str | None
    mac: str | None
    bind_mac: bool
    simultaneous_use: int
    nas_id: str | None

    def __repr__(self) -> str:  # never print the password
        return f"Subscriber(login={self.login!r}, status={self.status!r})"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Subscriber:
        mac = record.get("mac")
        return cls(
            login=record["login"],
            contract_id=record["contract_id"],
            status=record["status"],
            password=record.get("password"),
            plan_name=record.get("plan_name"),
            download_kbps=record.get("download_kbps"),
            upload_kbps=record.get("upload_kbps"),
            static_ipv4=record.get("static_ipv4"),
            mac=normalize_mac(mac) if mac else None,
            bind_mac=bool(record.get("bind_mac", False)),
            simultaneous_use=int(record.get("simultaneous_use", 1)),
            nas_id=record.get("nas_id"),
        )


@dataclass(frozen=True, slots=True)
class NasEntry:
    nas_id: str
    name: str
    ip: str
    vendor: str
    secret_ref: str
    requires_message_authenticator: bool
    coa_port: int
    active: bool

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> NasEntry:
        return cls(
            nas_id=record["nas_id"],
            name=record["name"],
            ip=record["ip"],
            vendor=record.get("vendor", "OTHER"),
            secret_ref=record["secret_ref"],
            requires_message_authenticator=bool(record.get("requires_message_authenticator", True)),
            coa_port=int(record.get("coa_port", 3799)),
            active=bool(record.get("active", True)),
        )


def normalize_mac(value: str) -> str:
    """'aa-bb-cc-dd-ee-ff', 'aabb.ccdd.eeff', 'AABBCCDDEEFF' -> 'AA:BB:CC:DD:EE:FF'."""
    digits = "".join(c for c in value if c.isalnum()).upper()
    if len(digits) != 12:
        return value.upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


class StateReplica:
    """Subscribers by login, contract status by contract id, NAS by id and by source IP."""

    def __init__(self) -> None:
        self.subscribers: dict[str, Subscriber] = {}
        self.contract_status: dict[str, str] = {}
        self._nas_by_id: dict[str, NasEntry] = {}
        self.nas_by_ip: dict[str, NasEntry] = {}
        self._lock = threading.Lock()  # writers only; readers use plain dict reads

    def put_subscriber(self, login: str, record: Mapping[str, Any] | None) -> None:
        if record is None:
            self.subscribers.pop(login, None)
        else:
            self.subscribers[login] = Subscriber.from_record(record)

    def put_contract(self, contract_id: str, record: Mapping[str, Any] | None) -> None:
        if record is None:
            self.contract_status.pop(contract_id, None)
        else:
            self.contract_status[contract_id] = record["status"]

    def put_nas(self, nas_id: str, record: Mapping[str, Any] | None) -> None:
        with self._lock:
            old = self._nas_by_id.pop(nas_id, None)
            if old is not None and self.nas_by_ip.get(old.ip) is old:
                del self.nas_by_ip[old.ip]
            if record is not None:
                entry = NasEntry.from_record(record)
                self._nas_by_id[nas_id] = entry
                self.nas_by_ip[entry.ip] = entry

    def subscriber(self, login: str) -> Subscriber | None:
        return self.subscribers.get(login)

    def nas(self, ip: str) -> NasEntry | None:
        return self.nas_by_ip.get(ip)

    def sizes(self) -> tuple[int, int]:
        return len(self.subscribers), len(self._nas_by_id)


Deserializer = Callable[[bytes], dict[str, Any]]


class ReplicaFeeder(TopicStateFeeder):
    """Reads the compacted state topics into a ``StateReplica`` on a daemon thread."""

    def __init__(
        self,
        kafka: KafkaSettings,
        catalog: Catalog,
        serdes: Callable[[TopicSpec], Any],
        replica: StateReplica,
        sessions: SessionTable | None = None,
        sessions_lookback_s: float = 0.0,
    ) -> None:
        super().__init__(kafka, label="radius replica")
        self._replica = replica
        self._sessions = sessions
        self._lookback_s = sessions_lookback_s
        self._accounting = catalog.resolve(ACCOUNTING)
        self._subscribers = catalog.resolve(SUBSCRIBERS)
        self._nas = catalog.resolve(NAS)
        self._contracts = catalog.resolve(CONTRACTS)
        self._decoders: dict[str, Deserializer] = {
            spec.name: serdes(spec).deserialize
            for spec in (self._subscribers, self._nas, self._contracts)
        }
        if sessions is not None:
            self._decoders[self._accounting.name] = serdes(self._accounting).deserialize

    def topics(self) -> Sequence[TopicSpec]:
        return (self._subscribers, self._nas, self._contracts)

    def _extra_partitions(self, consumer: Any, metadata: Any) -> list[TopicPartition]:
        """Accounting partitions from ``sessions_lookback_s`` ago: older sessions are stale."""
        if self._sessions is None:
            return []
        name = self._accounting.name
        topic = self._topic_or_fail(consumer, metadata, name)
        since_ms = int((time.time() - self._lookback_s) * 1000)
        wanted = [TopicPartition(name, p, since_ms) for p in sorted(topic.partitions)]
        found = consumer.offsets_for_times(wanted, timeout=10)
        partitions = []
        for tp in found:
            _, high = watermarks(consumer, TopicPartition(name, tp.partition))
            start = tp.offset if tp.offset >= 0 else high
            partitions.append(TopicPartition(name, tp.partition, start))
            if start < high:
                self._expect(name, tp.partition, high)
        return partitions

    def _apply(self, msg: Any) -> None:
        topic, key = msg.topic(), msg.key()
        login_or_id = key.decode(errors="replace") if key else ""
        value = msg.value()
        record: dict[str, Any] | None = None
        if value is not None:
            try:
                record = self._decoders[topic](value)
            except FilasError as exc:
                # Never logs the value: ixc.subscribers carries passwords (decision 0020).
                self.decode_errors += 1
                logger.error("replica: skipped %s offset %s: %s", topic, msg.offset(), exc.code)
                self._progress(topic, msg.partition(), msg.offset())
                return
        if topic == self._subscribers.name:
            self._replica.put_subscriber(login_or_id, record)
        elif topic == self._accounting.name:
            if record is not None and self._sessions is not None:
                self._sessions.apply(record)
        elif topic == self._contracts.name:
            self._replica.put_contract(login_or_id, record)
        else:
            self._replica.put_nas(login_or_id, record)
        self.applied += 1
        self._progress(topic, msg.partition(), msg.offset())
