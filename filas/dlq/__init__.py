"""Inspect and re-drive a topic's dead-letter queue (``filas dlq list/replay``)."""

from filas.dlq.replay import (
    ORIGIN_HEADER,
    DeadLetterView,
    ReplayResult,
    list_dead_letters,
    replay,
    replay_group,
)

__all__ = [
    "ORIGIN_HEADER",
    "DeadLetterView",
    "ReplayResult",
    "list_dead_letters",
    "replay",
    "replay_group",
]
