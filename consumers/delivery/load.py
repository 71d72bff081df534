"""CampaignMessage records for tests, benchmarks and smoke runs (``publish_messages``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
) -> Iterator[dict[str, Any]]:
    campaign = campaign_id or str(uuid.uuid4())
    due = not_before or datetime.now(UTC)
    for i in range(first_recipient, first_recipient + count):
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
