"""``filas status``: topics, consumer groups, lag, rates and the bottleneck findings."""

from __future__ import annotations

import json
import time

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from filas.monitoring.collector import LagCollector
from filas.monitoring.report import document
from filas.monitoring.rules import Finding, evaluate
from filas.monitoring.samples import Snapshot, Status, compute_status
from filas.settings import Settings


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}/s"


def _render(status: Status, findings: list[Finding]) -> Group:
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
        found.add_row(f"[red]{f.rule}[/red]", f.group, f.topic, evidence, f.fix)
    if not findings:
        found.add_row("[green]none[/green]", "", "", "", "")
    return Group(topics, groups, found)


class _Peaks:
    """Highest consume rate seen per (group, topic) in this run: the rules' "at its max"."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], float] = {}

    def update(self, status: Status) -> None:
        for g in status.groups:
            if g.consume_rate is not None:
                key = (g.group, g.topic)
                self.values[key] = max(self.values.get(key, 0.0), g.consume_rate)


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

    Covers topics under FILAS_TOPICS__PREFIX (all non-internal topics when empty).
    """
    collector = LagCollector(settings.kafka, topic_prefix=settings.topics.prefix)
    peaks = _Peaks()
    previous: Snapshot = collector.sample()

    def step() -> tuple[Status, list[Finding]]:
        nonlocal previous
        time.sleep(interval)
        current = collector.sample()
        result = compute_status(previous, current)
        previous = current
        # Findings judge against the peak before this sample, then the peak learns from it.
        findings = evaluate(result.groups, peaks.values)
        peaks.update(result)
        return result, findings

    if once:
        result, findings = step()
        if as_json:
            click.echo(json.dumps(document(result, findings)))
        else:
            Console(width=200).print(_render(result, findings))
        return
    if as_json:  # one JSON document per line, for scripts that follow the stream
        while True:
            result, findings = step()
            click.echo(json.dumps(document(result, findings)))
    with Live(_render(compute_status(None, previous), []), console=Console(width=200)) as live:
        while True:
            live.update(_render(*step()))


COMMANDS: list[click.Command] = [status]
