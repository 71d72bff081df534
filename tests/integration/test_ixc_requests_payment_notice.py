"""The payment path's last step against real Kafka + registry (docs/decisions/0083): a signed
PIX webhook -> request DONE at the IXC simulator (after one IXC 500) -> exactly one
payment-confirmation message for the contract's customer on the campaigns' transactional lane;
the gateway's retried webhook and a full replay of the request lanes add none."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from pydantic import SecretStr

from bench.requests_payment import SIM_TOKEN, LaneWatch, SimThread
from consumers.ixc_requests.worker import RequestWorker
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog, ixc_state, requests
from filas.catalog.campaigns import TRANSACTIONAL_MESSAGES
from filas.settings import IngressSettings, IxcSettings, Settings, TopicsSettings
from producers.async_sdk import AsyncEventProducer
from producers.ingress.guards import sign
from producers.ingress.service import IngressService
from producers.ixc.client import IxcClient
from producers.ixc.dead_letters import KafkaDeadLetters
from producers.ixc.poller import IxcPoller
from producers.ixc.simulator import FaultPlan, SimulatedIsp
from producers.ixc.watermark import WatermarkStore

pytestmark = pytest.mark.integration

GATEWAY_SECRET = "notice-gateway-secret"
CONTRACT = "3"


async def until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        await asyncio.sleep(0.05)


def webhook(payment_id: str, age_s: int = 0) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"payment_id": payment_id, "contract_id": CONTRACT, "amount": "129.90", "method": "pix"}
    ).encode()
    ts = str(int(time.time()) - age_s)
    headers = {
        "Content-Type": "application/json",
        "X-Filas-Gateway": "pix-gw",
        "X-Filas-Timestamp": ts,
        "X-Filas-Signature": sign(GATEWAY_SECRET, ts, body),
    }
    return body, headers


async def test_a_confirmed_payment_queues_one_message_even_on_retry_and_replay(
    platform: Settings, unique_name: str, tmp_path: Path
) -> None:
    prefix = f"{unique_name}-"
    catalog = Catalog.build(prefix)
    specs = [catalog.resolve(s) for s in (*ixc_state.TOPICS, *requests.TOPICS)]
    specs += [catalog.dead_letter_for(s) for s in (*ixc_state.TOPICS, *requests.LANES)]
    specs.append(catalog.resolve(TRANSACTIONAL_MESSAGES))
    TopicAdmin(platform.kafka).apply(catalog.only(*specs))
    isp = SimulatedIsp(seed=11, customers=6, devices=0, nas=1)
    isp.block_contract(CONTRACT, "CA")
    customer_id = str(isp.get("cliente_contrato", CONTRACT)["id_cliente"])
    sim = SimThread(isp)
    settings = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=prefix),
            "ixc": IxcSettings(
                base_url=sim.url,
                token=SecretStr(SIM_TOKEN),
                min_request_interval_s=0,
                watermark_path=tmp_path / "watermarks.json",
            ),
            "ingress": IngressSettings(
                port=0,
                webhook_secrets={"pix-gw": SecretStr(GATEWAY_SECRET)},
                backoff_initial_s=0.1,
                backoff_max_s=0.5,
            ),
        }
    )
    workers: list[RequestWorker] = []
    tasks: list[asyncio.Task[None]] = []
    ingress: IngressService | None = None
    lane = LaneWatch(settings, catalog.resolve(TRANSACTIONAL_MESSAGES))
    serdes = build_serdes(settings)
    try:
        # The customers and contracts the worker finds the recipient in: the poller's first pass.
        async with (
            AsyncEventProducer(build_producer(settings, catalog=catalog, serdes=serdes)) as sink,
            IxcClient(settings.ixc) as ixc,
        ):
            poller = IxcPoller(
                ixc,
                sink,
                KafkaDeadLetters(sink, catalog),
                WatermarkStore(settings.ixc.watermark_path),
                tz=ZoneInfo(settings.ixc.timezone),
            )
            await poller.poll_once()
        sim.loop.call_soon_threadsafe(setattr, sim.sim, "faults", FaultPlan(script=["500"]))
        worker = RequestWorker(settings, catalog=catalog)
        workers.append(worker)
        await worker.start()
        tasks.append(asyncio.create_task(worker.run()))
        ingress = IngressService(settings, catalog=catalog)
        await ingress.start()

        async with aiohttp.ClientSession() as http:
            url = f"{ingress.base_url}/v1/webhooks/payments"
            body, headers = webhook("E2E-notice-1")
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == 202, await response.text()
                request_id = str((await response.json())["request_id"])

            def state() -> dict[str, Any]:
                return worker.tail.view.get(request_id) or {"state": None}

            await until(lambda: state()["state"] == "DONE", "request DONE")
            assert state()["attempts"] == 2  # the IXC 500, then the success
            message_id = state()["result"]["notice_message_id"]
            await until(lambda: lane.count[CONTRACT] >= 1, "message on the transactional lane")
            # The gateway retries its webhook (new timestamp and signature, same payment id).
            body, headers = webhook("E2E-notice-1", age_s=5)
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status in (200, 202), await response.text()
                assert (await response.json())["request_id"] == request_id

        # A full replay of the lanes: a second worker group reads them from the beginning.
        replay_settings = settings.model_copy(
            update={
                "ingress": settings.ingress.model_copy(
                    update={"worker_group_id": "replay-" + uuid.uuid4().hex[:6]}
                )
            }
        )
        replay = RequestWorker(replay_settings, catalog=catalog)
        workers.append(replay)
        await replay.start()
        tasks.append(asyncio.create_task(replay.run()))
        await until(lambda: replay.processor.stats.duplicates >= 1, "replayed request skipped")
        # What the workers published is counted by their notifiers; what reached the lane is
        # read by the watch: give it time to see a second message if one had been published.
        await asyncio.sleep(2.0)
        assert lane.count == {CONTRACT: 1}
        [record] = lane.records
        assert str(record["message_id"]) == message_id
        assert record["recipient_id"] == customer_id
        assert record["lane"] == "transactional"
        assert str(record["envelope"]["correlation_id"]) == request_id  # type: ignore[index]
        assert "R$ 129,90" in str(record["body"])
        assert worker.notifier is not None
        assert worker.notifier.sent == 1
        assert replay.notifier is not None
        assert replay.notifier.sent == 0
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in workers:
            await w.close()
        if ingress is not None:
            await ingress.stop()
        lane.stop()
        serdes.close()
        sim.stop()
