"""Sink throughput: rows/s from Kafka into ClickHouse through the Filas sink vs clickhouse-client.

Same run, same server, same rows: the sink consumes Avro accounting records from a topic,
decodes them (a batch at a time in native code, decision 0120) and inserts columns in batches
(the sink's default, 100k rows or 1 s; ``--batch-rows``) over the native protocol, committing
offsets after each INSERT. The peer is ``clickhouse-client`` inserting exactly the rows
the sink wrote (exported as TSV from the sink's table) into an identical table: ClickHouse's own
bulk path with no Kafka, no Avro and no Python. The sink's time runs from its first record read to
its last acknowledged INSERT (group join excluded); the peer's includes the client's start-up.

``--processes 1,2`` also times that many ``filas sink run`` processes in one consumer
group, measured from ClickHouse's side (first rows visible to all rows visible).

Run: ``make bench-sink-throughput`` (or ``python -m bench.sink_throughput --records N``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench.common import report, services
from bench.producer import sample_records
from consumers.clickhouse import native_block
from consumers.clickhouse.app import build_sink
from consumers.clickhouse.client import ClickHouse, quote
from consumers.clickhouse.migrate import migrate
from consumers.clickhouse.sink import SinkConfig
from consumers.clickhouse.tables import Table, build_tables
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.radius import ACCOUNTING
from filas.settings import ClickHouseSettings, Settings, TopicsSettings
from schemas.catalog import SchemaCatalog

PEER = "clickhouse-client-TSV"


def delete_topics(settings: Settings, names: list[str]) -> None:
    """The run's throwaway topics: left behind, they pile up on a shared broker."""
    admin = AdminClient(settings.kafka.client_config())
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result()


def clickhouse_of(settings: Settings, database: str) -> ClickHouseSettings:
    if os.environ.get("FILAS_KAFKA__BOOTSTRAP_SERVERS"):
        base = settings.clickhouse
    else:  # bench.common started a private ClickHouse on these ports
        base = ClickHouseSettings(
            port=settings.local.clickhouse_tcp_port, http_port=settings.local.clickhouse_http_port
        )
    # A throwaway database: the sink runs as the administrator (a sink user is confined to the
    # Filas database, docs/clickhouse.md#access).
    return base.model_copy(update={"database": database, "sink_user": None})


def sink_env(settings: Settings, clickhouse: ClickHouseSettings) -> dict[str, str]:
    """Environment for a ``filas sink run`` child: these settings, nothing from the parent's."""
    kafka = settings.kafka
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILAS_")}
    env |= {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": kafka.security_protocol.value,
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_CLICKHOUSE__HOST": clickhouse.host,
        "FILAS_CLICKHOUSE__PORT": str(clickhouse.port),
        "FILAS_CLICKHOUSE__DATABASE": clickhouse.database,
        "FILAS_CLICKHOUSE__USER": clickhouse.user,
        "FILAS_CLICKHOUSE__PASSWORD": clickhouse.password.get_secret_value(),
        "FILAS_TOPICS__PREFIX": settings.topics.prefix,
    }
    if kafka.sasl_username is not None and kafka.sasl_password is not None:
        env |= {
            "FILAS_KAFKA__SASL_MECHANISM": kafka.sasl_mechanism,
            "FILAS_KAFKA__SASL_USERNAME": kafka.sasl_username,
            "FILAS_KAFKA__SASL_PASSWORD": kafka.sasl_password.get_secret_value(),
        }
    return env


def sink_argv(group: str, batch_rows: int, linger_s: float, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "filas.cli.main",
        "sink",
        "run",
        "--topics",
        ACCOUNTING.name,
        "--group",
        group,
        "--batch-rows",
        str(batch_rows),
        "--linger",
        str(linger_s),
        "--skip-migrate",
        *extra,
    ]


def run_sink_processes(
    count: int,
    settings: Settings,
    table: Table,
    clickhouse: ClickHouse,
    expected: int,
    batch_rows: int = SinkConfig.batch_rows,
) -> float:
    """``count`` sink processes in one group; rows/s from ClickHouse's side (first rows seen
    to all rows seen, polled every 20 ms), so group joins and process start-up are excluded."""
    clickhouse.query(f"DROP TABLE IF EXISTS {quote(table.name)}")
    migrate(clickhouse, [table])
    argv = sink_argv(f"bench-sink-{uuid.uuid4().hex[:8]}", batch_rows, 1.0, "--idle-exit", "3")
    env = sink_env(settings, settings.clickhouse)
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    count_sql = f"SELECT count() FROM {quote(table.name)}"  # noqa: S608
    first: tuple[float, int] | None = None
    landed = 0
    deadline = time.monotonic() + 300
    try:
        while landed < expected and time.monotonic() < deadline:
            landed = int(clickhouse.query(count_sql)[0][0])
            now = time.perf_counter()
            if first is None and landed:
                first = (now, landed)
            if landed < expected:
                time.sleep(0.02)
        done = time.perf_counter()
    finally:
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            if proc.returncode:
                raise RuntimeError(f"sink process failed: {err.decode(errors='replace')[-2000:]}")
    if landed != expected or first is None or done <= first[0]:
        raise RuntimeError(f"{count} sink processes landed {landed} rows, expected {expected}")
    return (expected - first[1]) / (done - first[0])


def client_argv(clickhouse: ClickHouseSettings) -> list[str]:
    binary = shutil.which("clickhouse-client") or "/usr/bin/clickhouse-client"
    argv = [
        binary,
        f"--host={clickhouse.host}",
        f"--port={clickhouse.port}",
        f"--user={clickhouse.user}",
        f"--database={clickhouse.database}",
    ]
    password = clickhouse.password.get_secret_value()
    if password:
        argv.append(f"--password={password}")
    return argv


def run_sink(
    settings: Settings,
    table: Table,
    clickhouse: ClickHouse,
    expected: int,
    batch_rows: int = SinkConfig.batch_rows,
    cpu: list[float] | None = None,
) -> float:
    """Rows/s of one in-process sink; appends its process CPU seconds per row to ``cpu``."""
    clickhouse.query(f"DROP TABLE IF EXISTS {quote(table.name)}")
    migrate(clickhouse, [table])
    sink = build_sink(
        settings,
        topics=[ACCOUNTING.name],
        group_id=f"bench-sink-{uuid.uuid4().hex[:8]}",
        config=SinkConfig(batch_rows=batch_rows, linger_s=1.0),
    )
    started = time.process_time()
    stats = sink.run(idle_exit_s=3)
    if cpu is not None:
        cpu.append((time.process_time() - started) / expected)
    if stats.total_rows != expected:
        raise RuntimeError(f"sink landed {stats.total_rows} rows, expected {expected}")
    if stats.first_record_at is None or stats.last_insert_at is None:
        raise RuntimeError("the sink recorded no timings")
    return expected / (stats.last_insert_at - stats.first_record_at)


def run_client(
    clickhouse_settings: ClickHouseSettings,
    clickhouse: ClickHouse,
    table: Table,
    tsv: Path,
    expected: int,
) -> float:
    peer = f"{table.name}_peer"
    clickhouse.query(f"DROP TABLE IF EXISTS {quote(peer)}")
    clickhouse.query(table.create_sql().replace(quote(table.name), quote(peer), 1))
    columns = ", ".join(quote(c) for c in table.insert_columns)
    with tsv.open("rb") as data:
        start = time.perf_counter()
        subprocess.run(
            [
                *client_argv(clickhouse_settings),
                f"--query=INSERT INTO {quote(peer)} ({columns}) FORMAT TabSeparated",
            ],
            stdin=data,
            check=True,
            timeout=600,
        )
        elapsed = time.perf_counter() - start
    landed = clickhouse.query(f"SELECT count() FROM {quote(peer)}")[0][0]  # noqa: S608
    if landed != expected:
        raise RuntimeError(f"clickhouse-client landed {landed} rows, expected {expected}")
    return expected / elapsed


def ab_run(
    into: tuple[list[float], list[float]],
    settings: Settings,
    table: Table,
    clickhouse: ClickHouse,
    args: argparse.Namespace,
) -> None:
    """One in-process run with the driver's own encoding (every Native block 'not covered')."""

    def driver_only(*_args: object, **_kwargs: object) -> int:
        raise native_block.NotCovered("A/B: the driver's encoding")

    native_insert = native_block.insert
    native_block.insert = driver_only
    try:
        into[0].append(
            run_sink(settings, table, clickhouse, args.records, args.batch_rows, into[1])
        )
    finally:
        native_block.insert = native_insert
    print(f"A/B driver encoding: {into[0][-1]:,.0f} rows/s, {into[1][-1] * 1e6:.2f} us CPU/row")


def export_tsv(clickhouse_settings: ClickHouseSettings, table: Table, path: Path) -> None:
    columns = ", ".join(quote(c) for c in table.insert_columns)
    with path.open("wb") as out:
        subprocess.run(
            [
                *client_argv(clickhouse_settings),
                f"--query=SELECT {columns} FROM {quote(table.name)} FORMAT TabSeparated",  # noqa: S608
            ],
            stdout=out,
            check=True,
            timeout=600,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--processes",
        default="",
        help="also time this many 'filas sink run' processes in one group (comma list; '' none)",
    )
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=SinkConfig.batch_rows,
        help="rows per INSERT (the sink's default; each INSERT writes a part, decision 0121)",
    )
    parser.add_argument(
        "--ab",
        action="store_true",
        help="per run, also the driver's own columnar INSERT encoding instead of the Native "
        "block written from the columns (native_block.py, decision 0122), alternating order",
    )
    args = parser.parse_args()

    with services(registry=True, clickhouse=True) as base:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        database = f"bench_sink_{uuid.uuid4().hex[:6]}"
        ch_settings = clickhouse_of(base, database)
        settings = base.model_copy(
            update={"topics": TopicsSettings(prefix=prefix), "clickhouse": ch_settings}
        )
        catalog = Catalog.build(prefix)
        spec = catalog.resolve(ACCOUNTING)
        dlq = catalog.dead_letter_for(spec)
        TopicAdmin(settings.kafka).apply(catalog.only(spec, dlq))
        records = sample_records(10_000)
        with build_producer(settings, catalog=catalog) as producer:
            for i in range(args.records):
                producer.emit(ACCOUNTING, records[i % len(records)])
        print(f"{args.records} accounting records on {spec.name} ({spec.partitions} partitions)")

        table = build_tables(catalog, SchemaCatalog.load(), [ACCOUNTING.name])[spec.name]
        clickhouse = ClickHouse(ch_settings)
        clickhouse.ensure_database()
        counts = [int(n) for n in args.processes.split(",") if n.strip()]
        sink_rates, client_rates = [], []
        cpu: list[float] = []
        driver_ab: tuple[list[float], list[float]] = ([], [])
        process_rates: dict[int, list[float]] = {n: [] for n in counts}
        with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
            tsv = Path(tmp) / "rows.tsv"
            for run in range(args.runs):
                if args.ab and run % 2:
                    ab_run(driver_ab, settings, table, clickhouse, args)
                sink_rates.append(
                    run_sink(settings, table, clickhouse, args.records, args.batch_rows, cpu)
                )
                if args.ab and not run % 2:
                    ab_run(driver_ab, settings, table, clickhouse, args)
                if run == 0:
                    export_tsv(ch_settings, table, tsv)
                    print(f"peer input: {tsv.stat().st_size / 1e6:.1f} MB of TSV")
                for n in counts:
                    process_rates[n].append(
                        run_sink_processes(
                            n, settings, table, clickhouse, args.records, args.batch_rows
                        )
                    )
                client_rates.append(run_client(ch_settings, clickhouse, table, tsv, args.records))
                procs = ", ".join(f"{n} process(es) {r[-1]:,.0f}" for n, r in process_rates.items())
                print(
                    f"run {run + 1}: sink {sink_rates[-1]:,.0f} rows/s "
                    f"({cpu[-1] * 1e6:.2f} us CPU/row) "
                    f"({procs or 'in-process only'}), "
                    f"clickhouse-client {client_rates[-1]:,.0f} rows/s"
                )
        clickhouse.query(f"DROP DATABASE IF EXISTS {quote(database)}")
        clickhouse.close()
        delete_topics(settings, [spec.name, dlq.name])

    if args.ab:
        print(
            f"A/B: driver encoding {statistics.median(driver_ab[0]):,.0f} rows/s, "
            f"{statistics.median(driver_ab[1]) * 1e6:.2f} us CPU/row "
            f"(runs {', '.join(f'{r:,.0f}' for r in driver_ab[0])}); Native block "
            f"{statistics.median(sink_rates):,.0f} rows/s, {statistics.median(cpu) * 1e6:.2f} us "
            f"CPU/row (runs {', '.join(f'{r:,.0f}' for r in sink_rates)})"
        )
    client_median, sink_median = statistics.median(client_rates), statistics.median(sink_rates)
    report("sink_clickhouse_client_tsv", client_median, "rows/s", 1.0, PEER)
    report("sink_kafka_to_clickhouse", sink_median, "rows/s", sink_median / client_median, PEER)
    for n, rates in process_rates.items():
        median = statistics.median(rates)
        report(f"sink_kafka_to_clickhouse_{n}proc", median, "rows/s", median / client_median, PEER)


if __name__ == "__main__":
    main()
