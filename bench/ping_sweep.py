"""Sweep rate: hosts/s probed by the pinger vs fping over the same loopback addresses.

``--hosts`` addresses in 127.0.0.0/8 (never anything else), one echo request each. The pinger
side is the code ``filas ping serve`` runs per round (``producers.pinger.sweeper.sweep`` driving
``IcmpProber.sweep_round``: one socket per family, ``--concurrency`` devices in flight, Kafka left
out: this measures ICMP). Peers, measured in the same run over the same address file:
- ``fping -c1 -i 0`` (root only: no pause between targets, fping's fastest; the fair peer);
- ``fping -c1`` at its defaults (10 ms between targets: what an operator's fping does).
IPv6: ``--v6-probes`` targets that are all ``::1`` (the one IPv6 loopback address), against
``fping -6 -c1 -i 0`` over the same list. ``--publish`` adds the sweep with every result
published to Kafka as ``filas ping serve`` does (``bench.common.services``; flush included).
Each side runs ``--repeat`` times; the median is reported. Needs root (raw ICMP).
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
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from bench.common import report, services
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.network import PING_RESULTS
from filas.settings import PingClassSettings, Settings, TopicsSettings
from producers.pinger.icmp import IcmpProber, ProbeOutcome
from producers.pinger.inventory import Target
from producers.pinger.sweeper import now_utc, ping_result, sweep
from producers.sdk import EventProducer


def loopback_hosts(n: int) -> list[str]:
    """``n`` distinct addresses 127.1.0.1, 127.1.0.2, ... (host part 1..250 per /24)."""
    return [f"127.{1 + i // 62_500}.{(i // 250) % 250}.{1 + i % 250}" for i in range(n)]


async def pinger_rate(
    hosts: list[str],
    concurrency: int,
    timeout_s: float,
    producer: EventProducer | None = None,
) -> tuple[float, int]:
    """One round; with ``producer``, every outcome is also published as ``filas ping serve``
    does (PingResult record, Avro, produce) and the time includes the final flush (acks)."""
    prober = IcmpProber()
    prober.open()
    try:
        targets = [Target(f"bench-{i}", h, "CRITICAL") for i, h in enumerate(hosts)]
        settings = PingClassSettings(interval_s=1, count=1, probe_interval_s=0, timeout_s=timeout_s)
        publish = None
        if producer is not None:
            probed_at = now_utc()

            def publish(target: Target, outcome: ProbeOutcome) -> None:
                producer.emit(PING_RESULTS, ping_result(target, outcome, probed_at, "bench"))

        started = time.perf_counter()
        outcomes = await sweep(prober, targets, settings, concurrency, publish)
        if producer is not None:
            producer.flush(60)
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


def publishing_rates(hosts: list[str], args: argparse.Namespace) -> list[float]:
    """The sweep with every result published to ``net.ping-results`` (a throwaway topic)."""
    rates = []
    with services() as base:
        catalog = Catalog.build(f"bench{uuid.uuid4().hex[:8]}-")
        spec = catalog.resolve(PING_RESULTS)
        TopicAdmin(base.kafka).apply(catalog.only(spec))
        settings = base.model_copy(update={"topics": TopicsSettings(prefix=catalog.prefix)})
        producer = build_producer(settings, catalog=catalog)
        try:
            for _ in range(args.repeat):
                rate, got = asyncio.run(
                    pinger_rate(hosts, args.concurrency, args.timeout_ms / 1000, producer)
                )
                rates.append(rate)
                print(f"pinger publishing: {rate:,.0f} hosts/s, {got} replies", flush=True)
        finally:
            producer.close(30)
            drop_topics(settings, [spec.name])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--default-hosts", type=int, default=300, help="for fping at defaults")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--timeout-ms", type=int, default=1000)
    parser.add_argument("--v6-probes", type=int, default=2000, help="::1 targets; 0 skips")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also sweep while publishing every result to Kafka (as the service does)",
    )
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
    published: list[float] = []
    if args.publish:
        published = publishing_rates(hosts, args)
    pinger = statistics.median(ours)
    fping_fast = statistics.median(fast)
    fping_default = statistics.median(slow)
    report("ping_sweep_fping_fastest", fping_fast, "hosts/s", 1.0, "fping -c1 -i 0")
    report("ping_sweep_pinger", pinger, "hosts/s", pinger / fping_fast, "fping -c1 -i 0")
    report("ping_sweep_pinger", pinger, "hosts/s", pinger / fping_default, "fping -c1 (defaults)")
    if published:
        rate = statistics.median(published)
        report("ping_sweep_pinger_publishing", rate, "hosts/s", rate / fping_fast, "fping -c1 -i 0")
    if ours6:
        v6_rate, v6_peer = statistics.median(ours6), statistics.median(fping6)
        report(
            "ping_sweep_pinger_ipv6", v6_rate, "probes/s", v6_rate / v6_peer, "fping -6 -c1 -i 0"
        )


if __name__ == "__main__":
    main()
