"""The delivery idempotency ledger: ``campaign.delivery-ledger`` read back into memory.

Every message gets a ``sending`` entry (acknowledged by the broker) just before its provider is
called, and a ``done`` entry with the final status after; offsets are committed only after the
``done`` entries. The ledger topic is keyed by recipient_id with as many partitions as each
message lane, so lane partition p's entries are all in ledger partition p: a worker reads just
the ledger partitions of the lane partitions it is assigned, up to their high watermark, before
it handles any of their messages (docs/decisions/0077-delivery-ledger-sending-marker.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from filas.catalog import TopicSpec
from filas.errors import BrokerUnavailableError, FilasError
from filas.settings import KafkaSettings
from schemas.serde import AvroSerde

SENDING = "sending"
DONE = "done"
SENT_STATUSES = frozenset({"sent", "delivered"})
DAY_MS = 86_400_000

CapKey = tuple[str, str, str]  # recipient_id, channel, lane


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    state: str
    status: str | None
    attempt: int
    # Who and when, for the frequency caps at send (None in entries older than decision 0074).
    campaign_id: str | None = None
    recipient_id: str | None = None
    channel: str | None = None
    lane: str | None = None
    at_ms: int = 0


class SendHistory:
    """Messages sent (or being sent) per (recipient, channel, lane) in the last 24 h, per ledger
    partition: the frequency cap at send (decision 0074). A recipient's messages of one lane are
    all on one partition, owned by one worker, so counting here is exact across fan-out and
    delivery instances."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[CapKey, dict[str, tuple[int, str]]]] = {}

    def add(self, partition: int, key: CapKey, message_id: str, campaign_id: str, at: int) -> None:
        self._parts.setdefault(partition, {}).setdefault(key, {})[message_id] = (at, campaign_id)

    def discard(self, partition: int, key: CapKey, message_id: str) -> None:
        found = self._parts.get(partition, {}).get(key)
        if found is not None:
            found.pop(message_id, None)

    def count(self, partition: int, key: CapKey, now_ms: int, exclude_campaign: str) -> int:
        """Messages of OTHER campaigns sent in the 24 h before ``now_ms`` (older ones dropped)."""
        found = self._parts.get(partition, {}).get(key)
        if not found:
            return 0
        for message_id, (at, _) in list(found.items()):
            if at <= now_ms - DAY_MS:
                del found[message_id]
        return sum(1 for _, campaign in found.values() if campaign != exclude_campaign)

    def drop(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._parts.pop(p, None)


class Ledger:
    """message_id -> latest entry, per ledger partition (= lane partition)."""

    def __init__(self) -> None:
        self._entries: dict[int, dict[str, LedgerEntry]] = {}
        # Next ledger offset to read per partition (what catch_up has seen).
        self.positions: dict[int, int] = {}
        self.sends = SendHistory()

    def get(self, partition: int, message_id: str) -> LedgerEntry | None:
        return self._entries.get(partition, {}).get(message_id)

    def record(self, partition: int, message_id: str, entry: LedgerEntry) -> None:
        entries = self._entries.setdefault(partition, {})
        old = entries.get(message_id)
        if old is not None and old.state == DONE and entry.state != DONE:
            return  # an outcome is final
        entries[message_id] = entry
        if (
            entry.state == DONE
            and entry.campaign_id is not None
            and entry.recipient_id is not None
            and entry.channel is not None
            and entry.lane is not None
        ):
            key = (entry.recipient_id, entry.channel, entry.lane)
            if entry.status in SENT_STATUSES:
                self.sends.add(partition, key, message_id, entry.campaign_id, entry.at_ms)
            else:  # not sent after all: no longer counts (a reservation is withdrawn)
                self.sends.discard(partition, key, message_id)

    def drop(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._entries.pop(p, None)
            self.positions.pop(p, None)
        self.sends.drop(partitions)

    def __len__(self) -> int:
        return sum(len(e) for e in self._entries.values())


def entry_of(record: Any) -> LedgerEntry:
    """A decoded ``DeliveryLedgerEntry`` record as kept in memory."""
    written = record["written_at"]
    at_ms = int(written.timestamp() * 1000) if hasattr(written, "timestamp") else int(written)
    campaign = record.get("campaign_id")
    return LedgerEntry(
        str(record["state"]),
        record.get("status"),
        int(record["attempt"]),
        campaign_id=None if campaign is None else str(campaign),
        recipient_id=str(record["recipient_id"]),
        channel=str(record["channel"]),
        lane=record.get("lane"),
        at_ms=at_ms,
    )


class LedgerReader:
    """Reads ledger partitions (no consumer group) from the last position up to now."""

    def __init__(
        self, kafka: KafkaSettings, spec: TopicSpec, serde: AvroSerde, timeout_s: float
    ) -> None:
        self.spec = spec
        self.serde = serde
        self.timeout_s = timeout_s
        conf = dict(kafka.client_config()) | {
            "group.id": f"filas-delivery-ledger-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._consumer: Any = Consumer(conf)

    def partition_count(self) -> int:
        try:
            topic = self._consumer.list_topics(self.spec.name, timeout=10).topics.get(
                self.spec.name
            )
        except KafkaException as exc:
            raise BrokerUnavailableError(f"delivery ledger: no broker answered ({exc})") from exc
        if topic is None or topic.error is not None:
            raise FilasError(
                f"delivery ledger: topic {self.spec.name!r} missing; run 'filas topics apply'"
            )
        return len(topic.partitions)

    def catch_up(self, ledger: Ledger, partitions: Iterable[int]) -> int:
        """Read ``partitions`` of the ledger from ``ledger.positions`` to their high watermark."""
        name = self.spec.name
        pending: dict[int, int] = {}
        assignment = []
        for p in sorted(set(partitions)):
            low, high = self._consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            start = max(low, ledger.positions.get(p, low))
            ledger.positions.setdefault(p, start)
            if high > start:
                pending[p] = high
                assignment.append(TopicPartition(name, p, start))
        if not assignment:
            return 0
        read = 0
        self._consumer.assign(assignment)
        try:
            deadline = time.monotonic() + self.timeout_s
            while pending:
                if time.monotonic() > deadline:
                    raise FilasError(
                        f"delivery ledger: {name} partitions {sorted(pending)} not read "
                        f"within {self.timeout_s:.0f}s",
                        code="delivery_ledger_not_ready",
                        retriable=True,
                    )
                for msg in self._consumer.consume(num_messages=1000, timeout=0.5):
                    if msg.error():
                        continue
                    p = msg.partition()
                    if msg.value() is not None:
                        r = self.serde.deserialize(msg.value())
                        ledger.record(p, str(r["message_id"]), entry_of(r))
                        read += 1
                    ledger.positions[p] = msg.offset() + 1
                    if p in pending and msg.offset() + 1 >= pending[p]:
                        del pending[p]
        finally:
            self._consumer.unassign()
        return read

    def close(self) -> None:
        self._consumer.close()
