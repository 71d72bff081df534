"""Rate and concurrency limits that hold across instances.

Every instance of a channel's worker group takes ``limit x assigned partitions / partitions`` of
the configured rate and concurrency, and recomputes its share at every rebalance: the shares of
all instances add up to the limit whatever the group's size (docs/decisions/0076).
The rate is paced GCRA-style (each send is scheduled 1/rate after the previous one, on a virtual
clock), so the achieved rate over a campaign equals the configured one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable


def share(limit: float, assigned: int, total: int) -> float:
    """This instance's part of ``limit`` when it holds ``assigned`` of ``total`` partitions."""
    if total <= 0:
        return 0.0
    return limit * assigned / total


class RateLimiter:
    """At most ``rate`` acquisitions per second (``None``: unlimited; 0: none until raised)."""

    def __init__(
        self,
        rate: float | None,
        *,
        burst: float = 1.0,
        burst_s: float = 0.0,
        tick_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._tick = tick_s
        self._burst_min = burst
        self._burst_s = burst_s
        self._burst = burst
        self._next = clock()
        self._rate: float | None = None
        self._changed = asyncio.Event()
        self.set_rate(rate)

    @property
    def rate(self) -> float | None:
        return self._rate

    def set_rate(self, rate: float | None) -> None:
        if rate is not None and rate > 0 and self._rate != rate:
            # Restart the schedule from now: an old, slower schedule must not hold new sends.
            self._next = min(self._next, self._clock() + 1.0 / rate)
        self._rate = rate
        self._burst = max(self._burst_min, (rate or 0.0) * self._burst_s)
        self._changed.set()

    def tokens(self) -> float:
        """Sends that could start right now (for the RATE_LIMIT_TOKENS gauge)."""
        if self._rate is None:
            return math.inf
        if self._rate <= 0:
            return 0.0
        ahead = self._clock() - self._next
        return max(0.0, min(self._burst, 1.0 + ahead * self._rate))

    def reserve(self) -> float | None:
        """Take the next slot: seconds to wait before using it; None while the rate is 0."""
        rate = self._rate
        if rate is None:
            return 0.0
        if rate <= 0:
            return None
        now = self._clock()
        slot = max(self._next, now - (self._burst - 1.0) / rate)
        self._next = slot + 1.0 / rate
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        while True:
            wait = self.reserve()
            if wait is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            if wait > 0:
                if self._tick > 0:
                    # Wake on a tick boundary: sends due within one tick share one event-loop
                    # wake-up instead of one each (the slots stay on the exact virtual clock;
                    # a send is late by < one tick, so the rate holds over any longer window).
                    now = self._clock()
                    wait = math.ceil((now + wait) / self._tick) * self._tick - now
                await asyncio.sleep(wait)
            return


class ConcurrencyLimit:
    """A FIFO semaphore whose size can change while tasks hold it.

    A release hands its slot straight to the oldest waiter (one wake-up per slot; an
    ``asyncio.Condition`` woke every waiter on every release, which profiled as a fifth of the
    delivery worker's CPU at 64 sends in flight).
    """

    def __init__(self, size: int) -> None:
        self._size = max(0, size)
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return self._size

    @property
    def held(self) -> int:
        return self._held

    def resize(self, size: int) -> None:
        """Call on the event loop's thread: a larger size lets waiters in at once."""
        self._size = max(0, size)
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._held < self._size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)

    async def acquire(self) -> None:
        if self._held < self._size and not self._waiters:
            self._held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._held -= 1  # granted, then cancelled before it could be used
                self._grant()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    async def release(self) -> None:
        self._held -= 1
        self._grant()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *_exc: object) -> None:
        await self.release()

    async def wake(self) -> None:
        """Re-check waiters after ``resize``."""
        self._grant()


def backoff_delay(
    attempt: int,
    initial_s: float,
    max_s: float,
    random: Callable[[], float],
    retry_after_s: float | None = None,
) -> float:
    """Wait after the ``attempt``-th failed try: exponential with equal jitter (half fixed, half
    random), never less than the provider's Retry-After."""
    base = min(max_s, initial_s * 2.0 ** max(0, attempt - 1))
    delay = base / 2 + random() * base / 2
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s * 10))
    return delay
