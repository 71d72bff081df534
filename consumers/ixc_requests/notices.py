"""Payment confirmed at IXC -> one payment-confirmation message to the subscriber.

The last step of issue 8's payment path (docs/decisions/0083): when a PAYMENT_CONFIRMATION
request succeeds at IXC, the worker publishes one ``ixc.filas.campaign.CampaignMessage`` on the
campaigns' transactional lane, BEFORE it writes the request's DONE status:

- the message is planned by the campaigns' own code (``plan_campaign``: address check, opt-outs,
  sandboxed template) as a one-recipient synthetic campaign whose id is derived from the request
  id, so its message id is too: a request re-run after a crash between the message's ack and the
  DONE status publishes the same message id again and the delivery ledger drops it;
- a request already DONE is never re-run (the status ledger), so a replayed lane record or a
  gateway's retried webhook (same payment id -> same request id) publishes nothing.

Recipient: the paid contract's customer, from ``ixc.contracts`` and ``ixc.customers`` (read whole
by ``NoticeState``, like the fan-out's replica). The first of the configured channels the
customer can be reached on is used; none (unknown contract, no valid address, opted out of every
channel) -> no message, said in the request's result (``notice: no_recipient``) and counted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import TRANSACTIONAL_MESSAGES
from filas.catalog.ixc_state import CONTRACTS, CUSTOMERS
from filas.errors import FilasError
from filas.metrics import ERRORS, EVENTS_IN, EVENTS_OUT
from filas.settings import IngressSettings, KafkaSettings
from streams.campaigns.engine import message_record
from streams.campaigns.plan import (
    NAMESPACE,
    Audience,
    CampaignError,
    CampaignSpec,
    FrequencyHistory,
    PlannedMessage,
    plan_campaign,
    validate,
)
from streams.campaigns.state import SubscriberState
from streams.topic_state import TopicStateFeeder

log = logging.getLogger(__name__)

COMPONENT = "ixc-requests"
PAYMENT_CONFIRMATION = "PAYMENT_CONFIRMATION"
TRANSACTIONAL = "transactional"
NO_RECIPIENT = "no_recipient"
TEMPLATE_ERROR = "template_error"

# Awaits the broker's ack of one message record.
Publish = Callable[[Mapping[str, Any]], Awaitable[None]]


def payment_campaign_id(request_id: str) -> str:
    """The synthetic campaign of one payment request: derived from the request id only."""
    return str(uuid.uuid5(NAMESPACE, f"payment/{request_id}"))


def notice_campaign(
    request: Mapping[str, Any], *, channels: Sequence[str], subject: str, body: str, timezone: str
) -> CampaignSpec:
    return CampaignSpec(
        campaign_id=payment_campaign_id(str(request["request_id"])),
        name="Confirmação de pagamento",
        channels=tuple(channels),
        subject=subject,
        body=body,
        audience=Audience(),
        schedule_at_ms=None,
        # Transactional: any hour of the day.
        window_start_min=0,
        window_end_min=1440,
        timezone=timezone,
        frequency_cap=None,
        lane=TRANSACTIONAL,
        purpose="billing",
    )


def payment_notice(
    request: Mapping[str, Any],
    state: SubscriberState,
    now_ms: int,
    *,
    channels: Sequence[str],
    subject: str,
    body: str,
    timezone: str = "America/Sao_Paulo",
) -> tuple[CampaignSpec, PlannedMessage | None]:
    """The message of one PAYMENT_CONFIRMATION request on the first reachable channel, or None.

    Raises CampaignError when the configured template cannot render for this customer."""
    campaign = notice_campaign(
        request, channels=channels, subject=subject, body=body, timezone=timezone
    )
    params: Mapping[str, str] = request.get("params") or {}
    contract_id = params.get("contract_id", "")
    with state.lock:
        contract = state.contracts.get(contract_id)
    if contract is None:
        return campaign, None
    extra = {
        "contract_id": contract_id,
        "amount": params.get("amount", ""),
        "method": params.get("method", ""),
        "invoice_id": params.get("invoice_id"),
        "payment_id": params.get("payment_id"),
    }
    for channel in channels:
        one = replace(campaign, channels=(channel,))
        plan = plan_campaign(
            one, state, FrequencyHistory(), now_ms, only={contract.customer_id}, extra=extra
        )
        if plan.messages:
            # The plan picks the customer's first contract; the message is about the paid one.
            return campaign, replace(plan.messages[0], contract_id=contract_id)
    return campaign, None


class NoticeState(TopicStateFeeder):
    """``ixc.customers`` and ``ixc.contracts`` read whole into a ``SubscriberState``."""

    def __init__(
        self, kafka: KafkaSettings, catalog: Catalog, serdes: Callable[[TopicSpec], Any]
    ) -> None:
        super().__init__(kafka, label="payment notice state", batch=1000)
        self.state = SubscriberState()
        self._specs = [catalog.resolve(s) for s in (CUSTOMERS, CONTRACTS)]
        self._decoders = {spec.name: serdes(spec).deserialize for spec in self._specs}
        self._appliers = {
            self._specs[0].name: self.state.put_customer,
            self._specs[1].name: self.state.put_contract,
        }

    def topics(self) -> Sequence[TopicSpec]:
        return self._specs

    def _apply(self, msg: Any) -> None:
        topic, key, value = msg.topic(), msg.key(), msg.value()
        try:
            record = None if value is None else self._decoders[topic](value)
            self._appliers[topic](key.decode(errors="replace") if key else "", record)
        except (FilasError, KeyError, TypeError, ValueError) as exc:
            self.decode_errors += 1
            ERRORS.labels(component=COMPONENT, kind="notice_state").inc()
            log.error("payment notices: skipped %s offset %s: %s", topic, msg.offset(), exc)
        else:
            self.applied += 1
            EVENTS_IN.labels(component=COMPONENT, topic=topic).inc()
        self._progress(topic, msg.partition(), msg.offset())


class PaymentNotifier:
    """``await notify(request)`` publishes the request's message (acks awaited) and returns what
    goes into the DONE status's result: ``notice_message_id`` and ``notice_channel``, or
    ``notice`` = no_recipient / template_error."""

    def __init__(
        self,
        settings: IngressSettings,
        state: SubscriberState,
        publish: Publish,
        *,
        timezone: str = "America/Sao_Paulo",
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._settings = settings
        self._state = state
        self._publish = publish
        self._timezone = timezone
        self._clock = clock
        self.sent = 0
        # A broken template is a configuration error: refuse to start.
        validate(
            notice_campaign(
                {"request_id": "00000000-0000-0000-0000-000000000000"},
                channels=settings.payment_notice_channels,
                subject=settings.payment_notice_subject,
                body=settings.payment_notice_body,
                timezone=timezone,
            )
        )

    @property
    def enabled(self) -> bool:
        return bool(self._settings.payment_notice_channels)

    async def notify(self, request: Mapping[str, Any]) -> dict[str, str]:
        if str(request["request_type"]) != PAYMENT_CONFIRMATION or not self.enabled:
            return {}
        now_ms = self._clock()
        try:
            campaign, message = payment_notice(
                request,
                self._state,
                now_ms,
                channels=self._settings.payment_notice_channels,
                subject=self._settings.payment_notice_subject,
                body=self._settings.payment_notice_body,
                timezone=self._timezone,
            )
        except CampaignError as exc:
            ERRORS.labels(component=COMPONENT, kind="payment_notice_template").inc()
            log.error("payment notice for %s not rendered: %s", request["request_id"], exc)
            return {"notice": TEMPLATE_ERROR}
        if message is None:
            ERRORS.labels(component=COMPONENT, kind="payment_notice_no_recipient").inc()
            log.warning(
                "payment notice for %s: contract %s has no reachable customer",
                request["request_id"],
                (request.get("params") or {}).get("contract_id"),
            )
            return {"notice": NO_RECIPIENT}
        record = message_record(campaign, message, now_ms, lane=TRANSACTIONAL)
        record["envelope"]["correlation_id"] = str(request["request_id"])
        await self._publish(record)
        self.sent += 1
        return {"notice_message_id": message.message_id, "notice_channel": message.channel}


def transactional_lane(catalog: Catalog) -> TopicSpec:
    return catalog.resolve(TRANSACTIONAL_MESSAGES)


def count_out(spec: TopicSpec) -> None:
    EVENTS_OUT.labels(component=COMPONENT, topic=spec.name).inc()
