"""``filas schemas list|register``: the Avro schemas under ``schemas/`` and the registry."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from filas.catalog import Catalog
from filas.settings import Settings
from schemas.catalog import SchemaCatalog
from schemas.registry_client import SchemaRegistry


@click.group("schemas")
def schemas() -> None:
    """Inspect the Avro schemas and register them in the schema registry."""


@schemas.command("list")
def list_schemas() -> None:
    """Show every schema: full name, kind, field count and fingerprint (CRC-64-AVRO)."""
    catalog = SchemaCatalog.load()
    table = Table("full name", "type", "fields", "fingerprint")
    for schema in catalog:
        table.add_row(
            schema.fullname,
            str(schema.parsed["type"]),
            str(schema.field_count) if schema.parsed["type"] == "record" else "-",
            schema.fingerprint,
        )
    Console(width=200).print(table)


@schemas.command("register")
@click.pass_obj
def register(settings: Settings) -> None:
    """Register the value schema of every catalog topic (dead-letter queues included).

    Sets each subject's compatibility level from settings first; idempotent.
    """
    registry = SchemaRegistry(settings.registry)
    registered = registry.register_all(Catalog.build(settings.topics.prefix))
    console = Console(width=200)
    for subject, schema_id in sorted(registered.items()):
        console.print(f"{subject} -> {schema_id}")
    console.print(
        f"{len(registered)} subjects registered at {settings.registry.url} "
        f"({settings.registry.compatibility}, {settings.registry.subject_strategy.value})"
    )


COMMANDS: list[click.Command] = [schemas]
