"""Decode raw records in an agent, sending undecodable ones to the topic's dead-letter queue.

Used by agents that consume with ``value_serializer="raw"``: a record Faust's codec could not
decode would be skipped silently, while here it becomes a ``DeadLetter`` with the reason and the
raw bytes. "Skip this record" is control flow (``decode`` returns None), not an exception.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from filas.errors import FilasError
from schemas.dead_letter import SourceRecord, dead_letter
from schemas.serde import AvroSerde

logger = logging.getLogger(__name__)


class DeadLetterSink(Protocol):
    """Where dead-letter bytes go: a Faust topic in production, a list in unit tests."""

    async def send(self, key: bytes, value: bytes) -> None: ...


class FaustTopicSink:
    """A ``DeadLetterSink`` over a Faust topic declared with ``value_serializer="raw"``."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    async def send(self, key: bytes, value: bytes) -> None:
        await self._topic.send(key=key, value=value)


class RawDecoder:
    """Decode with ``serde``; on a decode failure produce a DeadLetter with ``dead_letters``.

    Retriable errors (the registry unreachable while fetching an unknown writer schema) are
    raised instead: the record may be fine, and the agent should stop and retry, not bury it.
    """

    def __init__(
        self,
        serde: AvroSerde,
        dead_letters: AvroSerde,
        sink: DeadLetterSink,
        processor: str,
        *,
        redact_value: bool = False,
    ) -> None:
        self.serde = serde
        self.dead_letters = dead_letters
        self.sink = sink
        self.processor = processor
        self.redact_value = redact_value
        self.dead_lettered = 0

    async def decode(self, source: SourceRecord) -> dict[str, Any] | None:
        """The decoded record, or None after dead-lettering an undecodable one."""
        try:
            return self.serde.deserialize(source.value)
        except FilasError as exc:
            if exc.retriable:
                raise
            await self.bury(source, exc)
            return None

    async def decode_faust(self, message: Any) -> dict[str, Any] | None:
        """``decode`` for a ``faust`` ``event.message``."""
        return await self.decode(SourceRecord.from_faust(message))

    async def bury(self, source: SourceRecord, error: BaseException) -> None:
        """Send ``source`` to the dead-letter topic with ``error`` as the reason."""
        record = dead_letter(source, error, self.processor, redact_value=self.redact_value)
        await self.sink.send(self.dead_letters.key_of(record), self.dead_letters.serialize(record))
        self.dead_lettered += 1
        logger.warning(
            "dead-lettered %s[%d]@%d: %s",
            source.topic,
            source.partition,
            source.offset,
            record["error_message"],
            extra={"topic": source.topic, "error_code": record["error_code"]},
        )
