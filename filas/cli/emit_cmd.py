"""``filas emit TOPIC --json FILE|-``: put events on a queue from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

import click

from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog
from filas.errors import DeliveryError, ValidationError
from filas.settings import Settings
from producers.json_input import record_from_json
from producers.sdk import Delivery, DeliveryFailure


def _documents(stream: TextIO) -> Iterator[Any]:
    """A JSON array, a single object, or one object per line (JSON Lines)."""
    text = stream.read()
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise click.BadParameter(f"line {number}: invalid JSON: {exc}") from exc
        return
    yield from document if isinstance(document, list) else [document]


@click.command("emit")
@click.argument("topic")
@click.option(
    "--json",
    "source",
    type=click.File("r"),
    required=True,
    help="JSON file with one object, an array, or JSON Lines; '-' reads stdin.",
)
@click.option(
    "--source-system",
    default="filas-cli",
    show_default=True,
    help="envelope.source_system for records without an envelope.",
)
@click.pass_obj
def emit(settings: Settings, topic: str, source: TextIO, source_system: str) -> None:
    """Validate JSON records against TOPIC's Avro schema and emit them (acks=all).

    Exits non-zero, naming the record and field, if any record is invalid; invalid records are
    rejected before anything is sent.
    """
    catalog = Catalog.build(settings.topics.prefix)
    spec = catalog.get(topic)
    serdes = build_serdes(settings)
    schema = serdes.schemas.get(spec.value_schema)
    records = []
    for index, document in enumerate(_documents(source)):
        try:
            records.append(record_from_json(schema, document, source_system=source_system))
        except ValidationError as exc:
            raise ValidationError(f"record {index}: {exc}", field=exc.field) from exc
    deliveries: list[Delivery] = []
    failures: list[DeliveryFailure] = []

    def on_delivery(ok: Delivery | None, failure: DeliveryFailure | None) -> None:
        if ok is not None:
            deliveries.append(ok)
        if failure is not None:
            failures.append(failure)

    with build_producer(settings, catalog=catalog, serdes=serdes) as producer:
        for index, record in enumerate(records):
            try:
                producer.emit(spec, record, on_delivery=on_delivery)
            except ValidationError as exc:
                raise ValidationError(f"record {index}: {exc}", field=exc.field) from exc
    for delivery in deliveries:
        click.echo(
            f"{delivery.topic} [{delivery.partition}] @ {delivery.offset} key={delivery.key}"
        )
    if failures:
        for failure in failures:
            click.echo(f"NOT DELIVERED key={failure.key}: {failure.error}", err=True)
        raise DeliveryError(f"{len(failures)} of {len(records)} records were not delivered")
    click.echo(f"{len(deliveries)} records acknowledged by {spec.name}")


COMMANDS: list[click.Command] = [emit]
