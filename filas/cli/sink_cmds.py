"""``filas sink run`` and ``filas clickhouse migrate``: the ClickHouse analytics sink."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from consumers.clickhouse.app import build_sink, run_migrations
from consumers.clickhouse.sink import DEFAULT_GROUP, SinkConfig
from filas.cli.service_logging import service_logging
from filas.metrics import serve_metrics
from filas.settings import Settings


@click.group("clickhouse")
def clickhouse() -> None:
    """ClickHouse tables of the analytics sink."""


@clickhouse.command("migrate")
@click.option("--topics", "topics", multiple=True, help="Catalog topic (repeatable); default all.")
@click.pass_obj
def migrate_cmd(settings: Settings, topics: tuple[str, ...]) -> None:
    """Create missing tables and add columns for new schema fields (idempotent, recorded)."""
    report = run_migrations(settings, topics)
    for table in report.created:
        click.echo(f"created  {table}")
    for table, column in report.added_columns:
        click.echo(f"added    {table}.{column}")
    for table, column, have, want in report.type_mismatches:
        click.echo(f"MISMATCH {table}.{column}: table has {have}, schema maps to {want}", err=True)
    click.echo(
        f"{len(report.created)} created, {len(report.added_columns)} columns added, "
        f"{len(report.unchanged)} unchanged"
    )
    if report.type_mismatches:
        raise SystemExit(1)


@click.group("sink")
def sink() -> None:
    """Sinks that land the queues in ClickHouse."""


@sink.command("run")
@click.option("--topics", "topics", multiple=True, help="Catalog topic (repeatable); default all.")
@click.option("--group", "group_id", default=DEFAULT_GROUP, show_default=True)
@click.option("--batch-rows", type=int, default=10_000, show_default=True)
@click.option("--linger", "linger_s", type=float, default=1.0, show_default=True)
@click.option(
    "--idle-exit",
    "idle_exit_s",
    type=float,
    default=None,
    help="Stop after this many seconds without a record (default: run until SIGTERM).",
)
@click.option("--skip-migrate", is_flag=True, help="Do not create/extend tables at start.")
@click.pass_obj
def run(
    settings: Settings,
    topics: tuple[str, ...],
    group_id: str,
    batch_rows: int,
    linger_s: float,
    idle_exit_s: float | None,
    skip_migrate: bool,
) -> None:
    """Consume the topics and batch-insert their events into ClickHouse, one table per topic."""
    with service_logging(settings, "clickhouse-sink"):
        serve_metrics(settings.metrics)
        if not skip_migrate:
            run_migrations(settings, topics)
        sink_ = build_sink(
            settings,
            topics=topics,
            group_id=group_id,
            config=SinkConfig(batch_rows=batch_rows, linger_s=linger_s),
        )
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        stats = sink_.run(stop, idle_exit_s=idle_exit_s)
    for topic, rows in sorted(stats.rows.items()):
        click.echo(f"{topic}: {rows} rows")
    click.echo(
        f"{stats.total_rows} rows in {stats.batches} batches, {stats.dead_letters} dead letters, "
        f"{stats.retries} retries"
    )


COMMANDS: list[click.Command] = [sink, clickhouse]
