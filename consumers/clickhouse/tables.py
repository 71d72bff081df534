"""One ClickHouse table per topic, generated from the topic's Avro value schema.

Layout (docs/decisions/0040): ``ReplacingMergeTree`` partitioned by month of the event's
``envelope.occurred_at``; ORDER BY (entity, event time, ``_topic``, ``_partition``, ``_offset``),
where the entity is what analysts filter on (login, device, campaign). Lineage ends the key, so a
record inserted twice (a replayed batch) has the same sorting key and the copies collapse at merge
time (``FINAL`` collapses them at query time). Valid on ClickHouse 18.16 and current releases.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro

from consumers.clickhouse.client import quote
from consumers.clickhouse.columnar import BatchDecodeError, ColumnarDecoder
from consumers.clickhouse.columns import Column, columns_for_schema, has_secret_fields
from consumers.clickhouse.errors import RowConversionError, UnsupportedSchemaError
from consumers.clickhouse.row_decoder import RowDecoder, Unsupported, compile_row_decoder
from filas.catalog import DEAD_LETTER_SCHEMA, Catalog, TopicSpec
from schemas.catalog import ParsedSchema, SchemaCatalog
from schemas.samples import sample_records

EVENT_TIME = "envelope_occurred_at"
ENGINE = "ReplacingMergeTree()"

# The entity analysts ask about, when it is not the Kafka key (catalog name -> column).
# Campaign messages and results are keyed by recipient for ordering, but queried per campaign.
ENTITY_OVERRIDES: Mapping[str, str] = {
    "campaign.messages": "campaign_id",
    "campaign.delivery-results": "campaign_id",
}


def _noop(_record: Mapping[str, Any]) -> Any:  # lineage values come from the Kafka message
    return None


LINEAGE: tuple[Column, ...] = (
    Column("_topic", "String", _noop, "Kafka topic the row was read from."),
    Column("_partition", "UInt32", _noop, "Kafka partition."),
    Column(
        "_offset", "UInt64", _noop, "Kafka offset: with topic and partition, the row's identity."
    ),
    Column("_kafka_timestamp_ms", "Int64", _noop, "Kafka record timestamp (epoch ms)."),
)
# Filled by the server, never by the sink: event-to-queryable latency is now() - event time.
INSERTED_AT = Column("_inserted_at", "DateTime DEFAULT now()", _noop, "When the row landed.")


RowBuilder = Callable[[Mapping[str, Any]], list[Any]]


def compile_row_builder(columns: Sequence[Column], label: str) -> RowBuilder:
    """One generated function reading every column's value: no getter chain per column.

    Same values as calling each ``Column.get`` (a unit test holds them equal), about three
    times faster: row building is a third of the sink's CPU per record.
    """
    namespace: dict[str, Any] = {}
    lines = ["def build_row(r):"]
    parents: dict[tuple[str, ...], str] = {}
    values: list[str] = []
    for i, column in enumerate(columns):
        if not column.path:
            namespace[f"g{i}"] = column.get
            values.append(f"g{i}(r)")
            continue
        holder = "r"
        for depth in range(1, len(column.path)):
            prefix = column.path[:depth]
            if prefix not in parents:
                parents[prefix] = f"n{len(parents)}"
                lines.append(f"    {parents[prefix]} = {holder}[{prefix[-1]!r}]")
            holder = parents[prefix]
        expr = f"{holder}.get({column.path[-1]!r})"
        if column.convert is not None:
            namespace[f"c{i}"] = column.convert
            expr = f"c{i}({expr})"
        values.append(expr)
    lines.append("    return [" + ", ".join(values) + "]")
    source = "\n".join(lines)
    exec(compile(source, f"<row builder {label}>", "exec"), namespace)  # noqa: S102
    builder: RowBuilder = namespace["build_row"]
    return builder


def table_name(topic_name: str) -> str:
    """``t1-radius.accounting`` -> ``t1_radius_accounting``."""
    return re.sub(r"[^0-9A-Za-z_]", "_", topic_name)


@dataclass(frozen=True)
class Table:
    """A topic's table: its columns, key and DDL, and how to turn a decoded record into a row."""

    name: str
    topic: TopicSpec
    schema_fingerprint: str
    columns: tuple[Column, ...]
    entity: str
    # The schema has credential fields (never columns): dead letters then drop the raw value.
    has_secrets: bool = False
    # Avro body (written with the reader's schema) -> data values, compiled; None: use
    # fastavro and the row builder (consumers/clickhouse/row_decoder.py).
    decode_row: RowDecoder | None = field(default=None, repr=False, compare=False)
    # A batch of bodies (written with the reader's schema) -> data columns in native code;
    # None: per record (consumers/clickhouse/columnar.py, decision 0120).
    decode_columns: ColumnarDecoder | None = field(default=None, repr=False, compare=False)
    _build_row: RowBuilder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_build_row", compile_row_builder(self.columns, self.name))

    @property
    def order_by(self) -> tuple[str, ...]:
        return (self.entity, EVENT_TIME, "_topic", "_partition", "_offset")

    @property
    def partition_by(self) -> str:
        return f"toYYYYMM({quote(EVENT_TIME)})"

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """Every column the table has (data, lineage, server default), in DDL order."""
        return (*self.columns, *LINEAGE, INSERTED_AT)

    @property
    def insert_columns(self) -> tuple[str, ...]:
        """The columns an INSERT names: data then lineage (``_inserted_at`` is the server's)."""
        return tuple(c.name for c in (*self.columns, *LINEAGE))

    def create_sql(self, database: str | None = None) -> str:
        target = f"{quote(database)}.{quote(self.name)}" if database else quote(self.name)
        lines = ",\n".join(f"    {quote(c.name)} {c.type}" for c in self.all_columns)
        return (
            f"CREATE TABLE IF NOT EXISTS {target}\n(\n{lines}\n)\n"
            f"ENGINE = {ENGINE}\n"
            f"PARTITION BY {self.partition_by}\n"
            f"ORDER BY ({', '.join(quote(c) for c in self.order_by)})"
        )

    def add_column_sql(self, column: Column, database: str | None = None) -> str:
        target = f"{quote(database)}.{quote(self.name)}" if database else quote(self.name)
        return f"ALTER TABLE {target} ADD COLUMN {quote(column.name)} {column.type}"

    def fast_row(
        self, body: bytes, start: int, topic: str, partition: int, offset: int, timestamp_ms: int
    ) -> tuple[Any, ...]:
        """The INSERT tuple straight from an Avro body at ``start`` (needs ``decode_row``)."""
        assert self.decode_row is not None
        values = self.decode_row(body, start)
        values.extend((topic, partition, offset, timestamp_ms))
        return tuple(values)

    def row(
        self,
        record: Mapping[str, Any],
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
    ) -> tuple[Any, ...]:
        """The INSERT tuple for one decoded record; RowConversionError when it does not fit."""
        try:
            values = self._build_row(record)
        except Exception as exc:  # a getter met a value of an unexpected shape
            raise RowConversionError(
                f"{self.name}: record does not fit the table: {type(exc).__name__}: {exc}"
            ) from exc
        values.extend((topic, partition, offset, timestamp_ms))
        return tuple(values)


def build_table(spec: TopicSpec, schema: ParsedSchema, catalog_name: str | None = None) -> Table:
    """The table for ``spec`` (``catalog_name``: the topic's name without environment prefix)."""
    expanded = json.loads(schema.canonical)
    columns = tuple(columns_for_schema(expanded))
    by_name = {c.name: c for c in columns}
    if len(by_name) != len(columns):
        raise UnsupportedSchemaError(f"{schema.fullname}: two fields map to the same column")
    name = catalog_name or spec.name
    # A lane topic (filas.catalog.lanes) is keyed like its family: campaign.messages.bulk.
    family = name.removesuffix(f".{spec.lane}") if spec.lane else name
    entity = ENTITY_OVERRIDES.get(name) or ENTITY_OVERRIDES.get(family, spec.key_field)
    for key in (entity, EVENT_TIME):
        column = by_name.get(key)
        if column is None:
            raise UnsupportedSchemaError(f"{schema.fullname}: no column {key!r} for the table key")
        if column.nullable or column.type.startswith("Array("):
            raise UnsupportedSchemaError(
                f"{schema.fullname}: key column {key!r} is {column.type}; ClickHouse 18.16 "
                "allows no Nullable in ORDER BY"
            )
    try:
        decode_row: RowDecoder | None = compile_row_decoder(
            expanded, columns, table_name(spec.name)
        )
    except Unsupported:
        decode_row = None
    decode_columns = None
    if decode_row is not None:
        decode_columns = verified_columnar(
            schema, expanded, columns, decode_row, table_name(spec.name)
        )
    return Table(
        name=table_name(spec.name),
        topic=spec,
        schema_fingerprint=schema.fingerprint,
        columns=columns,
        entity=entity,
        has_secrets=has_secret_fields(expanded),
        decode_row=decode_row,
        decode_columns=decode_columns,
    )


_SAMPLE_HEADER = b"\x00\x00\x00\x00\x01"


def verified_columnar(
    schema: ParsedSchema,
    expanded: dict[str, Any],
    columns: Sequence[Column],
    decode_row: RowDecoder,
    label: str,
) -> ColumnarDecoder | None:
    """The native batch decoder, if it reads this schema's samples exactly as ``decode_row``.

    A shape polars cannot read (or reads differently) keeps the per-record path.
    """
    try:
        decoder = ColumnarDecoder(expanded, columns, label)
    except Unsupported:
        return None
    bodies = []
    for record in sample_records(schema.parsed, schema.named_types):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema.parsed, record)
        bodies.append(buffer.getvalue())
    decoder.set_sentinel_body(bodies[0])
    expected = [list(c) for c in zip(*(decode_row(b, 0) for b in bodies), strict=True)]
    try:
        got = decoder.decode(_SAMPLE_HEADER, [_SAMPLE_HEADER + b for b in bodies])
    except BatchDecodeError:
        return None
    return decoder if got == expected else None


def sink_topics(catalog: Catalog, names: Sequence[str] = ()) -> list[TopicSpec]:
    """The topics the sink lands: ``names`` (catalog names), or every non-dead-letter topic."""
    if names:
        return [catalog.get(n) for n in names]
    return [spec for spec in catalog if spec.value_schema != DEAD_LETTER_SCHEMA]


def build_tables(
    catalog: Catalog, schemas: SchemaCatalog, names: Sequence[str] = ()
) -> dict[str, Table]:
    """Tables by topic name, for ``names`` or every event family in the catalog."""
    tables: dict[str, Table] = {}
    for spec in sink_topics(catalog, names):
        bare = spec.name.removeprefix(catalog.prefix)
        tables[spec.name] = build_table(spec, schemas.get(spec.value_schema), bare)
    return tables
