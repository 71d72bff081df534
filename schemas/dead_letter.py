"""Build the ``ixc.filas.dlq.DeadLetter`` record for a record a processor could not handle.

A bad message is data, not a crash: it goes to ``<topic>.dlq`` with where it came from, the
error's code and retriable flag, and the raw bytes, so it can be inspected and replayed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from filas.errors import FilasError

UNEXPECTED_CODE = "unexpected"
_MAX_MESSAGE_CHARS = 4096


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """Where a failed record came from and its bytes exactly as read."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None

    @classmethod
    def from_faust(cls, message: Any) -> SourceRecord:
        """From a ``faust.types.tuples.Message`` (timestamp in float seconds)."""
        stamp = message.timestamp
        return cls(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=int(stamp * 1000) if stamp else None,
            key=_as_bytes(message.key),
            value=_as_bytes(message.value),
        )


def _as_bytes(data: Any) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    return str(data).encode()


def dead_letter(
    source: SourceRecord,
    error: BaseException,
    processor: str,
    *,
    failed_at_ms: int | None = None,
    correlation_id: str | None = None,
    redact_value: bool = False,
) -> dict[str, Any]:
    """The DeadLetter record (a mapping for ``AvroSerde.serialize``) for ``source``.

    ``redact_value`` drops the raw value for topics whose values carry secrets (``ixc.subscribers``
    holds clear RADIUS passwords, see decision 0020): undecodable bytes cannot be redacted field by
    field, and a dead-letter queue is read by more people than the source topic.
    """
    now = failed_at_ms if failed_at_ms is not None else time.time_ns() // 1_000_000
    message = str(error) or type(error).__name__
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": now,
            "source_system": processor,
            "correlation_id": correlation_id,
        },
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "source_timestamp": source.timestamp_ms,
        "error_code": error.code if isinstance(error, FilasError) else UNEXPECTED_CODE,
        "error_type": type(error).__name__,
        "error_message": message[:_MAX_MESSAGE_CHARS],
        "retriable": error.retriable if isinstance(error, FilasError) else False,
        "failed_at": now,
        "raw_key": source.key,
        # A null value (tombstone) is kept as empty bytes: the schema has no null for it.
        "raw_value": b"" if redact_value or source.value is None else source.value,
        "processor": processor,
    }
