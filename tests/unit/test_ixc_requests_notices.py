"""Payment-confirmation messages (docs/decisions/0083): planned from the request, message id
derived from the request id, published before DONE, never again for a DONE request."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest

from consumers.ixc_requests.calls import IxcCall
from consumers.ixc_requests.notices import (
    NO_RECIPIENT,
    PaymentNotifier,
    payment_campaign_id,
    payment_notice,
)
from consumers.ixc_requests.processor import CallRate, RequestProcessor
from consumers.ixc_requests.status_view import StatusView
from filas.errors import FilasError
from filas.settings import IngressSettings
from streams.campaigns.plan import CampaignError
from streams.campaigns.state import SubscriberState
from tests.unit.test_ixc_requests import request

NOW = 1_780_000_000_000
RID = "6d1b2c3e-0000-4000-8000-000000000001"


def state() -> SubscriberState:
    s = SubscriberState()
    s.put_customer(
        "7",
        {
            "customer_id": "7",
            "name": "MARIA DA SILVA",
            "email": "maria@example.com.br",
            "mobile_phone": "(67) 99999-0000",
            "timezone": "America/Campo_Grande",
            "active": True,
        },
    )
    s.put_customer(
        "8", {"customer_id": "8", "name": "JOSE", "mobile_phone": "67999990001", "active": True}
    )
    s.put_customer("9", {"customer_id": "9", "name": "ANA", "active": True})
    for contract, customer in (("11", "7"), ("12", "7"), ("21", "8"), ("31", "9")):
        s.put_contract(contract, {"contract_id": contract, "customer_id": customer})
    return s


def payment(contract: str = "12", rid: str = RID) -> dict[str, Any]:
    return request("PAYMENT_CONFIRMATION", rid, contract_id=contract, amount="89.9", method="pix")


def plan(req: Mapping[str, Any], s: SubscriberState | None = None) -> Any:
    settings = IngressSettings()
    return payment_notice(
        req,
        s or state(),
        NOW,
        channels=settings.payment_notice_channels,
        subject=settings.payment_notice_subject,
        body=settings.payment_notice_body,
    )


def test_the_paid_contracts_customer_gets_one_message_whose_id_comes_from_the_request() -> None:
    campaign, message = plan(payment())
    assert message is not None
    assert campaign.campaign_id == payment_campaign_id(RID)
    assert (campaign.lane, campaign.purpose) == ("transactional", "billing")
    assert (message.recipient_id, message.channel) == ("7", "email")
    assert message.address == "maria@example.com.br"
    assert message.contract_id == "12"  # the paid one, not the customer's first contract
    assert "R$ 89,90" in message.body
    assert "contrato 12" in message.body
    assert message.body.startswith("Olá Maria")
    assert message.not_before_ms == NOW
    # Same request -> same id (a re-run publishes a duplicate the delivery ledger drops).
    assert plan(payment())[1].message_id == message.message_id
    assert plan(payment(rid=RID[:-1] + "2"))[1].message_id != message.message_id


def test_falls_back_to_the_next_channel_and_says_when_nobody_can_be_reached() -> None:
    _, sms = plan(payment("21"))
    assert sms is not None
    assert (sms.channel, sms.address, sms.subject) == ("sms", "+5567999990001", None)
    assert plan(payment("31"))[1] is None  # no address at all
    assert plan(payment("999"))[1] is None  # contract not (yet) known


def test_a_broken_template_refuses_to_start() -> None:
    async def publish(_record: Mapping[str, Any]) -> None:
        raise AssertionError

    with pytest.raises(CampaignError):
        PaymentNotifier(IngressSettings(payment_notice_body="{{ oops"), state(), publish)


class Ixc:
    def __init__(self) -> None:
        self.calls: list[IxcCall] = []

    async def write_once(self, call: IxcCall) -> dict[str, str]:
        self.calls.append(call)
        return {"type": "success", "id": "5"}


class Harness:
    def __init__(self) -> None:
        self.published: list[Mapping[str, Any]] = []
        self.statuses: list[Mapping[str, Any]] = []
        self.fail_done = False
        self.view = StatusView()
        self.ixc = Ixc()
        settings = IngressSettings()
        self.notifier = PaymentNotifier(settings, state(), self._publish, clock=lambda: NOW)
        self.processor = RequestProcessor(
            settings,
            self.ixc,
            self.view,
            self._status,
            rng=random.Random(1),
            rate=CallRate(1e9),
            notify=self.notifier.notify,
        )

    async def _publish(self, record: Mapping[str, Any]) -> None:
        self.published.append(record)

    async def _status(self, status: Mapping[str, Any]) -> None:
        if status["state"] == "DONE" and self.fail_done:
            self.fail_done = False
            raise FilasError("broker down", code="delivery_failed", retriable=True)
        self.statuses.append(status)

    async def run(self, req: Mapping[str, Any]) -> str:
        async def dlq(_error: FilasError) -> None:
            raise AssertionError

        return await self.processor.process(req, dlq)


async def test_processor_publishes_before_done_and_never_again_for_a_done_request() -> None:
    h = Harness()
    assert await h.run(payment()) == "DONE"
    [record] = h.published
    assert record["lane"] == "transactional"
    assert record["envelope"]["correlation_id"] == RID
    assert record["envelope"]["event_id"] == record["message_id"]
    result = h.statuses[-1]["result"]
    assert result["notice_message_id"] == record["message_id"]
    assert result["notice_channel"] == "email"
    # Replayed lane record / retried webhook: the ledger says DONE, nothing is published.
    assert await h.run(payment()) == "DONE"
    assert len(h.published) == 1
    # Other request types send nothing; an unreachable customer is said in the result.
    assert await h.run(request("TRUST_UNBLOCK", "r-t", contract_id="12")) == "DONE"
    assert await h.run(payment("999", rid="r-x")) == "DONE"
    assert len(h.published) == 1
    assert h.statuses[-1]["result"]["notice"] == NO_RECIPIENT


async def test_crash_between_message_and_done_republishes_the_same_message_id() -> None:
    h = Harness()
    h.fail_done = True
    with pytest.raises(FilasError):
        await h.run(payment())
    assert h.view.get(RID)["state"] == "RUNNING"  # type: ignore[index]
    assert await h.run(payment()) == "DONE"  # the worker's replay after a restart
    assert len(h.ixc.calls) == 2  # IXC deduplicates on filas_request_id (decision 0082)
    first, second = h.published
    assert first["message_id"] == second["message_id"]
