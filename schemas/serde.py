"""Avro serializer/deserializer for one topic, in the Confluent wire format.

The hot path is one ``fastavro.schemaless_writer`` call after a constant 5-byte header: the
producer benchmark is held to half of Kafka's Java ProducerPerformance, so no per-record
validation runs up front. fastavro already refuses bad types while writing; only then is the
record walked again to name the offending field (``ValidationError.field``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from filas.catalog.spec import TopicSpec
from filas.errors import DecodeError, RegistryError, ValidationError
from schemas.catalog import ParsedSchema, SchemaCatalog, validate_record
from schemas.registry_client import SchemaRegistry
from schemas.wire import header, unframe


class AvroSerde:
    """Values of one topic: ``serialize`` a mapping to framed bytes, ``deserialize`` them back.

    Reading resolves any registered writer version to this process's schema (Avro schema
    resolution), so old records read with new defaults. Not thread-safe (it reuses one buffer):
    give each producer thread its own serde, they share the registry caches.
    """

    def __init__(
        self, spec: TopicSpec, schema: ParsedSchema, schema_id: int, registry: SchemaRegistry
    ) -> None:
        if schema.fullname != spec.value_schema:
            raise ValueError(f"{spec.name} carries {spec.value_schema}, not {schema.fullname}")
        self.spec = spec
        self.schema = schema
        self.schema_id = schema_id
        self._registry = registry
        self._parsed = schema.parsed
        self._header = header(schema_id)
        self._buffer = io.BytesIO()

    @classmethod
    def for_topic(
        cls, spec: TopicSpec, catalog: SchemaCatalog, registry: SchemaRegistry
    ) -> AvroSerde:
        """Register the topic's schema (idempotent, cached) and build its serde: start-up work."""
        schema = catalog.get(spec.value_schema)
        return cls(spec, schema, registry.register(spec.name, schema), registry)

    def serialize(self, record: Mapping[str, Any]) -> bytes:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        buffer.write(self._header)
        try:
            schemaless_writer(buffer, self._parsed, record)
        except Exception as exc:  # fastavro raises TypeError/ValueError/AttributeError/...
            raise self._explain(record, exc) from exc
        return buffer.getvalue()

    def key_of(self, record: Mapping[str, Any]) -> bytes:
        """The Kafka key: the UTF-8 string form of the spec's key field."""
        try:
            return str(record[self.spec.key_field]).encode()
        except KeyError:
            raise ValidationError(
                f"{self.schema.fullname}: key field '{self.spec.key_field}' is missing",
                field=self.spec.key_field,
            ) from None

    def deserialize(self, data: bytes | bytearray | memoryview | None) -> dict[str, Any]:
        schema_id, body = unframe(data)
        if schema_id == self.schema_id:
            writer, reader = self._parsed, None
        else:
            writer, reader = self._writer(schema_id), self._parsed
        try:
            record: dict[str, Any] = schemaless_reader(io.BytesIO(body), writer, reader)
        except Exception as exc:  # truncated body, bad varint, unresolvable writer version
            raise DecodeError(
                f"{self.spec.name}: cannot decode Avro body written with schema id "
                f"{schema_id} as {self.schema.fullname}: {type(exc).__name__}: {exc}"
            ) from exc
        return record

    def _writer(self, schema_id: int) -> Any:
        try:
            return self._registry.writer_schema(schema_id)
        except RegistryError as exc:
            if exc.code != "not_found":
                raise  # registry down: retry later, the record itself may be fine
            raise DecodeError(
                f"{self.spec.name}: schema id {schema_id} is not in the registry"
            ) from exc

    def _explain(self, record: Mapping[str, Any], exc: Exception) -> ValidationError:
        try:
            validate_record(self.schema, record)
        except ValidationError as explained:
            return explained
        return ValidationError(
            f"{self.schema.fullname}: record does not fit the schema: {type(exc).__name__}: {exc}"
        )
