"""The pinger against real Kafka and real ICMP: loopback addresses and hosts in network namespaces
this module creates (``ip netns`` + veth, addresses in 198.18.0.0/15, the RFC 2544 benchmarking
range, guarded by an ``unreachable`` route so no probe ever leaves the machine). Needs root."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from filas.admin.topics import TopicAdmin
from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.ixc_state import DEVICES
from filas.catalog.network import ALERTS, PING_RESULTS, RESPONSES
from filas.local_platform.processes import free_port
from filas.monitoring.scrape import scrape
from filas.settings import PingClassSettings, PingSettings, Settings, TopicsSettings
from producers.envelope import envelope
from producers.pinger.netns import NetNs
from producers.pinger.service import PingerService
from producers.sdk import EventProducer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and raw ICMP need root"),
]


def device(
    device_id: str,
    ip_address: str | None,
    *,
    parent: str | None = None,
    ping_class: str = "CRITICAL",
    logins: tuple[str, ...] = (),
    device_type: str = "OLT",
    active: bool = True,
) -> dict[str, Any]:
    return {
        "envelope": envelope("test"),
        "device_id": device_id,
        "name": device_id.upper(),
        "device_type": device_type,
        "ip": ip_address,
        "parent_device_id": parent,
        "pop_id": "1",
        "linked_login_ids": list(logins),
        "ping_class": ping_class,
        "active": active,
        "updated_at": None,
    }


def fast_ping(**overrides: Any) -> PingSettings:
    quick = PingClassSettings(interval_s=0.3, count=1, probe_interval_s=0.0, timeout_s=0.2)
    values: dict[str, Any] = {
        "critical": quick,
        "standard": quick,
        "subscriber": quick,
        "session_timeout_ms": 6000,
        "down_after_rounds": 2,
        "up_after_rounds": 2,
        "suppression_hold_s": 5.0,
        "clear_hold_s": 30.0,
        "flap_window": 30,
        "flap_transitions": 4,
    }
    values.update(overrides)
    return PingSettings(**values)


@dataclass
class Env:
    settings: Settings
    catalog: Catalog
    serdes: Serdes
    producer: EventProducer
    started: list[Callable[[], None]] = field(default_factory=list)


@pytest.fixture
def env(platform: Settings, unique_name: str) -> Iterator[Env]:
    catalog = Catalog.build(unique_name)
    specs = [catalog.resolve(s) for s in (DEVICES, PING_RESULTS, ALERTS, RESPONSES)]
    specs += [catalog.dead_letter_for(s) for s in (DEVICES, PING_RESULTS, RESPONSES)]
    TopicAdmin(platform.kafka).apply(catalog.only(*specs))
    settings = platform.model_copy(
        update={"topics": TopicsSettings(prefix=unique_name), "ping": fast_ping()}
    )
    serdes = build_serdes(settings)
    producer = build_producer(settings, catalog=catalog, serdes=serdes)
    e = Env(settings, catalog, serdes, producer)
    try:
        yield e
    finally:
        for stop in reversed(e.started):
            stop()
        producer.close(10)


class PingerThread:
    """A PingerService on its own event loop in a thread (as ``filas ping serve`` runs it)."""

    def __init__(self, env: Env, instance: str, **ping: Any) -> None:
        settings = env.settings
        update: dict[str, Any] = {"pinger_instance": instance, **ping}
        settings = settings.model_copy(update={"ping": settings.ping.model_copy(update=update)})
        self.service = PingerService(settings, catalog=env.catalog, serdes=env.serdes)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.thread.start()
        env.started.append(self.stop)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.service.run())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            self.loop.close()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.service.stop)
            self.thread.join(timeout=20)
        if self.error is not None:
            raise self.error


class TopicReader:
    """Reads a topic from the beginning (every partition), decoded; ``until`` waits for a match."""

    def __init__(self, env: Env, spec: TopicSpec) -> None:
        self.spec = (
            env.catalog.resolve(spec) if not spec.name.startswith(env.catalog.prefix) else spec
        )
        self.decode = env.serdes(self.spec).deserialize
        self.consumer = Consumer(
            dict(env.settings.kafka.client_config())
            | {"group.id": f"reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
        meta = self.consumer.list_topics(self.spec.name, timeout=10).topics[self.spec.name]
        self.consumer.assign(
            [TopicPartition(self.spec.name, p, OFFSET_BEGINNING) for p in meta.partitions]
        )
        self.records: list[dict[str, Any]] = []
        self.raw: list[tuple[bytes | None, bytes | None]] = []
        env.started.append(self.consumer.close)

    def poll(self, timeout_s: float = 0.2) -> list[dict[str, Any]]:
        fresh = []
        for msg in self.consumer.consume(num_messages=5000, timeout=timeout_s):
            if msg.error() or msg.value() is None:
                continue
            self.raw.append((msg.key(), msg.value()))
            fresh.append(self.decode(msg.value()))
        self.records += fresh
        return fresh

    def until(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float, what: str
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if predicate(self.records):
                return self.records
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_pinger_results_per_device_and_malformed_inventory_to_dlq(env: Env) -> None:
    with NetNs(extra=1) as net:
        devices = [
            device("lo-1", "127.0.0.1"),
            device("lo-2", "127.3.2.1", ping_class="SUBSCRIBER", device_type="ONU"),
            device("lo-v6", "::1", ping_class="STANDARD"),  # ICMPv6
            device("ns-parent", net.parent),
            device("ns-host", net.hosts[0], parent="ns-parent", ping_class="STANDARD"),
            device("no-ip", None, ping_class="NONE"),
            device("retired", "127.0.0.9", active=False),
            device("bad-ip", "10.0.0.300"),  # malformed: cannot be an address
        ]
        for d in devices:
            env.producer.emit(DEVICES, d)
        env.producer.flush()
        # A record that is not Avro at all, straight to the topic.
        raw = Producer(dict(env.settings.kafka.client_config()))
        raw.produce(env.catalog.resolve(DEVICES).name, key=b"garbage", value=b"\x00not avro")
        raw.flush(10)
        net.host_down(net.hosts[0])  # this one does not answer

        pinger = PingerThread(env, "p1")
        results = TopicReader(env, PING_RESULTS)
        want = {"lo-1", "lo-2", "lo-v6", "ns-parent", "ns-host"}

        def two_rounds(records: list[dict[str, Any]]) -> bool:
            counts = {d: sum(r["device_id"] == d for r in records) for d in want}
            return min(counts.values()) >= 2

        records = results.until(two_rounds, 20, "two rounds of results for every device")
        pinger.stop()
    assert {r["device_id"] for r in records} == want  # never no-ip, retired or bad-ip
    by_device = {r["device_id"]: r for r in records}
    for d in ("lo-1", "lo-2", "lo-v6", "ns-parent"):
        assert by_device[d]["probes_received"] == 1, by_device[d]
        assert by_device[d]["loss_ratio"] == 0.0
        assert by_device[d]["rtt_avg_ms"] is not None
    lost = by_device["ns-host"]
    assert (lost["probes_received"], lost["loss_ratio"], lost["rtt_avg_ms"]) == (0, 1.0, None)
    assert {r["pinger_instance"] for r in records} == {"p1"}
    assert {r["target_ip"] for r in records} == {
        "127.0.0.1",
        "127.3.2.1",
        "::1",
        net.parent,
        net.hosts[0],
    }

    dlq = TopicReader(env, env.catalog.dead_letter_for(DEVICES))
    letters = dlq.until(lambda rs: len(rs) >= 2, 10, "two dead letters")
    reasons = {(r["raw_key"], r["error_code"]) for r in letters}
    assert (b"bad-ip", "inventory_invalid") in reasons
    assert (b"garbage", "decode") in reasons
    assert all(r["source_topic"] == env.catalog.resolve(DEVICES).name for r in letters)


ROUND_S = 4.0  # the session timeout (6 s, the broker's minimum) is 1.5 rounds


def test_killed_pinger_devices_are_taken_over(env: Env) -> None:
    """Two instances split the inventory; SIGKILL one: the other pings all its devices within
    two rounds (session timeout, then an immediate sweep of the partitions it gained)."""
    ids = [f"lo-{i}" for i in range(24)]
    for i, d in enumerate(ids):
        env.producer.emit(DEVICES, device(d, f"127.9.0.{i + 1}"))
    env.producer.flush()
    every = PingClassSettings(interval_s=ROUND_S, count=1, probe_interval_s=0.0, timeout_s=0.2)
    survivor = PingerThread(env, "survivor", critical=every)
    metrics_port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FILAS_")} | {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": env.settings.kafka.bootstrap_servers,
        "FILAS_REGISTRY__URL": env.settings.registry.url,
        "FILAS_TOPICS__PREFIX": env.catalog.prefix,
        "FILAS_PING__PINGER_INSTANCE": "victim",
        "FILAS_METRICS__PORT": str(metrics_port),
        "FILAS_PING__SESSION_TIMEOUT_MS": "6000",
    }
    for cls in ("CRITICAL", "STANDARD", "SUBSCRIBER"):
        child_env[f"FILAS_PING__{cls}__INTERVAL_S"] = str(ROUND_S)
        child_env[f"FILAS_PING__{cls}__COUNT"] = "1"
        child_env[f"FILAS_PING__{cls}__TIMEOUT_S"] = "0.2"
    victim = subprocess.Popen(
        [sys.executable, "-m", "filas.cli.main", "ping", "serve", "--stats-every", "5"],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def reap() -> None:
        victim.kill()
        victim.wait(10)

    env.started.append(reap)
    results = TopicReader(env, PING_RESULTS)

    def split(records: list[dict[str, Any]]) -> bool:
        recent = records[-200:]
        return {r["pinger_instance"] for r in recent} == {"survivor", "victim"}

    results.until(split, 60, "both instances publishing")
    mark = len(results.records)

    def covered(records: list[dict[str, Any]]) -> bool:
        return {r["device_id"] for r in records[mark:]} == set(ids)

    results.until(covered, 3 * ROUND_S, "a full round from the two instances")
    after = results.records[mark:]
    by_victim = {r["device_id"] for r in after if r["pinger_instance"] == "victim"}
    by_survivor = {r["device_id"] for r in after if r["pinger_instance"] == "survivor"}
    assert by_victim
    assert by_victim.isdisjoint(by_survivor)  # each device pinged by exactly one instance
    assert by_victim | by_survivor == set(ids)
    # `filas ping serve` serves /metrics and counts what it published.
    samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    published = {
        dict(labels).get("topic"): value
        for (name, labels), value in samples.items()
        if name == "filas_events_out_total" and dict(labels).get("component") == "pinger"
    }
    assert published[env.catalog.resolve(PING_RESULTS).name] >= len(by_victim)
    victim.kill()
    victim.wait(10)
    killed_at = time.monotonic()
    seen_after: set[str] = set()
    results.poll()
    mark = len(results.records)

    def taken_over(records: list[dict[str, Any]]) -> bool:
        seen_after.update(
            r["device_id"] for r in records[mark:] if r["pinger_instance"] == "survivor"
        )
        return by_victim <= seen_after

    results.until(taken_over, 4 * ROUND_S, "the survivor to ping the victim's devices")
    took = time.monotonic() - killed_at
    assert took < 2 * ROUND_S, took
    survivor.stop()
    assert set(ids) <= {r["device_id"] for r in results.records}
