"""Pinger pieces without network: checksum, probe statistics, inventory rules, sweep bounds."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest
from icmplib import ICMPv4Socket

from filas.settings import PingClassSettings, PingSettings
from producers.pinger.icmp import ProbeOutcome, _Icmpv4Socket
from producers.pinger.inventory import Inventory, InventoryRecordError, Target, target_of
from producers.pinger.sweeper import ping_result, sweep


def test_fast_checksum_equals_icmplibs() -> None:
    upstream = ICMPv4Socket.__new__(ICMPv4Socket)
    ours = _Icmpv4Socket.__new__(_Icmpv4Socket)
    upstream._sock = ours._sock = None  # neither is opened; __del__ must find the attribute
    for n in range(0, 130):
        data = os.urandom(n)
        assert ours._checksum(data) == upstream._checksum(data), n
    assert ours._checksum(b"\xff\xff" * 40) == upstream._checksum(b"\xff\xff" * 40)


def test_probe_outcome_statistics() -> None:
    o = ProbeOutcome("127.0.0.1", 4, (1.0, 3.0, 2.0))
    assert o.received == 3
    assert o.loss_ratio == pytest.approx(0.25)
    assert (o.rtt_min_ms, o.rtt_max_ms, o.rtt_avg_ms) == (1.0, 3.0, 2.0)
    assert o.jitter_ms == pytest.approx(1.5)  # |3-1|, |2-3|
    lost = ProbeOutcome("127.0.0.1", 3, ())
    assert (lost.loss_ratio, lost.rtt_avg_ms, lost.jitter_ms) == (1.0, None, None)
    assert ProbeOutcome("127.0.0.1", 2, (5.0,)).jitter_ms is None


def record(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "device_id": "olt-1",
        "ip": "10.0.0.1",
        "ping_class": "CRITICAL",
        "active": True,
    }
    return base | over


def test_inventory_rules() -> None:
    assert target_of(record()) == Target("olt-1", "10.0.0.1", "CRITICAL")
    assert target_of(record(ip=" 10.0.0.2 ")) == Target("olt-1", "10.0.0.2", "CRITICAL")
    assert target_of(record(active=False)) is None
    assert target_of(record(ip=None)) is None
    assert target_of(record(ping_class="NONE")) is None
    for bad in ("10.0.0.300", "olt.example", "::1", "224.0.0.1", "0.0.0.0"):
        with pytest.raises(InventoryRecordError):
            target_of(record(ip=bad))
    with pytest.raises(InventoryRecordError):
        target_of(record(device_id=""))


def test_inventory_follows_partitions() -> None:
    inv = Inventory()
    inv.assign([0, 1])
    inv.put(0, "a", Target("a", "127.0.0.1", "CRITICAL"))
    inv.put(1, "b", Target("b", "127.0.0.2", "SUBSCRIBER"))
    inv.put(1, "c", Target("c", "127.0.0.3", "CRITICAL"))
    assert [t.device_id for t in inv.of_class("CRITICAL")] == ["a", "c"]
    inv.put(1, "c", None)  # tombstone
    inv.revoke([0])
    assert len(inv) == 1
    assert inv.partitions == frozenset({1})
    assert PingSettings().for_class("NONE") is None


class FakeProber:
    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0

    async def probe(
        self, address: str, count: int, interval_s: float, timeout_s: float
    ) -> ProbeOutcome:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        rtts = () if address.endswith(".9") else tuple(1.0 for _ in range(count))
        return ProbeOutcome(address, count, rtts)


async def test_sweep_bounds_concurrency_and_keeps_order() -> None:
    prober = FakeProber()
    targets = [Target(f"d{i}", f"127.0.0.{i}", "CRITICAL") for i in range(1, 40)]
    settings = PingClassSettings(count=2, probe_interval_s=0, timeout_s=0.1)
    seen: list[str] = []
    out = await sweep(prober, targets, settings, 5, lambda t, _o: seen.append(t.device_id))
    assert [t.device_id for t, _ in out] == [t.device_id for t in targets]
    assert sorted(seen) == sorted(t.device_id for t in targets)  # each as soon as it is known
    assert prober.peak == 5
    lost = dict(out)[targets[8]]
    assert lost.received == 0
    rec = ping_result(targets[0], out[0][1], datetime(2026, 1, 1, tzinfo=UTC), "p1")
    assert (rec["probes_sent"], rec["probes_received"], rec["loss_ratio"]) == (2, 2, 0.0)
    assert rec["device_id"] == "d1"
    assert rec["pinger_instance"] == "p1"
