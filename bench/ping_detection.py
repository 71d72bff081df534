"""Detection time: a namespace host goes down -> its alert on ``net.alerts``, p50/p99.

``--hosts`` hosts in a network namespace (``producers.pinger.netns``; needs root), each its own
CRITICAL device, probed every ``--interval`` s (1 echo, ``--timeout`` s) by a ``PingerService``
and judged by an ``AlertService`` (down after ``--down-after`` failed rounds), both on Kafka +
registry from ``bench.common.services``. Each of ``--trials`` trials removes every host's address
at once, times until each host's ``open`` alert is read back from ``net.alerts``, then restores
them and waits for the resolves. The peer is the issue's budget: (N + 1) x interval.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench.common import report, services
from bench.ping_sweep import drop_topics
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog
from filas.catalog.ixc_state import DEVICES
from filas.catalog.network import ALERTS, PING_RESULTS, RESPONSES
from filas.settings import PingClassSettings, Settings, TopicsSettings
from producers.envelope import envelope
from producers.pinger.netns import NetNs
from producers.pinger.service import PingerService
from streams.network.service import AlertService


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Alerts:
    """Reads net.alerts from its current end; ``wait`` for an action on a set of devices."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.spec = catalog.resolve(ALERTS)
        self.decode = build_serdes(settings)(self.spec).deserialize
        self.consumer = Consumer(
            dict(settings.kafka.client_config())
            | {"group.id": f"bench-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
        meta = self.consumer.list_topics(self.spec.name, timeout=10).topics[self.spec.name]
        self.consumer.assign(
            [TopicPartition(self.spec.name, p, OFFSET_END) for p in meta.partitions]
        )

    def wait(self, action: str, devices: set[str], timeout_s: float) -> dict[str, float]:
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while devices - set(seen) and time.monotonic() < deadline:
            for msg in self.consumer.consume(num_messages=500, timeout=0.05):
                if msg.error() or msg.value() is None:
                    continue
                record = self.decode(msg.value())
                if record["action"] == action and record["root_device_id"] in devices:
                    seen.setdefault(record["root_device_id"], time.monotonic())
        return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=0.3)
    parser.add_argument("--down-after", type=int, default=3)
    args = parser.parse_args()
    budget = (args.down_after + 1) * args.interval
    with services() as base, NetNs(extra=args.hosts) as net:
        prefix = f"bench{uuid.uuid4().hex[:8]}-"
        catalog = Catalog.build(prefix)
        specs = [catalog.resolve(s) for s in (DEVICES, PING_RESULTS, ALERTS, RESPONSES)]
        specs += [catalog.dead_letter_for(s) for s in (DEVICES, PING_RESULTS)]
        TopicAdmin(base.kafka).apply(catalog.only(*specs))
        probe = PingClassSettings(
            interval_s=args.interval, count=1, probe_interval_s=0, timeout_s=args.timeout
        )
        ping = base.ping.model_copy(
            update={
                "critical": probe,
                "down_after_rounds": args.down_after,
                "up_after_rounds": 2,
                "pinger_instance": "bench",
            }
        )
        settings = base.model_copy(update={"topics": TopicsSettings(prefix=prefix), "ping": ping})
        devices = {f"host-{i}": addr for i, addr in enumerate(net.hosts)}
        producer = build_producer(settings, catalog=catalog)
        for device_id, addr in devices.items():
            record: dict[str, Any] = {
                "envelope": envelope("bench"),
                "device_id": device_id,
                "name": device_id,
                "device_type": "OLT",
                "ip": addr,
                "ping_class": "CRITICAL",
            }
            producer.emit(DEVICES, record)
        producer.flush(30)

        alerting = AlertService(settings, catalog=catalog)
        alerting.start()
        alert_thread = threading.Thread(target=alerting.run, daemon=True)
        alert_thread.start()
        pinger = PingerService(settings, catalog=catalog)
        loop = asyncio.new_event_loop()
        pinger_thread = threading.Thread(
            target=loop.run_until_complete, args=(pinger.run(),), daemon=True
        )
        pinger_thread.start()
        reader = Alerts(settings, catalog)
        latencies: list[float] = []
        missed = 0
        try:
            time.sleep(max(3.0, 4 * args.interval))  # every host up (M good rounds)
            for trial in range(args.trials):
                for addr in devices.values():
                    net.host_down(addr)
                down_at = time.monotonic()
                opened = reader.wait("open", set(devices), timeout_s=budget * 5)
                missed += len(devices) - len(opened)
                latencies += [t - down_at for t in opened.values()]
                for addr in devices.values():
                    net.host_up(addr)
                reader.wait("resolve", set(opened), timeout_s=budget * 5)
                print(f"trial {trial}: max {max(t - down_at for t in opened.values()):.2f}s")
        finally:
            loop.call_soon_threadsafe(pinger.stop)
            pinger_thread.join(20)
            loop.close()
            alerting.stop()
            alert_thread.join(20)
            alerting.close()
            reader.consumer.close()
            drop_topics(settings, [s.name for s in specs])
    if not latencies:
        raise SystemExit("no alert was detected")
    p50 = statistics.median(latencies)
    p99 = percentile(latencies, 0.99)
    print(f"{len(latencies)} detections, {missed} missed, budget {budget:.2f}s")
    peer = f"budget (N+1) x interval = {budget:.2f} s"
    report("ping_detection_p50", p50, "s", p50 / budget, peer)
    report("ping_detection_p99", p99, "s", p99 / budget, peer)


if __name__ == "__main__":
    main()
