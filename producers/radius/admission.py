"""Reconnect-storm admission: per-NAS fair queueing with a bounded in-flight limit.

The gateway's socket reader only classifies datagrams into one bounded deque per NAS (source IP);
a drain step serves the deques round robin, one request per NAS per turn, a fixed batch per event
loop turn. So a NAS flooding 10,000 Access-Requests after a reboot costs another NAS's single
request at most one slot per backlogged NAS, never a place behind the whole flood.

Bounds (docs/decisions/0052): over ``max_queued`` in total or ``max_queued_per_nas`` for one NAS a
new request is dropped, unanswered; a request that waited longer than ``max_age_s`` is dropped
when it reaches the head (an answer after the NAS gave up is useless; the NAS retransmits and the
retransmission is admitted as a fresh request).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class AdmissionStats:
    admitted: int = 0
    served: int = 0
    dropped_queue_full: int = 0
    dropped_nas_full: int = 0
    dropped_expired: int = 0
    dropped_queued_duplicate: int = 0
    max_depth: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Queued(Generic[T]):
    item: T
    enqueued_at: float
    dedupe: Hashable | None


class FairQueue(Generic[T]):
    """Per-key bounded FIFO deques served round robin (deficit round robin with unit cost)."""

    def __init__(
        self,
        *,
        max_queued: int,
        max_queued_per_nas: int,
        max_age_s: float,
        clock: Callable[[], float],
    ) -> None:
        if max_queued < 1 or max_queued_per_nas < 1 or max_age_s <= 0:
            raise ValueError("admission bounds must be positive")
        self.max_queued = max_queued
        self.max_queued_per_nas = max_queued_per_nas
        self.max_age_s = max_age_s
        self.clock = clock
        self.stats = AdmissionStats()
        self._queues: dict[Hashable, deque[Queued[T]]] = {}
        # Keys with a non-empty deque, in service order; the head is served next.
        self._ring: deque[Hashable] = deque()
        self._depth = 0
        # Dedupe keys of requests waiting in a deque: a retransmission of a queued request is
        # dropped (the queued original's reply answers it: same identifier and authenticator).
        self._waiting: set[Hashable] = set()

    def __len__(self) -> int:
        return self._depth

    def depth(self, key: Hashable) -> int:
        queue = self._queues.get(key)
        return len(queue) if queue is not None else 0

    def offer(self, key: Hashable, item: T, dedupe: Hashable | None = None) -> bool:
        """Admit ``item`` into ``key``'s deque; False (counted) when a bound refuses it."""
        if dedupe is not None and dedupe in self._waiting:
            self.stats.dropped_queued_duplicate += 1
            return False
        if self._depth >= self.max_queued:
            self.stats.dropped_queue_full += 1
            return False
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        if len(queue) >= self.max_queued_per_nas:
            self.stats.dropped_nas_full += 1
            return False
        if not queue:
            self._ring.append(key)
        queue.append(Queued(item, self.clock(), dedupe))
        if dedupe is not None:
            self._waiting.add(dedupe)
        self._depth += 1
        self.stats.admitted += 1
        self.stats.max_depth = max(self.stats.max_depth, self._depth)
        return True

    def pop(self) -> T | None:
        """The next request in round-robin order, skipping (and counting) expired ones."""
        while self._ring:
            key = self._ring.popleft()
            queue = self._queues[key]
            entry = queue.popleft()
            self._depth -= 1
            if queue:
                self._ring.append(key)  # back of the ring: every other NAS goes first
            else:
                del self._queues[key]
            if entry.dedupe is not None:
                self._waiting.discard(entry.dedupe)
            if self.clock() - entry.enqueued_at > self.max_age_s:
                self.stats.dropped_expired += 1
                continue
            self.stats.served += 1
            return entry.item
        return None
