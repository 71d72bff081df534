"""The correlation id of the event being handled, carried in a contextvar into every log line."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

correlation_id: ContextVar[str | None] = ContextVar("filas_correlation_id", default=None)


def correlation_of(record: Mapping[str, Any]) -> str | None:
    """An event's correlation id: its envelope's ``correlation_id``, else its ``event_id``."""
    envelope = record.get("envelope")
    if not isinstance(envelope, Mapping):
        return None
    value = envelope.get("correlation_id") or envelope.get("event_id")
    return str(value) if value else None


@contextmanager
def bind_correlation(source: Mapping[str, Any] | str | None) -> Iterator[str | None]:
    """Log lines inside the block carry the correlation id of ``source`` (an event or an id)."""
    value = source if isinstance(source, str) or source is None else correlation_of(source)
    token = correlation_id.set(value)
    try:
        yield value
    finally:
        correlation_id.reset(token)
