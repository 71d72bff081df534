"""``IcmpProber`` rounds with real ICMP: loopback (127/8 and ::1, ICMPv6) and hosts in a network
namespace this module creates (``producers.pinger.netns``: 198.18.0.0/15 behind an
``unreachable`` route, so nothing leaves the machine). Needs root (raw sockets, ip netns)."""

from __future__ import annotations

import asyncio
import os

import pytest

from filas.settings import PingClassSettings
from producers.pinger.icmp import IcmpProber, ProbeOutcome
from producers.pinger.inventory import Target
from producers.pinger.netns import NetNs
from producers.pinger.sweeper import sweep

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP and network namespaces need root"),
]


def loopbacks(second: int, n: int) -> list[str]:
    return [f"127.{second}.{i // 250}.{1 + i % 250}" for i in range(n)]


async def test_round_over_loopback_ipv4_and_ipv6_and_a_dead_namespace_host() -> None:
    with NetNs(extra=2) as net:
        net.host_down(net.hosts[1])  # no longer answers
        alive = [*loopbacks(41, 300), "::1", net.parent, net.hosts[0]]
        dead = [net.hosts[1]]
        prober = IcmpProber()
        prober.open()
        seen: list[str] = []
        try:
            out = await prober.sweep_round(
                alive + dead, 2, 0.05, 2.0, 64, lambda t, _o: seen.append(t), str
            )
        finally:
            prober.close()
    assert [o.address for o in out] == alive + dead
    assert sorted(seen) == sorted(alive + dead)
    by = {o.address: o for o in out}
    for address in alive:
        assert (by[address].sent, by[address].received) == (2, 2), by[address]
        assert by[address].rtt_avg_ms is not None
        assert by[address].jitter_ms is not None
    assert (by[dead[0]].received, by[dead[0]].loss_ratio) == (0, 1.0)
    assert prober.received == 2 * len(alive)
    assert not prober._inflight


async def test_link_down_is_a_lost_round_and_rounds_share_the_sockets() -> None:
    """A cut link (the unreachable route takes over) loses the namespace's probes; two class
    rounds at once on one prober (as ``filas ping serve`` runs them) each get their replies."""
    with NetNs(extra=1) as net:
        net.link_down()
        prober = IcmpProber()
        prober.open()
        try:
            cut, v6, v4 = await asyncio.gather(
                prober.probe(net.parent, 1, 0.0, 0.5),
                prober.sweep_round(["::1"] * 20, 1, 0.0, 2.0, 5, None, str),
                prober.sweep_round(loopbacks(42, 200), 3, 0.01, 2.0, 50, None, str),
            )
            net.link_up()
            back = await prober.probe(net.parent, 1, 0.0, 2.0)
        finally:
            prober.close()
    assert cut.received == 0
    assert all(o.received == 1 for o in v6)
    assert all(o.received == 3 for o in v4)
    assert back.received == 1


async def test_sweeper_drives_the_prober_round() -> None:
    targets = [Target(f"d{i}", a, "CRITICAL") for i, a in enumerate([*loopbacks(43, 50), "::1"])]
    settings = PingClassSettings(count=1, probe_interval_s=0, timeout_s=2.0)
    prober = IcmpProber()
    prober.open()
    got: list[tuple[Target, ProbeOutcome]] = []
    try:
        out = await sweep(prober, targets, settings, 10, lambda t, o: got.append((t, o)))
    finally:
        prober.close()
    assert [t for t, _ in out] == targets
    assert all(o.received == 1 and o.address == t.ip for t, o in out)
    assert sorted(t.device_id for t, _ in got) == sorted(t.device_id for t in targets)
