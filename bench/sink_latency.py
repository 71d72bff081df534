"""Event-to-queryable latency: from the producer's emit to the row being visible in ClickHouse.

A producer emits accounting records at a sustained rate (default 10,000 events/s for 20 s on
this 2-core machine; ``--rate 50000`` is the issue's figure) while ``filas sink run`` processes
(``--sinks N``, one consumer group) land them. The benchmark polls ClickHouse every
``--poll`` seconds for the highest offset per partition the table holds; a record is
queryable from the first poll that shows its (partition, offset). Latency = that poll's end
minus the record's emit time (both on this machine's clock), so it includes Kafka, the sink's
batching (``--linger`` 1 s by default), the INSERT and up to one poll interval; the figures are
an upper bound by at most ``--poll``.

Printed as ratios to the issue's goal (p99 < 5 s), with p50 alongside; the achieved produce
rate is printed too, since a producer that fell behind would flatter the sink.

Run: ``make bench-sink-latency`` (or ``python -m bench.sink_latency --rate 50000``).
"""

from __future__ import annotations

import argparse
import bisect
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import report, services
from bench.producer import sample_records
from bench.sink_throughput import clickhouse_of, delete_topics, sink_argv, sink_env
from consumers.clickhouse.client import ClickHouse, quote
from consumers.clickhouse.migrate import migrate
from consumers.clickhouse.sink import SinkConfig
from consumers.clickhouse.tables import build_tables
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.radius import ACCOUNTING
from filas.settings import Settings, TopicsSettings
from producers.sdk import Delivery, DeliveryFailure
from schemas.catalog import SchemaCatalog

GOAL_S = 5.0
PEER = "goal-5s"
REPO = Path(__file__).resolve().parents[1]


def start_sinks(
    count: int, env: dict[str, str], group: str, args: argparse.Namespace, log: Path
) -> list[subprocess.Popen[bytes]]:
    argv = sink_argv(group, args.batch_rows, args.linger)
    procs = []
    with log.open("ab") as out:
        for _ in range(count):
            procs.append(
                subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    return procs


def held(clickhouse: ClickHouse, table: str) -> dict[int, int]:
    rows = clickhouse.query(
        f"SELECT _partition, max(_offset) FROM {quote(table)} GROUP BY _partition"  # noqa: S608
    )
    return {int(p): int(o) for p, o in rows}


class Recorder:
    """(partition, offset, emit time) of every acknowledged record, from delivery callbacks."""

    def __init__(self) -> None:
        self.acked: list[tuple[int, int, float]] = []
        self.failed = 0

    def callback(self, emitted_at: float) -> Any:
        def on_delivery(ok: Delivery | None, failure: DeliveryFailure | None) -> None:
            if ok is not None:
                self.acked.append((ok.partition, ok.offset, emitted_at))
            else:
                self.failed += 1

        return on_delivery


def produce_at_rate(
    settings: Settings, catalog: Catalog, rate: float, seconds: float, recorder: Recorder
) -> float:
    """Emit at ``rate`` events/s for ``seconds``; returns the achieved rate."""
    templates = sample_records(10_000)
    sent = 0
    with build_producer(settings, catalog=catalog) as producer:
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            # At most 500 per turn, each turn stamped afresh: a producer that falls behind shows
            # as a lower achieved rate, not as latency charged to the sink.
            due = min(int(elapsed * rate) - sent, 500)
            now = time.time()
            for _ in range(due):
                producer.emit(
                    ACCOUNTING, templates[sent % len(templates)], on_delivery=recorder.callback(now)
                )
                sent += 1
            producer.poll(0)
            time.sleep(0.002)
        achieved = sent / (time.perf_counter() - start)
        producer.flush()
    return achieved


def latencies(
    acked: list[tuple[int, int, float]], snapshots: list[tuple[float, dict[int, int]]]
) -> tuple[list[float], int]:
    """Per record: first snapshot time whose partition top reaches its offset, minus emit."""
    tops: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for seen_at, snapshot in snapshots:
        for partition, top in snapshot.items():
            offsets, times = tops[partition]
            if not offsets or top > offsets[-1]:
                offsets.append(top)
                times.append(seen_at)
    found: list[float] = []
    missing = 0
    for partition, offset, emitted_at in acked:
        offsets, times = tops.get(partition, ([], []))
        i = bisect.bisect_left(offsets, offset)
        if i == len(offsets):
            missing += 1
        else:
            found.append(times[i] - emitted_at)
    return found, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=10_000, help="events/s produced")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sinks", type=int, default=1, help="sink processes in the group")
    parser.add_argument("--batch-rows", type=int, default=SinkConfig.batch_rows)
    parser.add_argument("--linger", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=0.1, help="ClickHouse poll interval, s")
    args = parser.parse_args()

    with services(registry=True, clickhouse=True) as base:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        database = f"bench_latency_{uuid.uuid4().hex[:6]}"
        ch_settings = clickhouse_of(base, database)
        settings = base.model_copy(
            update={"topics": TopicsSettings(prefix=prefix), "clickhouse": ch_settings}
        )
        catalog = Catalog.build(prefix)
        spec = catalog.resolve(ACCOUNTING)
        TopicAdmin(settings.kafka).apply(catalog.only(spec, catalog.dead_letter_for(spec)))
        table = build_tables(catalog, SchemaCatalog.load(), [ACCOUNTING.name])[spec.name]
        clickhouse = ClickHouse(ch_settings)
        clickhouse.ensure_database()
        migrate(clickhouse, [table])

        log = Path(".filas") / "bench" / f"sink-latency-{uuid.uuid4().hex[:6]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        sinks = start_sinks(args.sinks, sink_env(settings, ch_settings), f"{prefix}sink", args, log)
        try:
            # Warm-up: the group has joined and the table answers before measuring.
            warm = Recorder()
            produce_at_rate(settings, catalog, 200, 1.0, warm)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                top = held(clickhouse, table.name)
                if all(top.get(p, -1) >= o for p, o, _t in warm.acked):
                    break
                time.sleep(0.2)
            else:
                raise SystemExit(f"the sink did not land the warm-up records; see {log}")

            recorder = Recorder()
            snapshots: list[tuple[float, dict[int, int]]] = []
            achieved: list[float] = []
            producer = threading.Thread(
                target=lambda: achieved.append(
                    produce_at_rate(settings, catalog, args.rate, args.seconds, recorder)
                ),
                daemon=True,
            )
            producer.start()
            while producer.is_alive():
                snapshot = held(clickhouse, table.name)
                snapshots.append((time.time(), snapshot))
                time.sleep(args.poll)
            producer.join()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                snapshot = held(clickhouse, table.name)
                snapshots.append((time.time(), snapshot))
                if all(snapshot.get(p, -1) >= o for p, o, _t in recorder.acked):
                    break
                time.sleep(args.poll)
        finally:
            for proc in sinks:
                proc.send_signal(signal.SIGTERM)
            for proc in sinks:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            clickhouse.query(f"DROP DATABASE IF EXISTS {quote(database)}")
            clickhouse.close()
            delete_topics(settings, [spec.name, catalog.dead_letter_for(spec).name])

    found, missing = latencies(recorder.acked, snapshots)
    if missing or recorder.failed or len(found) < 100:
        raise SystemExit(
            f"{missing} records never became visible, {recorder.failed} failed to produce "
            f"({len(found)} measured); see {log}"
        )
    q = statistics.quantiles(found, n=100)
    print(
        f"{len(found)} records at {achieved[0]:,.0f} events/s (asked {args.rate:,.0f}) for "
        f"{args.seconds:.0f} s, {args.sinks} sink process(es), batches of {args.batch_rows} rows "
        f"or {args.linger} s, polled every {args.poll} s; max {max(found):.2f} s"
    )
    report("sink_event_to_queryable_p50", q[49], "s", q[49] / GOAL_S, PEER)
    report("sink_event_to_queryable_p99", q[98], "s", q[98] / GOAL_S, PEER)


if __name__ == "__main__":
    main()
