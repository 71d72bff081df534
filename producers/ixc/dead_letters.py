"""Dead-letter adapter: IXC records that could not be mapped go to ``<topic>.dlq`` as
``ixc.filas.dlq.DeadLetter`` events, through the same EventSink as every other event.

The DeadLetter schema was designed for records read from Kafka; for a record read from IXC
there is no partition or offset (both -1), ``raw_key`` is the IXC id and ``raw_value`` the IXC
record as JSON, with password and secret columns redacted (``DeadLetter.redacted``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from filas.catalog import Catalog
from producers.envelope import envelope
from producers.ixc.mapping import SOURCE_SYSTEM
from producers.ixc.ports import DeadLetter, EventSink

_MAX_MESSAGE = 4096


class KafkaDeadLetters:
    """``DeadLetterSink`` onto the catalog's dead-letter topics."""

    def __init__(
        self,
        sink: EventSink,
        catalog: Catalog,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sink = sink
        self._catalog = catalog
        # Unprefixed specs: the sink applies its own catalog's prefix when it resolves a spec.
        self._plain = Catalog.build()
        self._clock = clock

    async def dead_letter(self, letter: DeadLetter) -> None:
        failed_at = self._clock()
        record = {
            "envelope": envelope(SOURCE_SYSTEM, occurred_at=failed_at),
            "source_topic": self._catalog.resolve(letter.topic).name,
            "source_partition": -1,
            "source_offset": -1,
            "source_timestamp": None,
            "error_code": letter.code,
            "error_type": "IxcMappingError",
            "error_message": letter.message[:_MAX_MESSAGE],
            "retriable": False,
            "failed_at": failed_at,
            "raw_key": letter.record_id.encode() if letter.record_id else None,
            "raw_value": json.dumps(dict(letter.record), ensure_ascii=False).encode(),
            "processor": f"{SOURCE_SYSTEM}/{letter.form}",
        }
        await self._sink.emit(self._plain.dead_letter_for(letter.topic), record)
