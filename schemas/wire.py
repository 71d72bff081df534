"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the Avro binary body.

Every Confluent-compatible client (Java, Go, kcat -s avro, ksqlDB, Apicurio's ccompat serdes)
reads this framing, which is why Filas uses it instead of Avro single-object encoding.
"""

from __future__ import annotations

import struct

from filas.errors import DecodeError

MAGIC = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">bI")
MAX_SCHEMA_ID = 2**32 - 1


def header(schema_id: int) -> bytes:
    """The 5 bytes that precede the Avro body of every record written with ``schema_id``."""
    if not 0 <= schema_id <= MAX_SCHEMA_ID:
        raise ValueError(f"schema id {schema_id} does not fit in 4 unsigned bytes")
    return _HEADER.pack(MAGIC, schema_id)


def frame(schema_id: int, body: bytes) -> bytes:
    return header(schema_id) + body


def unframe(data: bytes | bytearray | memoryview | None) -> tuple[int, memoryview]:
    """Split framed bytes into (schema id, Avro body); the body is a view, not a copy.

    ``None`` is accepted because Kafka hands tombstones over as a null value.
    """
    if data is None:
        raise DecodeError("no value: expected a Confluent-framed Avro record, got a null value")
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        raise DecodeError(
            f"{len(view)} bytes is too short for a Confluent-framed Avro record "
            f"(at least {HEADER_SIZE} header bytes)"
        )
    magic, schema_id = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise DecodeError(
            f"unknown magic byte 0x{magic & 0xFF:02x}: not a Confluent-framed Avro record "
            "(JSON, plain Avro or another serializer wrote it?)"
        )
    return schema_id, view[HEADER_SIZE:]
