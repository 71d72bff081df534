"""What a worker does with one ``ServiceRequest``: ledger check, IXC call with retries, status.

Side effects at most once per request id (docs/decisions/0082):

- the status view is the ledger: a request already DONE or FAILED is skipped (a replay after a
  lost commit or a duplicate submit from a second ingress instance);
- a request seen RUNNING (a worker died mid-call) is called again with the same
  ``filas_request_id``; IXC's answer to a repeated id is the first answer (simulator), so the
  effect happens once;
- duplicates inside one worker wait for the first and are then skipped.

Retries: IXC unavailable (5xx, 429, timeouts, connection errors) or malformed answers are
retried with exponential backoff and jitter up to ``max_attempts``, then the request is
dead-lettered (DEAD_LETTERED status + the raw record on ``<lane>.dlq``). A business refusal is
FAILED at once with IXC's code. 4xx from IXC (wrong token) is dead-lettered: a replay after the
configuration is fixed can succeed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from consumers.ixc_requests.calls import IxcCall, IxcRefusal, ixc_call
from consumers.ixc_requests.status_view import (
    DEAD_LETTERED,
    DONE,
    FAILED,
    FINAL,
    QUEUED,
    RUNNING,
    StatusView,
)
from filas.errors import FilasError
from filas.metrics import DEPENDENCY_SECONDS, ERRORS, RATE_LIMIT_RATE, RATE_LIMIT_TOKENS
from filas.settings import IngressSettings
from producers.envelope import envelope

log = logging.getLogger(__name__)

COMPONENT = "ixc-requests"
SOURCE_SYSTEM = "filas-ixc-requests"
MAX_MESSAGE = 1024

Sleep = Callable[[float], Awaitable[None]]


class IxcPort(Protocol):
    async def write_once(self, call: IxcCall) -> dict[str, str]: ...


StatusSink = Callable[[Mapping[str, Any]], Awaitable[None]]
# After IXC's success, before DONE: what to add to the result (payment notices, decision 0083).
Notify = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, str]]]
DeadLetterSink = Callable[[FilasError], Awaitable[None]]


def rate_share(limit: float, assigned: int, total: int) -> float:
    """This worker's part of the global IXC rate when it holds ``assigned`` of the lanes'
    ``total`` partitions: the shares of every worker of the group add up to ``limit``. Never
    below one partition's share (a worker between rebalances still makes progress)."""
    if total <= 0:
        return limit
    return limit * max(assigned, 1) / total


class CallRate:
    """Spaces IXC calls to ``rate`` per second across every task of this worker."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next = 0.0
        self.rate = rate
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        RATE_LIMIT_RATE.labels(component=COMPONENT, limiter="ixc").set(rate)

    def reserve(self) -> float:
        """Seconds to wait before this call may go (the slot is taken now)."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate
        RATE_LIMIT_TOKENS.labels(component=COMPONENT, limiter="ixc").set(
            max(0.0, (now - self._next) * self.rate + 1)
        )
        return slot - now


@dataclass(slots=True)
class Stats:
    handled: int = 0
    done: int = 0
    failed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    retries: int = 0


class RequestProcessor:
    def __init__(
        self,
        settings: IngressSettings,
        ixc: IxcPort,
        view: StatusView,
        emit_status: StatusSink,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        rate: CallRate | None = None,
        notify: Notify | None = None,
    ) -> None:
        self._settings = settings
        self._ixc = ixc
        self._view = view
        self._emit_status = emit_status
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.rate = rate or CallRate(settings.ixc_rate_per_s)
        self._notify = notify
        self._running: dict[str, asyncio.Event] = {}
        self.stats = Stats()

    async def process(self, request: Mapping[str, Any], dead_letter: DeadLetterSink) -> str:
        """Handle one request; returns the state it ended in (or the skipped request's state)."""
        request_id = str(request["request_id"])
        running = self._running.get(request_id)
        if running is not None:
            await running.wait()
        current = self._view.get(request_id)
        if current is not None and current["state"] in FINAL:
            self.stats.duplicates += 1
            if self._view.last_raw_state(request_id) != current["state"]:
                await self.reassert(current)
            return str(current["state"])
        done = self._running[request_id] = asyncio.Event()
        try:
            attempts = int(current["attempts"]) if current is not None else 0
            return await self._run(request, attempts, dead_letter)
        finally:
            done.set()
            del self._running[request_id]
            self.stats.handled += 1

    async def reassert(self, record: Mapping[str, Any]) -> None:
        """A late QUEUED is the topic's last word for this request: put the real state back on
        top so compaction keeps it (skipped when a newer worker state already followed)."""
        request_id = str(record["request_id"])
        # Read again now: the snapshot may be older than what this worker emitted since. A
        # RUNNING request needs nothing: its worker's final state comes after the QUEUED.
        current = self._view.get(request_id)
        if (
            current is None
            or current["state"] not in (DONE, FAILED, DEAD_LETTERED)
            or self._view.last_raw_state(request_id) != QUEUED
        ):
            return
        try:
            await self._emit(dict(current, envelope=self._envelope(request_id)))
        except FilasError as exc:
            log.warning("ixc request %s: state not re-asserted: %s", request_id, exc.code)

    async def _run(
        self, request: Mapping[str, Any], attempts: int, dead_letter: DeadLetterSink
    ) -> str:
        try:
            call = ixc_call(request)
        except FilasError as exc:
            await self._finish(request, FAILED, attempts, error=exc)
            self.stats.failed += 1
            return FAILED
        while True:
            attempts += 1
            await self._emit(self._status(request, RUNNING, attempts))
            try:
                wait = self.rate.reserve()
                if wait > 0:
                    await self._sleep(wait)
                started = time.perf_counter()
                try:
                    answer = await self._ixc.write_once(call)
                finally:
                    DEPENDENCY_SECONDS.labels(component=COMPONENT, dependency="ixc").observe(
                        time.perf_counter() - started
                    )
            except IxcRefusal as refusal:
                ERRORS.labels(component=COMPONENT, kind="ixc_refused").inc()
                await self._finish(request, FAILED, attempts, error=refusal)
                self.stats.failed += 1
                return FAILED
            except FilasError as exc:
                ERRORS.labels(component=COMPONENT, kind=exc.code).inc()
                if exc.retriable and attempts < self._settings.max_attempts:
                    self.stats.retries += 1
                    log.warning(
                        "ixc request %s: [%s] attempt %d/%d",
                        request["request_id"],
                        exc.code,
                        attempts,
                        self._settings.max_attempts,
                    )
                    await self._sleep(self._backoff(attempts))
                    continue
                await dead_letter(exc)
                await self._finish(request, DEAD_LETTERED, attempts, error=exc)
                self.stats.dead_lettered += 1
                return DEAD_LETTERED
            result = {"ixc_id": answer.get("id", ""), "ixc_message": answer.get("message", "")}
            if self._notify is not None:
                # Before DONE: a crash in between re-runs the request, and the message goes
                # again with the same message id (decision 0083); a DONE request never re-runs.
                result |= await self._notify(request)
            await self._finish(request, DONE, attempts, result=result)
            self.stats.done += 1
            return DONE

    def _backoff(self, attempt: int) -> float:
        cap = min(
            self._settings.backoff_max_s, self._settings.backoff_initial_s * 2.0 ** (attempt - 1)
        )
        return cap / 2 + self._rng.uniform(0, cap / 2)

    async def _finish(
        self,
        request: Mapping[str, Any],
        state: str,
        attempts: int,
        *,
        error: FilasError | None = None,
        result: Mapping[str, str] | None = None,
    ) -> None:
        status = self._status(request, state, attempts)
        if isinstance(error, IxcRefusal):
            status["error_code"] = error.ixc_code
            status["error_message"] = error.ixc_message[:MAX_MESSAGE]
        elif error is not None:
            status["error_code"] = error.code
            status["error_message"] = str(error)[:MAX_MESSAGE]
        status["result"] = dict(result or {})
        await self._emit(status)

    async def _emit(self, status: Mapping[str, Any]) -> None:
        await self._emit_status(status)
        self._view.put(status)

    def _envelope(self, request_id: str) -> dict[str, Any]:
        return envelope(SOURCE_SYSTEM, correlation_id=request_id)

    def _status(self, request: Mapping[str, Any], state: str, attempts: int) -> dict[str, Any]:
        request_id = str(request["request_id"])
        return {
            "envelope": self._envelope(request_id),
            "request_id": request_id,
            "client_id": request["client_id"],
            "request_type": request["request_type"],
            "lane": request["lane"],
            "state": state,
            "attempts": attempts,
            "error_code": None,
            "error_message": None,
            "result": {},
            "fingerprint": request["fingerprint"],
            "idempotency_key": request.get("idempotency_key"),
            "submitted_at": request["submitted_at"],
            "updated_at": datetime.now(UTC),
        }
