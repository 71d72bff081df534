"""Can data written with an older schema still be read with the current one?

Checked by doing it: sample records of every variant are written with the writer schema and
read back with writer+reader (Avro schema resolution in fastavro). It catches what matters for
old records on a topic (a new field without default, a removed enum symbol or union branch, a
changed type) without reimplementing the Avro compatibility rules; the registry applies those
rules again when the schema is registered.
"""

from __future__ import annotations

import io
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from filas.errors import SchemaError
from schemas.samples import sample_records


def check_readable(writer: Any, reader: Any, *, label: str = "") -> int:
    """Raise ``SchemaError`` unless every sample written with ``writer`` reads with ``reader``.

    Both are fastavro-parsed schemas. Returns how many samples were checked.
    """
    named = writer.get("__named_schemas", {}) if isinstance(writer, dict) else {}
    samples = sample_records(writer, named)
    for index, record in enumerate(samples):
        buffer = io.BytesIO()
        try:
            schemaless_writer(buffer, writer, record)
        except Exception as exc:  # a sample the writer refuses is a bug in the generator
            raise SchemaError(f"{label}: cannot write sample {index}: {exc}") from exc
        buffer.seek(0)
        try:
            schemaless_reader(buffer, writer, reader)
        except Exception as exc:  # SchemaResolutionError, or a mis-resolved body
            raise SchemaError(
                f"{label}: a record written with the older schema cannot be read with the "
                f"newer one (sample {index}): {type(exc).__name__}: {exc}"
            ) from exc
    return len(samples)
