"""Consent and campaign state re-checked at send (issue 5 item 2), against real Kafka + registry
and a real SMTP server (aiosmtpd): an opt-out made after fan-out stops the message, a cancel
withdraws queued messages, a pause holds them until the resume."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer

from consumers.delivery.guard import DELIVERY_SKIPPED
from consumers.delivery.load import campaign_messages, publish_messages
from consumers.delivery.peers import SmtpSink
from consumers.delivery.worker import DeliveryWorker
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import (
    CAMPAIGNS,
    DELIVERY_LEDGER,
    DELIVERY_RESULTS,
    MESSAGE_LANES,
    OPT_OUTS,
)
from filas.cli.campaign_cmds import command_record, opt_out_record
from filas.settings import DeliverySettings, Settings, SmtpChannelSettings, TopicsSettings

pytestmark = pytest.mark.integration

DOMAIN = "test.filas"


@dataclass
class Env:
    settings: Settings
    catalog: Catalog


@pytest.fixture
def env(platform: Settings, unique_name: str) -> Env:
    settings = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "delivery": DeliverySettings(
                backoff_initial_s=0.2,
                session_timeout_ms=6000,
                email=SmtpChannelSettings(port=1, message_id_domain=DOMAIN, concurrency=8),
            ),
        }
    )
    catalog = Catalog.build(unique_name)
    specs: list[TopicSpec | str] = [DELIVERY_RESULTS, DELIVERY_LEDGER, OPT_OUTS, CAMPAIGNS]
    for lane in MESSAGE_LANES:
        specs += [lane, catalog.dead_letter_for(lane).name]
    TopicAdmin(settings.kafka).apply(catalog.only(*specs))
    return Env(settings, catalog)


def with_sink(env: Env, sink: SmtpSink) -> Settings:
    email = env.settings.delivery.email.model_copy(update={"port": sink.port})
    return env.settings.model_copy(
        update={"delivery": env.settings.delivery.model_copy(update={"email": email})}
    )


def publish(env: Env, records: Iterator[dict[str, Any]]) -> None:
    serdes = build_serdes(env.settings)
    producer = build_producer(env.settings, catalog=env.catalog, serdes=serdes)
    try:
        publish_messages(producer, env.catalog, records)
    finally:
        producer.close()
        serdes.close()


def emit(env: Env, spec: TopicSpec, *records: dict[str, Any]) -> None:
    serdes = build_serdes(env.settings)
    try:
        with build_producer(env.settings, catalog=env.catalog, serdes=serdes) as producer:
            for record in records:
                producer.emit_sync(spec, record)
    finally:
        serdes.close()


def messages(
    n: int, campaign: str, first: int, purpose: str = "marketing"
) -> Iterator[dict[str, Any]]:
    for record in campaign_messages(n, campaign_id=campaign, first_recipient=first, domain=DOMAIN):
        yield record | {"purpose": purpose}


def address(i: int) -> str:
    return f"c{100_000 + i}@{DOMAIN}"


def received_by_address(sink: SmtpSink) -> Counter[str]:
    return Counter(a for r in sink.received for a in r.recipients)


def read_all(env: Env, spec: TopicSpec, expect: int, timeout_s: float = 60.0) -> list[Any]:
    resolved = env.catalog.resolve(spec)
    serdes = build_serdes(env.settings)
    serde = serdes(resolved)
    consumer = Consumer(
        dict(env.settings.kafka.client_config())
        | {"group.id": f"read-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([resolved.name])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if not msg.error() and msg.value() is not None:
                    out.append(serde.deserialize(msg.value()))
    finally:
        consumer.close()
        serdes.close()
    return out


async def drive(worker: DeliveryWorker, until: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"timed out; stats {worker.stats.as_dict()}"
        await worker.run_once(0.2)


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def skipped_metric(reason: str) -> float:
    return float(DELIVERY_SKIPPED.labels("campaign-delivery", "email", reason)._value.get())


def test_opt_out_after_fan_out_is_honoured_at_send_and_never_retried(env: Env) -> None:
    marketing, billing = str(uuid.uuid4()), str(uuid.uuid4())
    n = 20
    # Fan-out already happened: the messages are queued on the lanes.
    publish(env, messages(n, marketing, first=0))
    publish(env, messages(2, billing, first=3, purpose="billing"))  # recipients 3 and 4
    # Then, before any delivery: 3 withdraws marketing consent, 4 refuses e-mail entirely,
    # 6 refuses SMS only (e-mail still allowed).
    emit(
        env,
        OPT_OUTS,
        opt_out_record(str(100_003), marketing=True, channels=[], source="test"),
        opt_out_record(str(100_004), marketing=False, channels=["email"], source="test"),
        opt_out_record(str(100_006), marketing=False, channels=["sms"], source="test"),
    )
    skipped_before = skipped_metric("skipped_optout")
    total = n + 2
    with SmtpSink() as sink:

        async def run(commit: bool) -> DeliveryWorker:
            worker = DeliveryWorker(with_sink(env, sink), "email", catalog=env.catalog)
            await worker.start()
            assert worker.lanes is not None
            if not commit:
                worker.lanes.commit = lambda lane, offsets, **_: None  # type: ignore[method-assign]
            try:
                if commit:
                    await drive(worker, lambda: worker.stats.already_done >= total)
                    return worker
                # A choice made while the worker runs (its replica follows the topic live).
                emit(
                    env,
                    OPT_OUTS,
                    opt_out_record(str(100_009), marketing=True, channels=[], source="test"),
                )
                await wait_for(lambda: "100009" in worker.guard.rules.opt_outs, "live opt-out")
                done = worker.stats
                await drive(worker, lambda: done.sent + done.skipped_opt_out >= total)
            finally:
                await worker.close()
            return worker

        first = asyncio.run(run(commit=False))
        got = received_by_address(sink)
        # Offsets not committed: a second worker replays everything; the ledger says done.
        second = asyncio.run(run(commit=True))
        assert sink.count() == sum(got.values())  # nothing more sent by the second

    # Marketing: 3 (marketing opt-out), 4 (e-mail opt-out), 9 (live) skipped; 6 sent.
    # Billing: 3 sent (a marketing opt-out does not cover billing), 4 skipped (channel).
    assert first.stats.skipped_opt_out == 4
    assert first.stats.sent == total - 4
    assert skipped_metric("skipped_optout") - skipped_before == 4
    assert address(4) not in got
    assert address(9) not in got
    assert got[address(3)] == 1  # the billing message only
    assert got[address(6)] == 1
    assert set(got.values()) == {1}
    assert len(got) == n - 2
    assert second.stats.sent == second.stats.skipped_opt_out == 0
    assert second.stats.already_done == total

    results = read_all(env, DELIVERY_RESULTS, total)
    skipped = [r for r in results if r["status"] == "skipped_optout"]
    assert sorted((r["recipient_id"], str(r["campaign_id"])) for r in skipped) == sorted(
        [("100003", marketing), ("100004", marketing), ("100009", marketing), ("100004", billing)]
    )
    assert all("opted out" in r["provider_response_text"] for r in skipped)
    assert all(r["attempts"] == 0 for r in skipped)
    ledger = read_all(env, DELIVERY_LEDGER, total)
    done = {(e["recipient_id"], e["status"]) for e in ledger if e["state"] == "done"}
    assert ("100009", "skipped_optout") in done
    # Skips are not failures: nothing went to the dead-letter topics.
    assert read_all(env, env.catalog.dead_letter_for(MESSAGE_LANES[1]), 1, timeout_s=3) == []


def test_cancel_withdraws_queued_messages_and_pause_holds_them_until_resume(env: Env) -> None:
    cancelled, other, paused = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    n = 12
    # Queued in this order; the paused campaign's messages last, so the other campaign's are
    # not held behind them (a paused message holds its partition: decision 0078).
    publish(env, messages(n, cancelled, first=0))
    publish(env, messages(n, other, first=100))
    publish(env, messages(n, paused, first=200))
    emit(
        env,
        CAMPAIGNS,
        command_record(cancelled, "cancel", "test"),
        command_record(paused, "pause", "test"),
    )
    with SmtpSink() as sink:

        async def run() -> DeliveryWorker:
            worker = DeliveryWorker(with_sink(env, sink), "email", catalog=env.catalog)
            await worker.start()
            try:
                stats = worker.stats
                await drive(
                    worker,
                    lambda: stats.sent >= n and stats.cancelled >= n and stats.held_paused >= 1,
                )
                # Held, and still held a while later (looked at again every second).
                held = stats.held_paused
                await drive(worker, lambda: stats.held_paused > held + 1)
                assert not any(address(200 + i) in received_by_address(sink) for i in range(n))
                assert stats.sent == n
                emit(env, CAMPAIGNS, command_record(paused, "resume", "test"))
                await drive(worker, lambda: stats.sent >= 2 * n)
            finally:
                await worker.close()
            return worker

        worker = asyncio.run(run())
        got = received_by_address(sink)

    assert worker.stats.cancelled == n
    assert worker.stats.sent == 2 * n
    assert set(got) == {address(100 + i) for i in range(n)} | {address(200 + i) for i in range(n)}
    assert set(got.values()) == {1}
    results = read_all(env, DELIVERY_RESULTS, 3 * n)
    by_campaign: dict[str, Counter[str]] = {}
    for r in results:
        by_campaign.setdefault(str(r["campaign_id"]), Counter())[r["status"]] += 1
    assert by_campaign == {
        cancelled: Counter({"cancelled": n}),
        other: Counter({"sent": n}),
        paused: Counter({"sent": n}),
    }
