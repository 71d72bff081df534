"""``filas tail TOPIC``: read a topic and print its records decoded from Avro, as JSON lines."""

from __future__ import annotations

import json
import time
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import click
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from filas.bootstrap import build_serdes
from filas.catalog import Catalog
from filas.errors import DecodeError
from filas.settings import Settings

_SECRET_FIELDS = ("password", "secret", "token", "senha")


def _masked(value: Any) -> Any:
    """Credentials (e.g. a login's password on ixc.subscribers) never reach a terminal or a log."""
    if isinstance(value, dict):
        return {
            k: "***" if v and any(s in k.lower() for s in _SECRET_FIELDS) else _masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


@click.command("tail")
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record held.")
@click.option("--max", "max_records", type=int, default=None, help="Stop after N records.")
@click.option(
    "--idle-timeout",
    type=float,
    default=5.0,
    show_default=True,
    help="Stop after this many seconds without a record (0: never).",
)
@click.option("--show-secrets", is_flag=True, help="Do not mask password/secret/token fields.")
@click.pass_obj
def tail(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    max_records: int | None,
    idle_timeout: float,
    show_secrets: bool,
) -> None:
    """Print TOPIC's records as JSON lines (partition, offset, key, value). Reads without a
    consumer group, so it never moves anyone's offsets."""
    spec = Catalog.build(settings.topics.prefix).get(topic)
    serde = build_serdes(settings)(spec)
    consumer = Consumer(
        settings.kafka.client_config()
        | {"group.id": "filas-tail", "enable.auto.commit": False, "enable.partition.eof": False}
    )
    metadata = consumer.list_topics(spec.name, timeout=10)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign(
        [TopicPartition(spec.name, p, start) for p in metadata.topics[spec.name].partitions]
    )
    seen = 0
    last = time.monotonic()
    try:
        while max_records is None or seen < max_records:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_timeout and time.monotonic() - last > idle_timeout:
                    break
                continue
            if msg.error():
                raise click.ClickException(msg.error().str())
            last = time.monotonic()
            seen += 1
            key = msg.key().decode() if msg.key() else None
            line: dict[str, Any] = {
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": key,
            }
            try:
                value = serde.deserialize(msg.value())
                line["value"] = value if show_secrets else _masked(value)
            except DecodeError as exc:
                line["error"] = str(exc)
            click.echo(json.dumps(line, default=_jsonable, ensure_ascii=False))
    finally:
        consumer.close()


COMMANDS: list[click.Command] = [tail]
