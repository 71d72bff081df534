"""Campaign delivery against real Kafka + registry, a real SMTP server (aiosmtpd) and a real HTTP
SMS gateway (aiohttp): retries, DLQ, relay outage, priority lanes, shared rate limit across three
worker processes, and a worker killed -9 mid-campaign."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from consumers.delivery.load import balanced_recipients, campaign_messages, publish_messages
from consumers.delivery.peers import SmsGatewayFake, SmtpSink
from consumers.delivery.smtp import message_id_header
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
from filas.local_platform.processes import free_port
from filas.settings import (
    DeliverySettings,
    HttpChannelSettings,
    Settings,
    SmtpChannelSettings,
    TopicsSettings,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The relay-outage test keeps the relay down this long (the scenario; shorter by env).
RELAY_DOWN_S = float(os.environ.get("FILAS_TEST_RELAY_DOWN_S", "30"))
DOMAIN = "test.filas"
# Per worker process: sends whose outcome Kafka has not acknowledged yet (the kill -9 exposure).
MAX_UNACKED = 8
WORKER_COMMAND = (sys.executable, "-m", "filas.cli.main", "delivery", "serve", "--channel", "email")


@dataclass
class Env:
    settings: Settings
    catalog: Catalog

    def with_delivery(self, **changes: Any) -> Settings:
        return self.settings.model_copy(
            update={"delivery": self.settings.delivery.model_copy(update=changes)}
        )


def _topics(catalog: Catalog) -> Catalog:
    specs: list[TopicSpec | str] = [DELIVERY_RESULTS, DELIVERY_LEDGER, OPT_OUTS, CAMPAIGNS]
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
            # At-most-once policy: 'sending' is written (and acknowledged) before every send.
            settings = smtp_settings(env, sink)
            settings = settings.model_copy(
                update={"delivery": settings.delivery.model_copy(update={"on_ambiguous": "skip"})}
            )
            worker = DeliveryWorker(settings, "email", catalog=env.catalog)
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
                worker.lanes.commit = lambda lane, offsets, **_: None  # type: ignore[method-assign]
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


def test_transactional_overtakes_a_bulk_backlog(env: Env) -> None:
    # The scenario: 50,000 bulk queued (published in ~1-3 s); the worker sends a few
    # hundred of them, then the transactional messages must not wait for the rest.
    bulk_n, urgent_n = 50_000, 5
    with SmtpSink() as sink:
        publish(env, campaign_messages(bulk_n, domain=DOMAIN))
        # 500/s: the backlog takes 100 s; the urgent messages must not wait for it.
        settings = smtp_settings(env, sink, rate_per_s=500.0, concurrency=16)
        urgent_ids: set[str] = set()

        async def run() -> DeliveryWorker:
            worker = DeliveryWorker(settings, "email", catalog=env.catalog)
            await worker.start()
            try:
                await drive(worker, lambda: sink.count() >= 300, 60)
                records = list(
                    campaign_messages(
                        urgent_n, lane="transactional", domain=DOMAIN, first_recipient=bulk_n
                    )
                )
                urgent_ids.update(message_id_header(r["message_id"], DOMAIN) for r in records)
                await asyncio.to_thread(publish, env, iter(records))
                await drive(worker, lambda: urgent_ids <= set(sink.by_message_id()), 30)
            finally:
                await worker.close()
            return worker

        asyncio.run(run())
        received = sink.by_message_id()
    bulk_received = sum(1 for mid in received if mid not in urgent_ids)
    assert urgent_ids <= set(received)
    # Delivered with more than 90% of the backlog still queued (a few hundred sent meanwhile).
    assert bulk_received < bulk_n // 10, "the urgent messages waited for the bulk backlog"


def _worker_env(env: Env, sink: SmtpSink, rate: float, concurrency: int) -> dict[str, str]:
    s = env.settings
    out = {k: v for k, v in os.environ.items() if not k.startswith("FILAS_")} | {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": s.kafka.security_protocol.value,
        "FILAS_KAFKA__SASL_MECHANISM": s.kafka.sasl_mechanism,
        "FILAS_REGISTRY__URL": s.registry.url,
        "FILAS_TOPICS__PREFIX": s.topics.prefix,
        "FILAS_DELIVERY__SESSION_TIMEOUT_MS": "6000",
        "FILAS_DELIVERY__BACKOFF_INITIAL_S": "0.2",
        "FILAS_DELIVERY__BACKOFF_MAX_S": "2",
        "FILAS_DELIVERY__EMAIL__PORT": str(sink.port),
        "FILAS_DELIVERY__EMAIL__MESSAGE_ID_DOMAIN": DOMAIN,
        "FILAS_DELIVERY__EMAIL__RATE_PER_S": str(rate),
        "FILAS_DELIVERY__EMAIL__CONCURRENCY": str(concurrency),
        "FILAS_DELIVERY__MAX_UNACKED": str(MAX_UNACKED),
    }
    if s.kafka.sasl_username is not None:
        out["FILAS_KAFKA__SASL_USERNAME"] = s.kafka.sasl_username
    if s.kafka.sasl_password is not None:
        out["FILAS_KAFKA__SASL_PASSWORD"] = s.kafka.sasl_password.get_secret_value()
    return out


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*WORKER_COMMAND, "--stats-every", "1"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_members(env: Env, members: int, timeout_s: float = 60.0) -> None:
    """Until every lane group of the e-mail workers is Stable with ``members`` members that
    hold every partition."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(dict(env.settings.kafka.client_config()))
    groups = [
        f"{env.settings.topics.prefix}{env.settings.delivery.group_id}-email.{lane.lane}"
        for lane in MESSAGE_LANES
    ]
    deadline = time.monotonic() + timeout_s
    while True:
        ready = True
        for name, future in admin.describe_consumer_groups(groups).items():
            group = future.result(10)
            held = sum(len(m.assignment.topic_partitions) for m in group.members)
            spec = next(lane for lane in MESSAGE_LANES if name.endswith(f".{lane.lane}"))
            if len(group.members) != members or held != spec.partitions:
                ready = False
        if ready:
            return
        assert time.monotonic() < deadline, f"groups {groups} never had {members} members"
        time.sleep(0.5)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def test_rate_limit_holds_across_three_worker_processes(env: Env, tmp_path: Path) -> None:
    rate, n = 60.0, 600
    with SmtpSink() as sink:
        worker_env = _worker_env(env, sink, rate, concurrency=6)
        metrics_port = free_port()
        procs = [
            _spawn(
                worker_env | ({"FILAS_METRICS__PORT": str(metrics_port)} if i == 0 else {}),
                tmp_path / f"worker{i}.log",
            )
            for i in range(3)
        ]
        try:
            _wait_members(env, 3)
            time.sleep(3)  # the cooperative rebalance's second round
            _wait_members(env, 3)
            # 50 recipients per partition: each worker (4 partitions of 12) gets a third.
            numbers = balanced_recipients(n // 12, 12)
            publish(env, campaign_messages(n, domain=DOMAIN, recipients=numbers))
            deadline = time.monotonic() + 3 * n / rate + 30
            while sink.count() < n:
                assert time.monotonic() < deadline, f"only {sink.count()} of {n} delivered"
                time.sleep(0.2)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as page:
                metrics = page.read().decode()
        finally:
            _stop(procs)
        # The first worker's share of the limit, as Prometheus sees it: a third of 60/s.
        assert (
            'filas_rate_limit_rate{component="campaign-delivery",limiter="email"} 20.0' in metrics
        )
        times = sorted(sink.times())
        counts = sink.by_message_id()
    assert len(counts) == n
    assert set(counts.values()) == {1}
    # While all three workers are busy (the first 90% of the campaign), the group as a whole
    # sends at the configured rate: each holds a third of the partitions and of the rate.
    k = int(0.9 * n)
    j = next(i for i, t in enumerate(times) if t >= times[0] + 1.0)  # after 1 s of warm-up
    measured = (k - 1 - j) / (times[k - 1] - times[j])
    assert measured <= rate * 1.05, f"measured {measured:.1f}/s over a limit of {rate}/s"
    assert measured >= rate * 0.8, f"measured {measured:.1f}/s: the limit starves the group"


def test_worker_killed_mid_campaign_every_recipient_gets_one_message(
    env: Env, tmp_path: Path
) -> None:
    rate, n, concurrency = 100.0, 800, 8
    with SmtpSink() as sink:
        worker_env = _worker_env(env, sink, rate, concurrency=concurrency)
        procs = [_spawn(worker_env, tmp_path / f"worker{i}.log") for i in range(2)]
        try:
            _wait_members(env, 2)
            records = list(campaign_messages(n, domain=DOMAIN))
            publish(env, iter(records))
            while sink.count() < n // 4:
                time.sleep(0.05)
            procs[0].send_signal(signal.SIGKILL)  # mid-batch, mid-send
            procs[0].wait(10)
            deadline = time.monotonic() + n / rate + 60
            while len(sink.by_message_id()) < n:
                assert time.monotonic() < deadline, f"{len(sink.by_message_id())} of {n}"
                time.sleep(0.2)
            time.sleep(2)  # nothing more may arrive
        finally:
            _stop(procs)
        counts = sink.by_message_id()
        raw = sink.count()
    expected = {message_id_header(r["message_id"], DOMAIN) for r in records}
    # As the recipient sees it: every message once (one Message-ID per recipient) ...
    assert set(counts) == expected
    # ... and on the wire, a resend only for sends the killed worker had not recorded yet (at
    # most its max_unacked), never for a message whose outcome was recorded.
    assert raw - n <= MAX_UNACKED, f"{raw - n} resends, more than max_unacked {MAX_UNACKED}"
    results = read_all(env, DELIVERY_RESULTS, n, timeout_s=30)
    assert {str(r["message_id"]) for r in results if r["status"] == "sent"} == {
        r["message_id"] for r in records
    }
