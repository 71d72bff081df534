"""Pinger pieces without network: checksum, probe statistics, inventory rules, sweep bounds."""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC, datetime

import pytest
from icmplib import ICMPv4Socket, ICMPv6Socket

from filas.settings import PingClassSettings, PingSettings
from producers.pinger.icmp import EchoTemplate, ProbeOutcome
from producers.pinger.inventory import Inventory, InventoryRecordError, Target, target_of
from producers.pinger.sweeper import ping_result, sweep


def test_echo_template_equals_icmplibs_packet() -> None:
    """The prebuilt request with patched id/sequence/checksum is byte for byte icmplib's."""
    for kind, request_type in ((ICMPv4Socket, 8), (ICMPv6Socket, 128)):
        upstream = kind.__new__(kind)
        upstream._sock = None  # not opened; __del__ must find the attribute
        template = EchoTemplate(request_type)
        for ident, sequence in ((1, 0), (0xFFFF, 0xFFFF), (0x1234, 0xFEDC), (40000, 1)):
            want = upstream._create_packet(ident, sequence, bytes(range(56)))
            assert bytes(template.patch(ident, sequence)) == want, (kind, ident, sequence)
        for _ in range(200):
            ident, sequence = random.randrange(65536), random.randrange(65536)
            want = upstream._create_packet(ident, sequence, bytes(range(56)))
            assert bytes(template.patch(ident, sequence)) == want
    odd = EchoTemplate(8, os.urandom(7))
    upstream = ICMPv4Socket.__new__(ICMPv4Socket)
    upstream._sock = None
    assert bytes(odd.patch(9, 9)) == upstream._create_packet(9, 9, bytes(odd.packet[8:]))


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
    assert target_of(record(ip="::1")) == Target("olt-1", "::1", "CRITICAL")
    assert target_of(record(ip="2001:DB8:0:0::7")) == Target("olt-1", "2001:db8::7", "CRITICAL")
    assert target_of(record(ip="::ffff:10.0.0.3")) == Target("olt-1", "10.0.0.3", "CRITICAL")
    for bad in ("10.0.0.300", "olt.example", "224.0.0.1", "0.0.0.0", "::", "ff02::1", "1::2::3"):
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
