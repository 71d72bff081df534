"""Alerting throughput: ping results/s judged by one alerting worker vs a plain consume loop.

A ``--devices`` topology (POP -> OLT -> ONU, 100 ONUs per OLT) goes to ``ixc.devices``; then
``--rounds`` rounds of one PingResult per device to ``net.ping-results`` (one OLT and its ONUs
down from the second round, so alerts and responses are produced too). Measured over the same
topic, each with a fresh consumer group, from the first record to the last:
- the peer: a plain confluent-kafka loop (``consume(5000)``, no decoding);
- ``AlertService.run_once`` (the code of ``filas alerts serve``): decode, engine, drain, produce
  alerts/responses and wait for their acks, commit.
Issue 4 goal: 20,000 results/s per worker (100k devices, one round per 5 s). Also printed:
results per CPU-second of the worker process (what a dedicated core does; on a shared machine
the wall-clock rate is whatever share the scheduler gives).
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer

from bench.common import report, services
from bench.ping_sweep import drop_topics
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog
from filas.catalog.ixc_state import DEVICES
from filas.catalog.network import ALERTS, PING_RESULTS, RESPONSES
from filas.settings import Settings, TopicsSettings
from producers.envelope import envelope
from streams.network.service import AlertService

PEER = "plain confluent-kafka consume loop"
GOAL = 20_000


def topology(n: int) -> list[dict[str, Any]]:
    def dev(i: str, kind: str, parent: str | None, logins: list[str]) -> dict[str, Any]:
        return {
            "envelope": envelope("bench"),
            "device_id": i,
            "name": i.upper(),
            "device_type": kind,
            "ip": "127.0.0.1",
            "parent_device_id": parent,
            "pop_id": "1",
            "linked_login_ids": logins,
            "ping_class": "SUBSCRIBER" if kind == "ONU" else "CRITICAL",
        }

    out = [dev("pop-0", "POP", None, [])]
    olts = max(1, n // 101)
    for o in range(olts):
        out.append(dev(f"olt-{o}", "OLT", "pop-0", []))
    for i in range(n - len(out)):
        out.append(dev(f"onu-{i}", "ONU", f"olt-{i % olts}", [f"L{i}"]))
    return out


def produce_results(settings: Settings, catalog: Catalog, devices: list[str], rounds: int) -> int:
    producer = build_producer(settings, catalog=catalog)
    start = datetime.now(UTC) - timedelta(seconds=rounds * 5)
    olts = sum(1 for d in devices if d.startswith("olt-"))
    # olt-0 dies with every ONU behind it; besides, one ONU in 101 dies on its own.
    dead = {"olt-0"} | {
        d
        for i, d in enumerate(devices)
        if d.startswith("onu-") and (i % 101 == 2 or int(d[4:]) % olts == 0)
    }
    n = 0
    for r in range(rounds):
        probed_at = start + timedelta(seconds=5 * r)
        env = envelope("bench", occurred_at=probed_at)
        for d in devices:
            down = r >= 1 and d in dead
            producer.emit(
                PING_RESULTS,
                {
                    "envelope": env,
                    "device_id": d,
                    "target_ip": "127.0.0.1",
                    "probes_sent": 3,
                    "probes_received": 0 if down else 3,
                    "loss_ratio": 1.0 if down else 0.0,
                    "rtt_min_ms": None if down else 0.5,
                    "rtt_avg_ms": None if down else 0.7,
                    "rtt_max_ms": None if down else 0.9,
                    "jitter_ms": None if down else 0.1,
                    "probed_at": probed_at,
                    "pinger_instance": "bench",
                },
            )
            n += 1
    producer.flush(120)
    return n


def plain_rate(settings: Settings, topic: str, total: int) -> float:
    consumer = Consumer(
        dict(settings.kafka.client_config())
        | {
            "group.id": f"bench-plain-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got, first = 0, 0.0
    deadline = time.monotonic() + 300
    while got < total and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=5000, timeout=0.5)
        if batch and not first:
            first = time.perf_counter()
        got += sum(1 for m in batch if not m.error())
    elapsed = time.perf_counter() - first
    consumer.close()
    return got / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with services() as base:
        prefix = f"bench{uuid.uuid4().hex[:8]}-"
        catalog = Catalog.build(prefix)
        specs = [catalog.resolve(s) for s in (DEVICES, PING_RESULTS, ALERTS, RESPONSES)]
        specs += [catalog.dead_letter_for(PING_RESULTS)]
        TopicAdmin(base.kafka).apply(catalog.only(*specs))
        ping = base.ping.model_copy(update={"down_after_rounds": 3, "alerts_group_id": "bench"})
        settings = base.model_copy(update={"topics": TopicsSettings(prefix=prefix), "ping": ping})
        devices = topology(args.devices)
        producer = build_producer(settings, catalog=catalog)
        for d in devices:
            producer.emit(DEVICES, d)
        producer.flush(120)
        t = time.perf_counter()
        total = produce_results(settings, catalog, [d["device_id"] for d in devices], args.rounds)
        print(f"{total:,} ping results produced in {time.perf_counter() - t:.1f}s", flush=True)

        plain = plain_rate(settings, catalog.resolve(PING_RESULTS).name, total)
        print(f"plain consume loop: {plain:,.0f} records/s", flush=True)

        service = AlertService(settings, catalog=catalog, serdes=build_serdes(settings))
        service.start(timeout_s=120)
        first = 0.0
        cpu = time.process_time()
        deadline = time.monotonic() + 600
        while service.results_in < total and time.monotonic() < deadline:
            consumed = service.run_once(max_messages=5000, timeout_s=0.5)
            if consumed and not first:
                first = time.perf_counter() - 1e-9
        elapsed = time.perf_counter() - first
        cpu = time.process_time() - cpu
        rate = service.results_in / elapsed
        print(
            f"alerting: {service.results_in:,} results in {elapsed:.1f}s, "
            f"{service.alerts_out} alert events, {service.responses_out} responses, "
            f"{len(service.engine.alerts)} open; {1e6 * cpu / service.results_in:.1f} us of CPU "
            f"per result (this process, all threads)",
            flush=True,
        )
        service.close()
        # Bench topics hold ~50 MB per run: drop them rather than leave them on a shared cluster.
        drop_topics(settings, [s.name for s in specs])
        report("ping_alerting_plain_consume", plain, "records/s", 1.0, PEER)
        report("ping_alerting_worker", rate, "results/s", rate / plain, PEER)
        report("ping_alerting_worker", rate, "results/s", rate / GOAL, "issue 4 goal 20000/s")
        # On a machine shared with other work the wall-clock rate is what the scheduler gives;
        # results per CPU-second is what one dedicated core would do.
        per_cpu = service.results_in / cpu
        report("ping_alerting_worker_per_cpu_second", per_cpu, "results/s", per_cpu / GOAL, "goal")


if __name__ == "__main__":
    main()
