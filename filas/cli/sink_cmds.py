"""``filas sink run`` and ``filas clickhouse migrate``: the ClickHouse analytics sink."""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType

import click

from consumers.clickhouse import analytics
from consumers.clickhouse.app import build_sink, run_migrations
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import DEFAULT_GROUP, SinkConfig
from filas.catalog import Catalog
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=float(text[:-1]) * _UNITS[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{text!r}: use a number and s/m/h/d, e.g. 90m") from None


def _value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


@clickhouse.command("queries")
def queries_cmd() -> None:
    """List the analyst queries (docs/analytics.md) and their parameters."""
    for query in analytics.queries().values():
        click.echo(f"{query.name:<28} {', '.join(query.params):<30} {query.title}")


@clickhouse.command("query")
@click.argument("name")
@click.option("--since", default="1h", show_default=True, help="Window: the last 30m, 2h, 7d...")
@click.option("--param", "-p", "params", multiple=True, help="Another parameter, k=v.")
@click.option("--analyst", is_flag=True, help="Connect as the read-only analyst user.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.pass_obj
def query_cmd(
    settings: Settings,
    name: str,
    since: str,
    params: tuple[str, ...],
    analyst: bool,
    as_json: bool,
) -> None:
    """Run an analyst query (see 'filas clickhouse queries') over [now - since, now)."""
    end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    values: dict[str, object] = {"start": end - _duration(since), "end": end}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: use k=v")
        values[key] = _value(value)
    target = settings.clickhouse.as_analyst() if analyst else settings.clickhouse
    client = ClickHouse(target)
    try:
        result = analytics.run(client, name, Catalog.build(settings.topics.prefix), values)
    finally:
        client.close()
    if as_json:
        for record in result.dicts():
            click.echo(json.dumps(record, default=str, ensure_ascii=False))
        return
    click.echo("\t".join(result.columns))
    for row in result.rows:
        click.echo("\t".join("" if v is None else str(v) for v in row))


@click.group("sink")
def sink() -> None:
    """Sinks that land the queues in ClickHouse."""


@sink.command("run")
@click.option("--topics", "topics", multiple=True, help="Catalog topic (repeatable); default all.")
@click.option("--group", "group_id", default=DEFAULT_GROUP, show_default=True)
@click.option("--batch-rows", type=int, default=SinkConfig.batch_rows, show_default=True)
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
