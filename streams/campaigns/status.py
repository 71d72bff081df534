"""``filas campaigns status``: where a campaign stands, from Kafka (decision 0073).

Two sources, both read with ``streams.topic_state.read_topic_once``:

* ``campaign.progress``: the fan-out's latest event for the campaign (status, planned, queued,
  the fan-out's skips, error);
* ``campaign.delivery-results``: the latest status per message id of the campaign (one record
  per finished message; a message's results share its recipient key, hence its partition, so
  offset order is their order).

sent = sent/delivered; failed = temporary_failure (retries exhausted), permanent_failure,
expired, unknown (ambiguous send skipped); skipped = skipped_* (decided at send); cancelled =
withdrawn by a cancel; pending = queued - all of those. rate = messages first accepted by the
provider in the last minute, per second (over the time since the first send when that is
shorter than a minute).

The delivery results are read from the campaign's first progress event (minus a clock-skew
margin), and on each refresh of ``--watch`` only from the previous read's start (minus the
margin): re-reading a record is harmless, since the state keeps the latest per message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from filas.bootstrap import Serdes
from filas.catalog import Catalog
from filas.catalog.campaigns import DELIVERY_RESULTS, PROGRESS
from filas.errors import FilasError
from filas.settings import KafkaSettings
from streams.topic_state import read_topic_once

logger = logging.getLogger(__name__)

SENT = frozenset({"sent", "delivered"})
FAILED = frozenset({"temporary_failure", "permanent_failure", "expired", "unknown"})
CANCELLED = "cancelled"
FINAL_CAMPAIGN_STATES = frozenset({"done", "cancelled", "failed"})
FANOUT_SKIPS = (
    "skipped_no_consent",
    "skipped_opt_out",
    "skipped_invalid_address",
    "skipped_frequency_cap",
    "held_outage",
)
RATE_WINDOW_MS = 60_000
# Producers' clocks (record timestamps) may lag the reader's: results are read from this much
# before the campaign's first progress event / the previous read.
SKEW_MARGIN_MS = 5 * 60_000


def _ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value or 0)


def bucket(status: str) -> str:
    """The status column a delivery status counts in."""
    if status in SENT:
        return "sent"
    if status in FAILED:
        return "failed"
    if status.startswith("skipped_"):
        return "skipped"
    if status == CANCELLED:
        return "cancelled"
    return "failed"  # a status newer than this reader: final, not a send


@dataclass
class DeliveryTally:
    """Latest delivery status per message of one campaign, and when each was first accepted."""

    campaign_id: str
    latest: dict[str, str] = field(default_factory=dict)
    accepted_at: dict[str, int] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        if str(record["campaign_id"]) != self.campaign_id:
            return
        message_id, status = str(record["message_id"]), str(record["status"])
        self.latest[message_id] = status
        if status in SENT:
            at = _ms(record["finished_at"])
            self.accepted_at[message_id] = min(at, self.accepted_at.get(message_id, at))

    def counts(self) -> dict[str, int]:
        out = {"sent": 0, "delivered": 0, "failed": 0, "skipped": 0, "cancelled": 0}
        for status in self.latest.values():
            out[bucket(status)] += 1
            if status == "delivered":
                out["delivered"] += 1
        return out

    def rate(self, now_ms: int, window_ms: int = RATE_WINDOW_MS) -> float:
        """Messages first accepted in the last ``window_ms``, per second; the window is the time
        since the first acceptance when that is shorter (a campaign 10 s old is not /60)."""
        if not self.accepted_at:
            return 0.0
        start = now_ms - window_ms
        recent = sum(1 for at in self.accepted_at.values() if start < at <= now_ms)
        span_ms = min(window_ms, now_ms - min(self.accepted_at.values()))
        return recent / max(span_ms / 1000, 1.0)


@dataclass(frozen=True)
class CampaignStatus:
    """What ``filas campaigns status`` prints (``as_dict`` is the ``--json`` document)."""

    campaign_id: str
    status: str
    lane: str
    planned: int
    queued: int
    sent: int
    delivered: int
    failed: int
    skipped: int
    cancelled: int
    pending: int
    rate_per_s: float
    fanout_skipped: dict[str, int]
    error_code: str | None
    error: str | None
    as_of: datetime

    @property
    def finished(self) -> int:
        return self.sent + self.failed + self.skipped + self.cancelled

    @property
    def total(self) -> int:
        """The progress bar's length: messages planned, or queued when more (a restart)."""
        return max(self.planned, self.queued)

    @property
    def settled(self) -> bool:
        """The fan-out is over and every queued message has a final result."""
        return self.status in FINAL_CAMPAIGN_STATES and self.pending == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "status": self.status,
            "lane": self.lane,
            "planned": self.planned,
            "queued": self.queued,
            "sent": self.sent,
            "delivered": self.delivered,
            "failed": self.failed,
            "skipped": self.skipped,
            "cancelled": self.cancelled,
            "pending": self.pending,
            "rate_per_s": round(self.rate_per_s, 3),
            "fanout_skipped": dict(self.fanout_skipped),
            "error_code": self.error_code,
            "error": self.error,
            "as_of": self.as_of.isoformat(),
        }


def campaign_status(
    progress: Mapping[str, Any], tally: DeliveryTally, now: datetime
) -> CampaignStatus:
    """The campaign's latest progress event combined with its delivery results."""
    counts = tally.counts()
    queued = int(progress["queued"])
    done = counts["sent"] + counts["failed"] + counts["skipped"] + counts["cancelled"]
    return CampaignStatus(
        campaign_id=tally.campaign_id,
        status=str(progress["status"]),
        lane=str(progress["lane"]),
        planned=int(progress["planned"]),
        queued=queued,
        pending=max(0, queued - done),
        rate_per_s=tally.rate(_ms(now)),
        fanout_skipped={k: int(progress.get(k) or 0) for k in FANOUT_SKIPS},
        error_code=progress.get("error_code"),
        error=progress.get("error"),
        as_of=now,
        **counts,
    )


class StatusReader:
    """Reads one campaign's progress and delivery results; ``refresh`` reads what is new."""

    def __init__(
        self,
        kafka: KafkaSettings,
        catalog: Catalog,
        serdes: Serdes,
        campaign_id: str,
        *,
        timeout_s: float = 60.0,
    ) -> None:
        self._kafka = kafka
        self._progress_spec = catalog.resolve(PROGRESS)
        self._results_spec = catalog.resolve(DELIVERY_RESULTS)
        self._serdes = serdes
        self.campaign_id = campaign_id
        self._needle = campaign_id.encode()
        self._timeout_s = timeout_s
        self.tally = DeliveryTally(campaign_id)
        self.progress: dict[str, Any] | None = None
        self._first_progress_ms: int | None = None
        self._progress_since: int | None = None
        self._results_since: int | None = None
        self.results_read = 0

    def _read(self, spec: Any, since_ms: int | None, apply: Any) -> None:
        serde = self._serdes(spec)

        def handle(msg: Any) -> None:
            value = msg.value()
            # Most records belong to other campaigns: the id is in the Avro bytes as a string,
            # so a record without it is not decoded at all.
            if self._needle not in value:
                return
            try:
                record = serde.deserialize(value)
            except FilasError as exc:
                logger.error("campaign status: skipped %s@%s: %s", spec.name, msg.offset(), exc)
                return
            if str(record["campaign_id"]) == self.campaign_id:
                apply(record)

        read_topic_once(
            self._kafka,
            spec,
            handle,
            self._timeout_s,
            label="campaign status",
            code="campaign_status_not_ready",
            since_ms=since_ms,
        )

    def _apply_progress(self, record: dict[str, Any]) -> None:
        if self._first_progress_ms is None:
            self._first_progress_ms = _ms(record["envelope"]["occurred_at"])
        self.progress = record

    def _apply_result(self, record: dict[str, Any]) -> None:
        self.results_read += 1
        self.tally.add(record)

    def refresh(self, now: datetime | None = None) -> CampaignStatus:
        """Read what is new; ``now`` (default: after the reads) is where the rate window ends."""
        started_ms = int(time.time() * 1000)
        self._read(self._progress_spec, self._progress_since, self._apply_progress)
        if self.progress is None or self._first_progress_ms is None:
            raise FilasError(
                f"no progress yet for campaign {self.campaign_id}", code="campaign_unknown"
            )
        since = self._results_since
        if since is None:
            since = self._first_progress_ms - SKEW_MARGIN_MS
        self._read(self._results_spec, since, self._apply_result)
        self._progress_since = self._results_since = started_ms - SKEW_MARGIN_MS
        return campaign_status(self.progress, self.tally, now or datetime.now(UTC))
