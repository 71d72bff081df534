"""The one module that imports icmplib: echo probes over ONE ICMP socket, asyncio in front.

Like fping, every probe of this process goes out of one socket (a raw socket as root, an
unprivileged datagram socket otherwise) and one reader thread matches replies to probes by
(identifier, sequence) and source address. A socket per probe (icmplib's ``async_ping``) would,
with raw sockets, copy every reply to every open socket: quadratic in the concurrency.

Single-threaded on the event loop: ``send`` does not block, and a reader callback
(``loop.add_reader``) drains the replies waiting on the socket. (A reader thread blocked in
``recvfrom`` made every ``sendto`` wait for the GIL: 5x slower.) Results are frozen
``ProbeOutcome`` objects; icmplib's exceptions become ``IcmpUnavailableError`` (socket) or a lost
probe with its reason (send failed, e.g. network unreachable while a link is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import select
import socket
import statistics
import struct
import time
from dataclasses import dataclass
from typing import Any

from icmplib import ICMPRequest, ICMPv4Socket
from icmplib.exceptions import ICMPLibError, TimeoutExceeded

from filas.errors import FilasError

logger = logging.getLogger(__name__)

_ECHO_REPLY = 0
# Echo reply, destination unreachable, time exceeded: what answers one of our requests (a raw
# socket also sees every echo request, ours included on loopback).
_ANSWERS = frozenset((0, 3, 11))
_READ_BUDGET = 512
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_RCVBUF_BYTES = 16 * 1024 * 1024
# A fixed 56-byte payload (ping's default size): icmplib's random one costs ~90 us per probe.
_PAYLOAD = bytes(range(56))
_SEQUENCES = 65536


class IcmpUnavailableError(FilasError):
    """No ICMP socket could be opened (no root and unprivileged ICMP not allowed)."""

    code = "icmp_unavailable"


class _Icmpv4Socket(ICMPv4Socket):  # type: ignore[misc]  # icmplib is untyped
    """icmplib's socket with the RFC 1071 checksum summed by ``struct`` (a Python byte loop
    upstream: a quarter of the CPU of a probe; same result, checked in tests), and TTL / TOS set
    once instead of by two setsockopt calls per packet."""

    _ttl: int | None = None
    _tos: int | None = None

    def _set_ttl(self, ttl: int) -> None:
        if ttl != self._ttl:
            super()._set_ttl(ttl)
            self._ttl = ttl

    def _set_traffic_class(self, traffic_class: int) -> None:
        if traffic_class != self._tos:
            super()._set_traffic_class(traffic_class)
            self._tos = traffic_class

    def _checksum(self, data: bytes) -> int:
        if len(data) % 2:
            data += b"\x00"
        total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """One round of ``sent`` echo requests to ``address``; ``rtts_ms`` of the replies."""

    address: str
    sent: int
    rtts_ms: tuple[float, ...]
    error: str | None = None

    @property
    def received(self) -> int:
        return len(self.rtts_ms)

    @property
    def loss_ratio(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0

    @property
    def rtt_min_ms(self) -> float | None:
        return min(self.rtts_ms) if self.rtts_ms else None

    @property
    def rtt_avg_ms(self) -> float | None:
        return statistics.fmean(self.rtts_ms) if self.rtts_ms else None

    @property
    def rtt_max_ms(self) -> float | None:
        return max(self.rtts_ms) if self.rtts_ms else None

    @property
    def jitter_ms(self) -> float | None:
        """Mean absolute difference between consecutive round trips (RFC 3550 style)."""
        if len(self.rtts_ms) < 2:
            return None
        pairs = zip(self.rtts_ms, self.rtts_ms[1:], strict=False)
        return statistics.fmean(abs(b - a) for a, b in pairs)


@dataclass(slots=True)
class _Pending:
    address: str
    future: asyncio.Future[float | None]
    sent_at: float
    timer: asyncio.TimerHandle | None = None


class IcmpProber:
    """Echo probes from one socket. ``open()`` inside the running loop, ``close()`` at the end."""

    def __init__(self, *, privileged: bool | None = None) -> None:
        self._privileged = os.geteuid() == 0 if privileged is None else privileged
        self._id = random.randrange(1, 0xFFFF)
        self._sequence = random.randrange(_SEQUENCES)
        self._pending: dict[int, _Pending] = {}
        self._sock: ICMPv4Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.received = 0
        self.send_errors = 0

    @property
    def privileged(self) -> bool:
        return self._privileged

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._sock = _Icmpv4Socket(privileged=self._privileged)
        except ICMPLibError as exc:
            raise IcmpUnavailableError(
                f"cannot open an ICMP socket (privileged={self._privileged}): {exc}; run as "
                "root or allow unprivileged ICMP (sysctl net.ipv4.ping_group_range)"
            ) from exc
        if self._privileged:
            # Replies of a whole sweep arrive in a burst; the default 208 KiB holds ~300.
            with contextlib.suppress(OSError):
                self._sock.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF_BYTES)
        self._loop.add_reader(self._sock.sock.fileno(), self._on_readable)

    def close(self) -> None:
        if self._sock is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.sock.fileno())
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_result(None)
        self._pending.clear()

    async def probe(
        self, address: str, count: int, interval_s: float, timeout_s: float
    ) -> ProbeOutcome:
        """Send ``count`` echo requests ``interval_s`` apart; wait ``timeout_s`` for each."""
        futures: list[asyncio.Future[float | None]] = []
        error: str | None = None
        for i in range(count):
            if i and interval_s > 0:
                await asyncio.sleep(interval_s)
            future, failure = self._send(address, timeout_s)
            futures.append(future)
            error = failure or error
        rtts = tuple(rtt for rtt in [await f for f in futures] if rtt is not None)
        return ProbeOutcome(address, count, rtts, error if not rtts else None)

    def _next_sequence(self) -> int:
        for _ in range(_SEQUENCES):
            self._sequence = (self._sequence + 1) % _SEQUENCES
            if self._sequence not in self._pending:
                return self._sequence
        raise IcmpUnavailableError("65536 probes in flight: lower FILAS_PING__CONCURRENCY")

    def _send(
        self, address: str, timeout_s: float
    ) -> tuple[asyncio.Future[float | None], str | None]:
        loop = self._loop
        sock = self._sock
        assert loop is not None, "IcmpProber.open() first"
        assert sock is not None, "IcmpProber.open() first"
        future: asyncio.Future[float | None] = loop.create_future()
        sequence = self._next_sequence()
        request = ICMPRequest(destination=address, id=self._id, sequence=sequence, payload=_PAYLOAD)
        sent_at = time.perf_counter()
        try:
            sock.send(request)
        except ICMPLibError as exc:
            # e.g. "Network is unreachable" while the route's link is down: a lost probe.
            self.send_errors += 1
            future.set_result(None)
            return future, str(exc) or type(exc).__name__
        self.sent += 1
        if not self._privileged:
            self._id = request.id  # the kernel picks the identifier of datagram ICMP sockets
        pending = _Pending(address, future, sent_at)
        pending.timer = loop.call_later(timeout_s, self._expire, sequence, future)
        self._pending[sequence] = pending
        return future, None

    def _expire(self, sequence: int, future: asyncio.Future[float | None]) -> None:
        pending = self._pending.get(sequence)
        if pending is not None and pending.future is future:
            del self._pending[sequence]
        if not future.done():
            future.set_result(None)

    def _on_readable(self) -> None:
        """Loop reader callback: drain every reply waiting on the socket (bounded per call)."""
        sock = self._sock
        if sock is None:
            return
        fd = sock.sock.fileno()
        for _ in range(_READ_BUDGET):
            ready, _, _ = select.select([fd], [], [], 0)
            if not ready:
                return
            try:
                # Data is waiting: returns at once (the timeout only bounds a runt packet).
                reply: Any = sock.receive(None, timeout=0.01)
            except TimeoutExceeded:
                return
            except ICMPLibError as exc:
                logger.warning("icmp: receive failed: %s", exc)
                return
            if reply.id == self._id and reply.type in _ANSWERS:
                self._settle(reply.sequence, reply.source, reply.type, time.perf_counter())

    def _settle(self, sequence: int, source: str | None, kind: int, arrived: float) -> None:
        pending = self._pending.get(sequence)
        if pending is None:
            return  # late reply after its timeout, or a duplicate
        if kind == _ECHO_REPLY and source is not None and source != pending.address:
            return  # not the host we asked
        del self._pending[sequence]
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.future.done():
            return
        if kind == _ECHO_REPLY:
            self.received += 1
            pending.future.set_result((arrived - pending.sent_at) * 1000.0)
        else:  # destination unreachable / time exceeded from a router: lost
            pending.future.set_result(None)
