"""``filas topics apply|list|plan|render``: the topic catalog against the live cluster."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from filas.admin.topic_plan import Action
from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog
from filas.settings import Settings

_STYLE = {
    Action.CREATE: "green",
    Action.ADD_PARTITIONS: "yellow",
    Action.UPDATE_CONFIG: "yellow",
    Action.REFUSED: "red",
    Action.IN_SYNC: "dim",
}


def _human_bytes(n: int) -> str:
    if n < 0:
        return "unbounded"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{n} B"


@click.group("topics")
def topics() -> None:
    """Create, update and inspect the topics of the catalog."""


@topics.command("apply")
@click.option("--dry-run", is_flag=True, help="Show the plan without changing the cluster.")
@click.pass_obj
def apply(settings: Settings, dry_run: bool) -> None:
    """Create missing topics, add partitions and update configs, idempotently.

    Never shrinks partitions or changes replication; such drift is reported and exits 1.
    """
    catalog = Catalog.build(settings.topics.prefix)
    changes = TopicAdmin(settings.kafka).apply(catalog, dry_run=dry_run)
    console = Console(width=200)
    for change in changes:
        style = _STYLE[change.action]
        console.print(
            f"[{style}]{change.action.value:15}[/{style}] {change.topic}: {change.detail}"
        )
    counts = {a: sum(1 for c in changes if c.action is a) for a in Action}
    console.print(", ".join(f"{n} {a.value}" for a, n in counts.items() if n))
    if counts[Action.REFUSED]:
        raise SystemExit(1)


@topics.command("list")
@click.pass_obj
def list_topics(settings: Settings) -> None:
    """Show every catalog topic with its live partitions, replication and records held."""
    catalog = Catalog.build(settings.topics.prefix)
    table = Table(
        "topic",
        "key",
        "value schema",
        "partitions",
        "repl",
        "records",
        "queue size",
        "retention",
        "cleanup",
    )
    for status in TopicAdmin(settings.kafka).describe(catalog):
        spec = status.spec
        size = (
            _human_bytes(spec.retention_bytes * spec.partitions)
            if spec.retention_bytes > 0
            else "unbounded"
        )
        retention = (
            "forever"
            if spec.cleanup_policy.value == "compact"
            else (f"{spec.retention_ms / 86_400_000:g} d")
        )
        table.add_row(
            spec.name,
            spec.key_field,
            spec.value_schema,
            f"{status.partitions}/{spec.partitions}" if status.exists else "missing",
            str(status.replication_factor) if status.exists else "-",
            str(status.records),
            size,
            retention,
            spec.cleanup_policy.value,
        )
    Console(width=200).print(table)


def markdown_table(catalog: Catalog) -> str:
    """The catalog as the README's table (a unit test keeps the README in step with the code)."""
    lines = [
        "| topic | key | value schema | partitions | retention | size per partition | cleanup |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in catalog:
        if spec.name.endswith(".dlq"):
            continue
        retention = (
            "latest per key"
            if spec.cleanup_policy.value == "compact"
            else f"{spec.retention_ms / 86_400_000:g} d"
        )
        lines.append(
            f"| `{spec.name}` | `{spec.key_field}` | `{spec.value_schema}` | {spec.partitions} "
            f"| {retention} | {_human_bytes(spec.retention_bytes)} | {spec.cleanup_policy.value} |"
        )
    return "\n".join(lines) + "\n"


@topics.command("table")
@click.pass_obj
def table(settings: Settings) -> None:
    """Print the catalog as a Markdown table (the README's topic catalog)."""
    click.echo(markdown_table(Catalog.build(settings.topics.prefix)), nl=False)


@topics.command("render")
@click.option(
    "--k8s",
    "k8s",
    is_flag=True,
    required=True,
    help="Strimzi KafkaTopic resources (the only format so far).",
)
@click.option(
    "--write",
    "write_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write every generated manifest (topics, Kafka users with ACLs, workloads) under this "
    "kustomize base (deploy/base) instead of printing the topics.",
)
def render(k8s: bool, write_dir: Path | None) -> None:
    """Render the catalog as Kubernetes manifests (make k8s-topics writes deploy/base).

    The catalog is rendered without FILAS_TOPICS__PREFIX: each environment runs its own
    Kafka cluster (deploy/overlays), so topic names are the same everywhere.
    """
    from filas.admin import k8s_render

    catalog = Catalog.build()
    if write_dir is None:
        click.echo(k8s_render.render_topics(catalog), nl=False)
        return
    for path in k8s_render.write_files(catalog, write_dir):
        click.echo(f"wrote {path}", err=True)


COMMANDS: list[click.Command] = [topics]
