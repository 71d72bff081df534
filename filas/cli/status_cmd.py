"""``filas status``: topics, consumer groups, lag, rates and the bottleneck findings."""

from __future__ import annotations

import json
import time

import click
from prometheus_client import REGISTRY
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from filas.metrics import serve_metrics
from filas.monitoring.collector import LagCollector
from filas.monitoring.report import components_document, document
from filas.monitoring.rules import Finding
from filas.monitoring.samples import Status
from filas.monitoring.service import Monitor, MonitorPass
from filas.settings import Settings


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}/s"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _processes(result: MonitorPass) -> Table:
    """Scraped processes: how busy, mean processing latency, where the time goes."""
    table = Table("component", "busy", "processed", "mean latency", "waits on", title="processes")
    for row in components_document(result.components, result.window_s):
        waits = ", ".join(f"{dep} {_pct(d['share'])}" for dep, d in row["dependencies"].items())
        latency = row["mean_latency_ms"]
        table.add_row(
            row["component"],
            _pct(row["busy"]),
            f"{row['processed']:,.0f}",
            "-" if latency is None else f"{latency:,.2f} ms",
            waits or "-",
        )
    return table


def _render(status: Status, findings: list[Finding], result: MonitorPass | None = None) -> Group:
    topics = Table("topic", "partitions", "end offset", "produce", title="topics")
    for t in status.topics:
        topics.add_row(t.topic, str(t.partitions), f"{t.end_offset:,}", _rate(t.produce_rate))
    groups = Table(
        "group", "topic", "state", "members", "lag", "lag rate", "consume", title="consumer groups"
    )
    for g in status.groups:
        groups.add_row(
            g.group,
            g.topic,
            g.state,
            f"{g.members}/{g.partitions}",
            f"{g.lag:,}",
            _rate(g.lag_rate),
            _rate(g.consume_rate),
        )
    found = Table("rule", "group", "topic", "evidence", "fix", title="bottlenecks")
    for f in findings:
        evidence = ", ".join(
            f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in f.evidence.items()
        )
        topic = f.topic or (f"waits on {f.dependency}" if f.dependency else "")
        found.add_row(f"[red]{f.rule}[/red]", f.group, topic, evidence, f.fix)
    if not findings:
        found.add_row("[green]none[/green]", "", "", "", "")
    if result is not None and result.components:
        return Group(topics, groups, _processes(result), found)
    return Group(topics, groups, found)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON documents instead of tables.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between samples; rates are measured over it.",
)
@click.option("--once", is_flag=True, help="Take two samples --interval apart, print, exit.")
@click.pass_obj
def status(settings: Settings, as_json: bool, interval: float, once: bool) -> None:
    """Lag per consumer group and topic, produce/consume rates, and where the queue backs up.

    Covers topics under FILAS_TOPICS__PREFIX (all non-internal topics when empty); with
    FILAS_MONITORING__SCRAPE_URLS, also names a dependency that dominates a process's latency.
    """
    monitor = Monitor(
        LagCollector(settings.kafka, topic_prefix=settings.topics.prefix),
        scrape_urls=settings.monitoring.scrape_urls,
    )
    if settings.metrics.port is not None:
        REGISTRY.register(monitor.metrics)
        serve_metrics(settings.metrics)
    first = monitor.run_pass()

    def step() -> MonitorPass:
        time.sleep(interval)
        return monitor.run_pass()

    def as_document(result: MonitorPass) -> str:
        return json.dumps(
            document(result.status, list(result.findings), result.components, result.window_s)
        )

    if once:
        result = step()
        if as_json:
            click.echo(as_document(result))
        else:
            Console(width=200).print(_render(result.status, list(result.findings), result))
        return
    if as_json:  # one JSON document per line, for scripts that follow the stream
        while True:
            click.echo(as_document(step()))
    with Live(_render(first.status, []), console=Console(width=200)) as live:
        while True:
            result = step()
            live.update(_render(result.status, list(result.findings), result))


COMMANDS: list[click.Command] = [status]
