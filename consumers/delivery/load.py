"""CampaignMessage records for tests, benchmarks and smoke runs (``publish_messages``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from filas.catalog import Catalog
from filas.catalog.campaigns import MESSAGE_LANES
from filas.lanes import LaneRouter
from producers.envelope import envelope
from producers.sdk import EventProducer

_NAMESPACE = uuid.UUID("6f1c1d1e-5b9a-4c1f-9a57-0c2b1f0e6a11")


def message_id_for(campaign_id: str, recipient_id: str, channel: str) -> str:
    """Deterministic like the fan-out's: one id per (campaign, recipient, channel)."""
    return str(uuid.uuid5(_NAMESPACE, f"{campaign_id}/{recipient_id}/{channel}"))


def campaign_messages(
    count: int,
    *,
    channel: str = "email",
    lane: str = "bulk",
    campaign_id: str | None = None,
    first_recipient: int = 0,
    domain: str = "example.net",
    not_before: datetime | None = None,
    recipients: Sequence[int] | None = None,
) -> Iterator[dict[str, Any]]:
    """``count`` messages to recipients ``first_recipient`` on (or exactly ``recipients``)."""
    campaign = campaign_id or str(uuid.uuid4())
    due = not_before or datetime.now(UTC)
    numbers = (
        recipients if recipients is not None else range(first_recipient, first_recipient + count)
    )
    for i in numbers:
        recipient = str(100_000 + i)
        address = f"c{recipient}@{domain}" if channel == "email" else f"+55679{i:08d}"
        yield {
            "envelope": envelope("campaign-load", correlation_id=campaign),
            "message_id": message_id_for(campaign, recipient, channel),
            "campaign_id": campaign,
            "recipient_id": recipient,
            "contract_id": None,
            "channel": channel,
            "address": address,
            "subject": "Sua fatura" if channel == "email" else None,
            "body": f"Olá {recipient}, sua fatura vence amanhã.",
            "lane": lane,
            "not_before": due,
            "expires_at": None,
        }


def publish_messages(
    producer: EventProducer, catalog: Catalog, records: Iterator[dict[str, Any]]
) -> int:
    router = LaneRouter(catalog, MESSAGE_LANES)
    n = 0
    for record in records:
        producer.emit(router.route(record), record)
        n += 1
    producer.flush()
    return n


def murmur2_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as librdkafka's murmur2_random and
    the Java client) puts ``key`` in."""
    data = key.encode()
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & ~3
    extra = length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def balanced_recipients(per_partition: int, partitions: int, start: int = 0) -> list[int]:
    """Recipient numbers (as ``campaign_messages`` names them) with exactly ``per_partition``
    keys in every partition, so every worker of a group gets the same share of a campaign."""
    counts = [0] * partitions
    out: list[int] = []
    i = start
    while len(out) < per_partition * partitions:
        p = murmur2_partition(str(100_000 + i), partitions)
        if counts[p] < per_partition:
            counts[p] += 1
            out.append(i)
        i += 1
    return out


def delivery_catalog(prefix: str) -> Catalog:
    """The topics a delivery worker reads and writes (lanes and their DLQs, results, ledger,
    and the opt-outs and campaign commands it re-checks before sending)."""
    from filas.catalog.campaigns import CAMPAIGNS, DELIVERY_LEDGER, DELIVERY_RESULTS, OPT_OUTS

    catalog = Catalog.build(prefix)
    specs: list[Any] = [DELIVERY_RESULTS, DELIVERY_LEDGER, OPT_OUTS, CAMPAIGNS]
    for lane in MESSAGE_LANES:
        specs += [lane, catalog.dead_letter_for(lane).name]
    return catalog.only(*specs)
