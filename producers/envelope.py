"""The common envelope every event carries (``ixc.filas.common.Envelope``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def envelope(
    source_system: str,
    *,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A fresh envelope: new event id, occurred now (UTC) unless the source says when."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": occurred_at or datetime.now(UTC),
        "source_system": source_system,
        "correlation_id": correlation_id,
    }
