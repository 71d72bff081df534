"""What a delivery worker checks just before it sends: the recipient's opt-outs and the
campaign's pause/cancel state, both as they are NOW rather than at fan-out.

``SendRules`` is the pure part (fed records, answers a verdict); ``SendGuard`` keeps one current
from ``campaign.opt-outs`` (compacted, latest choice per customer) and ``campaign.definitions``
(the operators' pause/resume/cancel commands) with a ``streams.topic_state`` reader: every
partition from the beginning, no group, ``ready`` once read up to the high watermarks seen at
start (docs/decisions/0078-delivery-rechecks-consent-and-campaign-state.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import CAMPAIGNS, OPT_OUTS
from filas.errors import FilasError
from filas.metrics import ERRORS, EVENTS_IN
from filas.settings import KafkaSettings
from streams.campaigns.consent import skip_reason
from streams.campaigns.state import OptOutEntry
from streams.topic_state import TopicStateFeeder

logger = logging.getLogger(__name__)

COMPONENT = "campaign-delivery"

DELIVERY_SKIPPED = Counter(
    "filas_delivery_skipped",
    "Messages a delivery worker did not send: opted out after fan-out, campaign cancelled",
    ["component", "channel", "reason"],
)

# Verdicts (the first two are DeliveryResult statuses).
SKIPPED_OPT_OUT = "skipped_optout"
SKIPPED_FREQUENCY_CAP = "skipped_frequency_cap"  # decided by the worker (decision 0074)
CANCELLED = "cancelled"
PAUSED = "paused"

ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a message is not sent now: ``status`` is skipped_optout / cancelled (final, written
    to the ledger) or paused (held, sent after a resume); ``reason`` is for the result event."""

    status: str
    reason: str


class SendRules:
    """Latest opt-out per customer and pause/cancel state per campaign; ``verdict`` per message.

    Plain dicts replaced key by key (atomic under the GIL): the feeder thread writes, the event
    loop reads.
    """

    def __init__(self) -> None:
        self.opt_outs: dict[str, OptOutEntry] = {}
        self.campaigns: dict[str, str] = {}

    def put_opt_out(self, customer_id: str, record: Mapping[str, Any] | None) -> None:
        if record is None or (not record.get("marketing") and not record.get("channels")):
            self.opt_outs.pop(customer_id, None)  # tombstone, or opted back in
        else:
            self.opt_outs[customer_id] = OptOutEntry.from_record(record)

    def put_command(self, record: Mapping[str, Any]) -> None:
        """Like the fan-out engine: cancel is final; pause and resume toggle until then."""
        campaign = str(record["campaign_id"])
        command = str(record["command"])
        if self.campaigns.get(campaign) == CANCELLED:
            return
        if command == "cancel":
            self.campaigns[campaign] = CANCELLED
        elif command == "pause":
            self.campaigns[campaign] = PAUSED
        elif command == "resume":
            self.campaigns.pop(campaign, None)

    def campaign_state(self, campaign_id: str) -> str:
        return self.campaigns.get(campaign_id, ACTIVE)

    def verdict(self, record: Mapping[str, Any], channel: str) -> Verdict | None:
        """None: send it. Cancel wins over an opt-out, which wins over a pause."""
        state = self.campaigns.get(str(record["campaign_id"]))
        if state == CANCELLED:
            return Verdict(CANCELLED, "campaign cancelled after the message was queued")
        if self.opt_outs:
            entry = self.opt_outs.get(str(record["recipient_id"]))
            if entry is not None:
                purpose = str(record.get("purpose") or "marketing")
                # Consent itself was checked at fan-out; what can change since is an opt-out.
                why = skip_reason(purpose, channel, True, entry)
                if why is not None:
                    what = f"{channel}" if channel in entry.channels else "marketing"
                    return Verdict(
                        SKIPPED_OPT_OUT,
                        f"recipient opted out of {what} after fan-out (purpose {purpose})",
                    )
        if state == PAUSED:
            return Verdict(PAUSED, "campaign paused")
        return None


class SendGuard(TopicStateFeeder):
    """``SendRules`` kept current from ``campaign.opt-outs`` and ``campaign.definitions``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        catalog: Catalog,
        serdes: Callable[[TopicSpec], Any],
        rules: SendRules | None = None,
    ) -> None:
        super().__init__(kafka, label="delivery guard", batch=1000)
        self.rules = rules or SendRules()
        self._opt_outs = catalog.resolve(OPT_OUTS)
        self._campaigns = catalog.resolve(CAMPAIGNS)
        self._decoders = {
            spec.name: serdes(spec).deserialize for spec in (self._opt_outs, self._campaigns)
        }

    def topics(self) -> Sequence[TopicSpec]:
        return (self._opt_outs, self._campaigns)

    def _apply(self, msg: Any) -> None:
        topic, value = msg.topic(), msg.value()
        try:
            record = None if value is None else self._decoders[topic](value)
            if topic == self._opt_outs.name:
                key = msg.key()
                customer = (
                    str(record["customer_id"])
                    if record is not None
                    else (key.decode(errors="replace") if key else "")
                )
                self.rules.put_opt_out(customer, record)
            elif record is not None:
                self.rules.put_command(record)
        except (FilasError, KeyError, TypeError, ValueError) as exc:
            self.decode_errors += 1
            ERRORS.labels(component=COMPONENT, kind="guard_decode").inc()
            logger.error("delivery guard: skipped %s offset %s: %s", topic, msg.offset(), exc)
        else:
            self.applied += 1
            EVENTS_IN.labels(component=COMPONENT, topic=topic).inc()
        self._progress(topic, msg.partition(), msg.offset())
