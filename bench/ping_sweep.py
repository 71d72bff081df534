"""Sweep rate: hosts/s probed by the pinger vs fping over the same loopback addresses.

``--hosts`` addresses in 127.0.0.0/8 (never anything else), one echo request each. The pinger
side is the code ``filas ping serve`` runs per round (``producers.pinger.sweeper.sweep`` driving
``IcmpProber.sweep_round``: one socket per family, ``--concurrency`` devices in flight, Kafka left
out: this measures ICMP). Peers, measured in the same run over the same address file:
- ``fping -c1 -i 0`` (root only: no pause between targets, fping's fastest; the fair peer);
- ``fping -c1`` at its defaults (10 ms between targets: what an operator's fping does).
IPv6: ``--v6-probes`` targets that are all ``::1`` (the one IPv6 loopback address), against
``fping -6 -c1 -i 0`` over the same list. Each side runs ``--repeat`` times; the median is
reported. Needs root (raw ICMP).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from bench.common import report
from filas.settings import PingClassSettings, Settings
from producers.pinger.icmp import IcmpProber
from producers.pinger.inventory import Target
from producers.pinger.sweeper import sweep


def loopback_hosts(n: int) -> list[str]:
    """``n`` distinct addresses 127.1.0.1, 127.1.0.2, ... (host part 1..250 per /24)."""
    return [f"127.{1 + i // 62_500}.{(i // 250) % 250}.{1 + i % 250}" for i in range(n)]


async def pinger_rate(hosts: list[str], concurrency: int, timeout_s: float) -> tuple[float, int]:
    prober = IcmpProber()
    prober.open()
    try:
        targets = [Target(f"bench-{i}", h, "CRITICAL") for i, h in enumerate(hosts)]
        settings = PingClassSettings(interval_s=1, count=1, probe_interval_s=0, timeout_s=timeout_s)
        started = time.perf_counter()
        outcomes = await sweep(prober, targets, settings, concurrency)
        elapsed = time.perf_counter() - started
        got = sum(o.received for _, o in outcomes)
        return len(hosts) / elapsed, got
    finally:
        prober.close()


def fping_rate(path: Path, n: int, extra: list[str], timeout_ms: int) -> tuple[float, int]:
    cmd = ["fping", "-c1", "-q", "-r0", "-t", str(timeout_ms), *extra, "-f", str(path)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    received = sum("xmt/rcv/%loss = 1/1/" in line for line in done.stderr.splitlines())
    return n / elapsed, received


def drop_topics(settings: Settings, names: list[str]) -> None:
    """Delete a benchmark's topics (tens of MB per run) instead of leaving them on the cluster."""
    futures = AdminClient(dict(settings.kafka.client_config())).delete_topics(names)
    for future in futures.values():
        with contextlib.suppress(KafkaException):
            future.result(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--default-hosts", type=int, default=300, help="for fping at defaults")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--timeout-ms", type=int, default=1000)
    parser.add_argument("--v6-probes", type=int, default=2000, help="::1 targets; 0 skips")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("fping") is None:
        raise SystemExit("fping is not installed (apt-get install fping)")
    hosts = loopback_hosts(args.hosts)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hosts.txt"
        path.write_text("\n".join(hosts) + "\n")
        few = Path(tmp) / "few.txt"
        few.write_text("\n".join(hosts[: args.default_hosts]) + "\n")
        ours, fast, slow = [], [], []
        for _ in range(args.repeat):
            rate, got = asyncio.run(pinger_rate(hosts, args.concurrency, args.timeout_ms / 1000))
            ours.append(rate)
            print(f"pinger: {rate:,.0f} hosts/s, {got}/{len(hosts)} replies", flush=True)
            rate, got = fping_rate(path, len(hosts), ["-i", "0"], args.timeout_ms)
            fast.append(rate)
            print(f"fping -i 0: {rate:,.0f} hosts/s, {got}/{len(hosts)} replies", flush=True)
        rate, got = fping_rate(few, args.default_hosts, [], args.timeout_ms)
        slow.append(rate)
        print(f"fping (defaults): {rate:,.0f} hosts/s, {got}/{args.default_hosts} replies")
        ours6, fping6 = [], []
        v6 = ["::1"] * args.v6_probes
        v6_path = Path(tmp) / "v6.txt"
        v6_path.write_text("\n".join(v6) + "\n")
        for _ in range(args.repeat if v6 else 0):
            rate, got = asyncio.run(pinger_rate(v6, args.concurrency, args.timeout_ms / 1000))
            ours6.append(rate)
            print(f"pinger IPv6: {rate:,.0f} probes/s, {got}/{len(v6)} replies", flush=True)
            rate, got = fping_rate(v6_path, len(v6), ["-6", "-i", "0"], args.timeout_ms)
            fping6.append(rate)
            print(f"fping -6 -i 0: {rate:,.0f} probes/s, {got}/{len(v6)} replies", flush=True)
    pinger = statistics.median(ours)
    fping_fast = statistics.median(fast)
    fping_default = statistics.median(slow)
    report("ping_sweep_fping_fastest", fping_fast, "hosts/s", 1.0, "fping -c1 -i 0")
    report("ping_sweep_pinger", pinger, "hosts/s", pinger / fping_fast, "fping -c1 -i 0")
    report("ping_sweep_pinger", pinger, "hosts/s", pinger / fping_default, "fping -c1 (defaults)")
    if ours6:
        v6_rate, v6_peer = statistics.median(ours6), statistics.median(fping6)
        report(
            "ping_sweep_pinger_ipv6", v6_rate, "probes/s", v6_rate / v6_peer, "fping -6 -c1 -i 0"
        )


if __name__ == "__main__":
    main()
