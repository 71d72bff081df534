"""CoA / Disconnect against real Kafka + registry: status events in, a pyrad NAS listener answers,
results read back from radius.coa-results; replays after a restart send nothing."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACT_STATUS, CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, COA_RESULTS
from filas.settings import RadiusSettings, Settings
from producers.envelope import envelope
from producers.sdk import EventProducer
from streams.radius.coa_worker import CoaWorker, load_ledger
from tests.unit.test_radius_coa import SECRET, SECRET_REF, FakeNas

pytestmark = pytest.mark.integration


def nas_record(port: int) -> dict[str, Any]:
    return {
        "envelope": envelope("test"),
        "nas_id": "9",
        "name": "bras-9",
        "ip": "127.0.0.1",
        "vendor": "MIKROTIK",
        "secret_ref": SECRET_REF,
        "coa_port": port,
    }


def login_record(login: str, contract_id: str) -> dict[str, Any]:
    return {
        "envelope": envelope("test"),
        "login": login,
        "login_id": login,
        "login_type": "PPPOE",
        "contract_id": contract_id,
        "customer_id": "1",
        "status": "ACTIVE",
        "password": "x",
        "download_kbps": 100_000,
        "upload_kbps": 50_000,
    }


def start_record(login: str, session_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "envelope": envelope("test"),
        "login": login,
        "status_type": "start",
        "session_id": session_id,
        "unique_session_id": f"u-{session_id}",
        "nas_id": "9",
        "nas_ip_address": "127.0.0.1",
        "framed_ip_address": "100.64.0.9",
        "event_at": now,
        "received_at": now,
    }


def status_event(contract_id: str, new: str, previous: str, reason: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "envelope": envelope("test", occurred_at=now),
        "contract_id": contract_id,
        "customer_id": "1",
        "previous_status": previous,
        "new_status": new,
        "reason": reason,
        "changed_at": now,
    }


@dataclass
class Env:
    settings: Settings
    catalog: Catalog
    producer: EventProducer
    nas: FakeNas


CONTRACTS_N = 200


@pytest.fixture(scope="module")
def env(platform: Settings) -> Iterator[Env]:
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    catalog = Catalog.build(prefix)
    specs = [
        catalog.resolve(s)
        for s in (SUBSCRIBERS, CONTRACTS, NAS, ACCOUNTING, CONTRACT_STATUS, COA_RESULTS)
    ]
    TopicAdmin(platform.kafka).apply(catalog.only(*specs))
    settings = platform.model_copy(
        update={
            "radius": RadiusSettings(
                nas_secrets={SECRET_REF: SecretStr(SECRET.decode())},
                coa_timeout_s=0.3,
                coa_retries=2,
                coa_start_from="earliest",
                gateway_instance="test-coa",
            )
        }
    )
    nas = FakeNas().start()
    producer = build_producer(settings, catalog=catalog)
    producer.emit(NAS, nas_record(nas.port))
    for i in range(CONTRACTS_N):
        login = f"cli{i}@fibra"
        producer.emit(SUBSCRIBERS, login_record(login, f"c-{i}"))
        producer.emit(ACCOUNTING, start_record(login, f"s{i:05d}"))
    producer.flush()
    try:
        yield Env(settings, catalog, producer, nas)
    finally:
        producer.close()
        nas.stop()


def worker(env: Env) -> CoaWorker:
    w = CoaWorker(env.settings, catalog=env.catalog)
    w.start()
    return w


def drain(w: CoaWorker, results: int, timeout_s: float = 60.0) -> int:
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < results and time.monotonic() < deadline:
        got += w.run_once(0.2)
    return got


def test_block_unblock_replay_and_timeout(env: Env) -> None:
    block = status_event("c-0", "BLOCKED", "ACTIVE", "NON_PAYMENT_BLOCK")
    unblock = status_event("c-0", "ACTIVE", "BLOCKED", "PAYMENT_CONFIRMED")
    env.producer.emit_sync(CONTRACT_STATUS, block)
    env.producer.emit_sync(CONTRACT_STATUS, unblock)
    w = worker(env)
    try:
        assert drain(w, 2) == 2
    finally:
        w.close()
    disconnect, coa = env.nas.received[-2:]
    assert disconnect.code == 40
    assert disconnect.attributes["User-Name"] == ["cli0@fibra"]
    assert disconnect.attributes["Acct-Session-Id"] == ["s00000"]
    assert coa.code == 43
    assert coa.attributes["Mikrotik-Rate-Limit"] == ["50M/100M"]

    ledger = load_ledger(env.settings, env.catalog, w._serdes, 30)
    assert (block["envelope"]["event_id"], "DISCONNECT") in ledger
    assert (unblock["envelope"]["event_id"], "COA") in ledger

    # Replay (as after a rebalance that lost the commit): the same event again, new worker.
    sent_before = len(env.nas.received)
    env.producer.emit_sync(CONTRACT_STATUS, block)
    w = worker(env)
    try:
        drain(w, 1, timeout_s=5)
        assert w.processor.stats.duplicates == 1
    finally:
        w.close()
    assert len(env.nas.received) == sent_before

    # Silent NAS: retries, then a TIMEOUT result on the topic.
    env.nas.answer = "silent"
    datagrams = env.nas.datagrams
    env.producer.emit_sync(CONTRACT_STATUS, status_event("c-1", "BLOCKED", "ACTIVE", "MANUAL"))
    w = worker(env)
    try:
        assert drain(w, 1) == 1
    finally:
        w.close()
        env.nas.answer = "ack"
    assert env.nas.datagrams - datagrams == 3
    ledger = load_ledger(env.settings, env.catalog, w._serdes, 30)
    assert len(ledger) == 3


def test_block_to_nas_ack_latency(env: Env) -> None:
    """198 block events at 20/s while the worker runs: status event occurred_at -> NAS ACK
    (the result's status_event_lag_ms, taken when the ACK arrived)."""
    n = CONTRACTS_N - 2
    w = worker(env)

    def emit() -> None:
        for i in range(2, CONTRACTS_N):
            env.producer.emit(
                CONTRACT_STATUS, status_event(f"c-{i}", "BLOCKED", "ACTIVE", "MANUAL")
            )
            env.producer.poll(0)
            time.sleep(0.05)
        env.producer.flush()

    sender = threading.Thread(target=emit, daemon=True)
    lags: list[float] = []
    try:
        sender.start()
        deadline = time.monotonic() + 120
        while len(lags) < n and time.monotonic() < deadline:
            w.run_once(0.2)
            lags += [r["status_event_lag_ms"] for r in w.last_results if r["outcome"] == "ACK"]
    finally:
        sender.join(30)
        w.close()
    assert len(lags) == n
    q = statistics.quantiles(lags, n=100)
    print(f"coa block->NAS ACK over {n} events: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms")
    assert q[98] < 5000


def peer_result(event: dict[str, Any], action: str) -> dict[str, Any]:
    """The CoaResult another worker emitted for ``event`` (its offset commit then lost)."""
    return {
        "envelope": envelope("peer-worker"),
        "contract_id": event["contract_id"],
        "status_event_id": event["envelope"]["event_id"],
        "action": action,
        "reason": event["reason"],
        "login": "cli0@fibra",
        "nas_id": "9",
        "nas_ip": "127.0.0.1",
        "session_id": "s00000",
        "attributes": {},
        "outcome": "ACK",
        "attempts": 1,
        "error_cause": None,
        "latency_ms": 1.0,
        "status_event_lag_ms": 5.0,
    }


def test_ledger_follows_results_written_after_start_up(env: Env) -> None:
    """The takeover gap: this worker loaded the ledger, then a peer handled an event (result on
    the topic, offset commit lost) and the event is replayed here. The tailed ledger, caught up
    when partitions are assigned, knows it: nothing is sent."""
    w = worker(env)
    try:
        replayed = status_event("c-0", "BLOCKED", "ACTIVE", "NON_PAYMENT_BLOCK")
        env.producer.emit_sync(COA_RESULTS, peer_result(replayed, "DISCONNECT"))
        env.producer.emit_sync(CONTRACT_STATUS, replayed)
        sent_before = len(env.nas.received)
        deadline = time.monotonic() + 30
        while w.processor.stats.events < 1 and time.monotonic() < deadline:
            w.run_once(0.2)
        assert w.processor.stats.duplicates == 1
        assert len(env.nas.received) == sent_before

        # While running (no rebalance): a later peer result reaches the ledger too.
        later = status_event("c-0", "ACTIVE", "BLOCKED", "PAYMENT_CONFIRMED")
        env.producer.emit_sync(COA_RESULTS, peer_result(later, "COA"))
        assert w.ledger_tail is not None
        w.ledger_tail.wait_caught_up(10)
        assert (later["envelope"]["event_id"], "COA") in w.processor.ledger
    finally:
        w.close()
