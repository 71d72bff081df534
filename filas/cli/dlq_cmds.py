"""``filas dlq list TOPIC`` and ``filas dlq replay TOPIC``: inspect and re-drive a DLQ."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from filas.bootstrap import build_serdes
from filas.catalog import Catalog
from filas.dlq import DeadLetterView, list_dead_letters, replay, replay_group
from filas.settings import Settings


def _source_and_dlq(settings: Settings, topic: str) -> tuple[Catalog, str]:
    catalog = Catalog.build(settings.topics.prefix)
    spec = catalog.get(topic)
    if not spec.dead_letter:
        raise click.ClickException(f"{spec.name} has no dead-letter queue")
    return catalog, spec.name


@click.group("dlq")
def dlq() -> None:
    """Inspect and replay dead-letter queues (<topic>.dlq)."""


@dlq.command("list")
@click.argument("topic")
@click.option("--max", "max_letters", type=int, default=None, help="Show at most N letters.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per letter.")
@click.pass_obj
def list_cmd(settings: Settings, topic: str, max_letters: int | None, as_json: bool) -> None:
    """Show TOPIC's dead letters: source partition/offset, error, failed_at, size."""
    catalog, name = _source_and_dlq(settings, topic)
    dlq_spec = catalog.dead_letter_for(catalog.get(name))
    serde = build_serdes(settings)(dlq_spec)
    count = 0
    for item in list_dead_letters(settings, serde, dlq_spec, max_letters=max_letters):
        count += 1
        if isinstance(item, DeadLetterView):
            row = asdict(item) | {"failed_at": item.failed_at.isoformat()}
            if as_json:
                click.echo(json.dumps(row, ensure_ascii=False))
            else:
                click.echo(
                    f"{item.dlq_partition}@{item.dlq_offset}  "
                    f"{item.source_topic}[{item.source_partition}]@{item.source_offset}  "
                    f"{row['failed_at']}  {item.error_code} ({item.error_type})  "
                    f"{item.size} B  {item.processor}: {item.error_message}"
                )
        else:
            partition, offset, error = item
            click.echo(
                json.dumps({"dlq_partition": partition, "dlq_offset": offset, "error": error})
                if as_json
                else f"{partition}@{offset}  undecodable: {error}"
            )
    if not as_json:
        click.echo(f"{count} dead letters on {dlq_spec.name}", err=True)


@dlq.command("replay")
@click.argument("topic")
@click.option("--group", default=None, help="Replay consumer group (default filas-dlq-replay.T).")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; send nothing.")
@click.pass_obj
def replay_cmd(settings: Settings, topic: str, group: str | None, dry_run: bool) -> None:
    """Re-send TOPIC's dead letters (raw bytes) to TOPIC; resumable, never sends one twice."""
    catalog, name = _source_and_dlq(settings, topic)
    source = catalog.get(name)
    serde = build_serdes(settings)(catalog.dead_letter_for(source))

    def report(view: DeadLetterView, action: str) -> None:
        click.echo(
            f"{action}: {view.dlq_partition}@{view.dlq_offset} -> "
            f"{source.name}[{view.source_partition}] (was @{view.source_offset}, "
            f"{view.error_code})"
        )

    result = replay(
        settings, catalog, serde, source, group=group, dry_run=dry_run, on_letter=report
    )
    click.echo(
        f"{'dry run: ' if dry_run else ''}replayed {result.replayed}, "
        f"already sent {result.skipped_already_sent}, undecodable {result.undecodable} "
        f"(group {group or replay_group(source)})",
        err=True,
    )


COMMANDS: list[click.Command] = [dlq]
