"""Campaign delivery against real Kafka + registry, a real SMTP server (aiosmtpd) and a real HTTP
SMS gateway (aiohttp): retries, DLQ, relay outage, priority lanes, shared rate limit across three
worker processes, and a worker killed -9 mid-campaign."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from consumers.delivery.load import campaign_messages, publish_messages
from consumers.delivery.peers import SmsGatewayFake, SmtpSink
from consumers.delivery.worker import DeliveryWorker
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import DELIVERY_LEDGER, DELIVERY_RESULTS, MESSAGE_LANES
from filas.settings import (
    DeliverySettings,
    HttpChannelSettings,
    Settings,
    SmtpChannelSettings,
    TopicsSettings,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The relay-outage test keeps the relay down this long (the scenario is 30 s).
RELAY_DOWN_S = float(os.environ.get("FILAS_TEST_RELAY_DOWN_S", "10"))
DOMAIN = "test.filas"


@dataclass
class Env:
    settings: Settings
    catalog: Catalog

    def with_delivery(self, **changes: Any) -> Settings:
        return self.settings.model_copy(
            update={"delivery": self.settings.delivery.model_copy(update=changes)}
        )


def _topics(catalog: Catalog) -> Catalog:
    specs: list[TopicSpec | str] = [DELIVERY_RESULTS, DELIVERY_LEDGER]
    for lane in MESSAGE_LANES:
        specs += [lane, catalog.dead_letter_for(lane).name]
    return catalog.only(*specs)


@pytest.fixture
def env(platform: Settings, unique_name: str) -> Env:
    settings = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "delivery": DeliverySettings(
                backoff_initial_s=0.2,
                backoff_max_s=2.0,
                session_timeout_ms=6000,
                email=SmtpChannelSettings(port=1, message_id_domain=DOMAIN, concurrency=8),
            ),
        }
    )
    catalog = Catalog.build(unique_name)
    TopicAdmin(settings.kafka).apply(_topics(catalog))
    return Env(settings, catalog)


def publish(env: Env, records: Iterator[dict[str, Any]]) -> int:
    producer = build_producer(env.settings, catalog=env.catalog)
    try:
        return publish_messages(producer, env.catalog, records)
    finally:
        producer.close()


def read_all(
    env: Env, spec: TopicSpec, expect: int, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Records of ``spec`` from the beginning until ``expect`` arrived (or the timeout)."""
    resolved = env.catalog.resolve(spec)
    serde = build_serdes(env.settings)(resolved)
    consumer = Consumer(
        dict(env.settings.kafka.client_config())
        | {"group.id": f"read-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([resolved.name])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if not msg.error() and msg.value() is not None:
                    out.append(serde.deserialize(msg.value()))
    finally:
        consumer.close()
    return out


async def drive(worker: DeliveryWorker, until: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"timed out; stats {worker.stats.as_dict()}"
        await worker.run_once(0.2)


def smtp_settings(env: Env, sink: SmtpSink, **changes: Any) -> Settings:
    email = env.settings.delivery.email.model_copy(update={"port": sink.port, **changes})
    return env.with_delivery(email=email)


def test_email_delivered_once_with_retries_and_permanent_failures_to_dlq(env: Env) -> None:
    campaign = str(uuid.uuid4())
    n = 40
    with SmtpSink() as sink:
        sink.behaviour.fail_next = 3  # 451 to the first three mails: retried
        sink.behaviour.refuse[f"c{100_000 + 7}@{DOMAIN}"] = (550, "5.1.1 no such user")
        publish(env, campaign_messages(n, campaign_id=campaign, domain=DOMAIN))
        # An SMS of the same campaign is not the e-mail worker's business.
        publish(env, campaign_messages(2, channel="sms", campaign_id=campaign, first_recipient=n))

        async def run() -> DeliveryWorker:
            worker = DeliveryWorker(smtp_settings(env, sink), "email", catalog=env.catalog)
            await worker.start()
            try:
                await drive(worker, lambda: worker.stats.sent + worker.stats.permanent >= n, 60)
            finally:
                await worker.close()
            return worker

        worker = asyncio.run(run())
        counts = sink.by_message_id()
    assert worker.stats.sent == n - 1
    assert worker.stats.permanent == 1
    assert worker.stats.retries >= 3
    assert worker.stats.other_channel == 2
    assert len(counts) == n - 1
    assert set(counts.values()) == {1}
    results = read_all(env, DELIVERY_RESULTS, n)
    assert len(results) == n
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    assert by_status == {"sent": n - 1, "permanent_failure": 1}
    failed = next(r for r in results if r["status"] == "permanent_failure")
    assert failed["provider_response_code"] == "550"
    assert failed["attempts"] == 1
    assert sum(r["attempts"] for r in results) >= n + 3
    dead = read_all(env, env.catalog.dead_letter_for(MESSAGE_LANES[1]), 1)
    assert len(dead) == 1
    assert dead[0]["error_code"] == "delivery_permanent_failure"
    assert "550" in dead[0]["error_message"]
    ledger = read_all(env, DELIVERY_LEDGER, 2 * n)
    assert {e["state"] for e in ledger} == {"sending", "done"}


def test_restart_reads_the_ledger_and_sends_nothing_twice(env: Env) -> None:
    """A second worker on the same group, offsets NOT committed: the ledger turns replays into
    no-ops (this is what a partition move after a crash looks like)."""
    n = 20
    with SmtpSink() as sink:
        publish(env, campaign_messages(n, domain=DOMAIN))

        async def run(commit: bool) -> DeliveryWorker:
            worker = DeliveryWorker(smtp_settings(env, sink), "email", catalog=env.catalog)
            await worker.start()
            assert worker.lanes is not None
            if not commit:
                worker.lanes.commit = lambda lane, offsets: None  # type: ignore[method-assign]
            try:
                await drive(worker, lambda: worker.stats.sent + worker.stats.already_done >= n, 60)
            finally:
                await worker.close()
            return worker

        first = asyncio.run(run(commit=False))
        second = asyncio.run(run(commit=True))
        assert first.stats.sent == n
        assert second.stats.sent == 0
        assert second.stats.already_done == n
        assert sink.count() == n


def test_sms_gateway_throttling_and_invalid_numbers(env: Env) -> None:
    n = 30
    with SmsGatewayFake() as gateway:
        gateway.behaviour.fail_next = 2
        gateway.behaviour.throttle_next = 2
        gateway.behaviour.retry_after_s = 1
        records = list(campaign_messages(n, channel="sms"))
        records[5]["address"] = "+000123"
        publish(env, iter(records))
        sms = HttpChannelSettings(url=gateway.url, concurrency=4)
        settings = env.with_delivery(sms=sms)

        async def run() -> DeliveryWorker:
            worker = DeliveryWorker(settings, "sms", catalog=env.catalog)
            await worker.start()
            try:
                await drive(worker, lambda: worker.stats.sent + worker.stats.permanent >= n, 60)
            finally:
                await worker.close()
            return worker

        worker = asyncio.run(run())
        assert worker.stats.sent == n - 1
        assert worker.stats.permanent == 1
        assert gateway.answers[429] == 2
        assert gateway.answers[503] == 2
        refs = gateway.by_reference()
        assert len(refs) == n - 1
        assert set(refs.values()) == {1}
    results = read_all(env, DELIVERY_RESULTS, n)
    invalid = next(r for r in results if r["status"] == "permanent_failure")
    assert invalid["provider_response_code"] == "400"
    assert all(
        r["provider_message_id"].startswith("sms-") for r in results if r["status"] == "sent"
    )


def test_relay_down_then_up_every_message_retried_and_delivered_once(env: Env) -> None:
    n = 20
    sink = SmtpSink()  # not started: connection refused until RELAY_DOWN_S have passed
    publish(env, campaign_messages(n, domain=DOMAIN))
    settings = smtp_settings(env, sink, timeout_s=2.0).model_copy()
    settings = settings.model_copy(
        update={"delivery": settings.delivery.model_copy(update={"max_attempts": 100})}
    )
    relay_up = threading.Timer(RELAY_DOWN_S, sink.start)
    started = time.time()

    async def run() -> DeliveryWorker:
        worker = DeliveryWorker(settings, "email", catalog=env.catalog)
        await worker.start()
        relay_up.start()
        try:
            await drive(worker, lambda: worker.stats.sent >= n, RELAY_DOWN_S + 60)
        finally:
            await worker.close()
        return worker

    try:
        worker = asyncio.run(run())
        counts = sink.by_message_id()
        first_accept = min(sink.times())
    finally:
        relay_up.cancel()
        sink.stop()
    assert worker.stats.sent == n
    assert worker.stats.retries >= n
    assert len(counts) == n
    assert set(counts.values()) == {1}
    assert first_accept - started >= RELAY_DOWN_S
    results = read_all(env, DELIVERY_RESULTS, n)
    assert all(r["status"] == "sent" and r["attempts"] > 1 for r in results)
