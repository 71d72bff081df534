"""The poller's ports: where events and dead letters go. Adapters satisfy these structurally.

``producers.async_sdk.AsyncEventProducer`` satisfies ``EventSink``; ``dead_letters.
KafkaDeadLetters`` satisfies ``DeadLetterSink``; unit tests use in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from filas.catalog import TopicSpec

# Never copied into a dead letter: IXC keeps login passwords and NAS secrets in clear text.
SECRET_FIELDS = frozenset({"senha", "secret", "password", "token"})


class EventSink(Protocol):
    """Emits one event and returns once the broker acknowledged it (raises otherwise)."""

    async def emit(self, topic: TopicSpec, record: Mapping[str, Any]) -> object: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An IXC record that could not become an event, with the reason and the (redacted) record."""

    form: str
    topic: TopicSpec
    record_id: str | None
    field: str
    code: str
    message: str
    record: Mapping[str, str]

    @classmethod
    def redacted(cls, record: Mapping[str, str]) -> dict[str, str]:
        return {k: ("***" if k in SECRET_FIELDS and v else v) for k, v in record.items()}


class DeadLetterSink(Protocol):
    """Keeps a dead letter durably; returns once it is safe to move the watermark past it."""

    async def dead_letter(self, letter: DeadLetter) -> None: ...
