"""The one module that imports icmplib: echo rounds over ONE ICMP socket per address family.

Like fping, every probe of this process goes out of one socket per family (raw as root, an
unprivileged datagram socket otherwise; icmplib opens it and translates its errors) and one reader
callback on the event loop matches replies to probes by (identifier, sequence) and source
address. A socket per probe (icmplib's ``async_ping`` / ``async_multiping``) would, with raw
sockets, copy every reply to every open socket: quadratic in the concurrency; and a coroutine,
future and timer per probe cost ~50 us of CPU each (decision 0061).

A round (``IcmpProber.sweep_round``) is plain data: per-probe send times and per-device reply
lists in preallocated slots. Devices start in batches (the first ``concurrency`` at once, then as
many as just finished, from the reader callback): each request is a prebuilt echo packet whose
identifier, sequence and checksum are patched in place (the checksum of the fixed part is summed
once), sent by a tight ``sendto`` loop. A batch has one timer per step (the next of ``count``
echo requests) and one deadline; a reply later than ``timeout_s`` counts as lost, as before.
Results are frozen ``ProbeOutcome`` objects handed to ``on_outcome`` the moment a device is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import random
import socket
import statistics
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPLibError

from filas.errors import FilasError

logger = logging.getLogger(__name__)

_READ_BUDGET = 2048
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_SOCK_BUFFER_BYTES = 16 * 1024 * 1024
# Linux raw-socket type filters (bits set = types the kernel does NOT queue for us): a raw socket
# otherwise also reads every echo request, our own included on loopback.
_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1
# A fixed 56-byte payload (ping's default size).
_PAYLOAD = bytes(range(56))
_SEQUENCES = 65536
_V4_HEADER = struct.Struct("!HH")
_REOPEN_AFTER_S = 60


class IcmpUnavailableError(FilasError):
    """No ICMP socket could be opened (no root and unprivileged ICMP not allowed)."""

    code = "icmp_unavailable"


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


class IcmpSocket(Protocol):
    """What the prober uses of a socket (a real one, or a fake in unit tests)."""

    def fileno(self) -> int: ...

    def sendto(self, data: bytes | bytearray, address: Any, /) -> int: ...

    def recvfrom_into(self, buffer: bytearray, /) -> tuple[int, Any]: ...

    def close(self) -> None: ...


SocketFactory = Callable[[int, bool], IcmpSocket]


def open_icmp_socket(version: int, privileged: bool) -> IcmpSocket:
    """A non-blocking ICMP socket of IP ``version`` opened by icmplib (raw when ``privileged``,
    datagram otherwise), with big buffers and, when raw, a kernel filter keeping only the types
    that answer an echo request."""
    kind = ICMPv4Socket if version == 4 else ICMPv6Socket
    try:
        icmp = kind(privileged=privileged)
    except ICMPLibError as exc:
        raise IcmpUnavailableError(
            f"cannot open an ICMPv{version} socket (privileged={privileged}): {exc}; run as "
            "root or allow unprivileged ICMP (sysctl net.ipv4.ping_group_range)"
        ) from exc
    sock: socket.socket = icmp.sock
    icmp._sock = None  # we own the socket now; icmplib's __del__ must not close it
    sock.setblocking(False)
    if privileged:
        # A whole batch of replies arrives in a burst; the default 208 KiB holds ~300.
        for option in (_SO_RCVBUFFORCE, _SO_SNDBUFFORCE):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCK_BUFFER_BYTES)
        with contextlib.suppress(OSError):
            if version == 4:
                keep = (1 << 0) | (1 << 3) | (1 << 11)  # echo reply, unreachable, time exceeded
                sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", ~keep & 0xFFFFFFFF))
            else:
                words = [0xFFFFFFFF] * 8  # block all but: 1 unreachable, 3 time exceeded, 129
                for kept in (1, 3, 129):
                    words[kept >> 5] &= ~(1 << (kept & 31)) & 0xFFFFFFFF
                sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("8I", *words))
    return sock


class EchoTemplate:
    """An echo request of one family with a fixed payload; ``patch`` writes identifier,
    sequence and the RFC 1071 checksum into the one buffer (the fixed part is summed once)."""

    def __init__(self, request_type: int, payload: bytes = _PAYLOAD) -> None:
        if len(payload) % 2:
            payload += b"\x00"
        body = struct.pack("!BBHHH", request_type, 0, 0, 0, 0) + payload
        self.packet = bytearray(body)
        self._base = sum(struct.unpack(f"!{len(body) // 2}H", body))

    def patch(self, ident: int, sequence: int) -> bytearray:
        total = self._base + ident + sequence
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        struct.pack_into("!HHH", self.packet, 2, ~total & 0xFFFF, ident, sequence)
        return self.packet


@dataclass(slots=True)
class _Family:
    version: int
    sock: IcmpSocket
    template: EchoTemplate
    reply_type: int
    error_types: frozenset[int]
    request_type: int
    ip_header: bool  # raw IPv4 reads the IP header; datagram sockets and IPv6 do not
    buffer: bytearray


class _Round:
    """One sweep over ``targets``: per-probe send times and per-device replies."""

    __slots__ = (
        "aborted",
        "active",
        "concurrency",
        "count",
        "cursor",
        "errors",
        "future",
        "handles",
        "interval",
        "left",
        "on_outcome",
        "outcomes",
        "rtts",
        "sent_at",
        "seqs",
        "settled",
        "targets",
        "timeout",
    )

    def __init__(
        self,
        targets: Sequence[Any],
        count: int,
        interval: float,
        timeout: float,
        concurrency: int,
        on_outcome: Callable[[Any, ProbeOutcome], None] | None,
        future: asyncio.Future[None],
    ) -> None:
        n = len(targets)
        self.targets = targets
        self.count = count
        self.interval = interval
        self.timeout = timeout
        self.concurrency = concurrency
        self.on_outcome = on_outcome
        self.sent_at = [0.0] * (n * count)
        self.seqs = [-1] * (n * count)
        self.rtts: list[list[float]] = [[] for _ in range(n)]
        self.settled = [0] * n
        self.errors: list[str | None] = [None] * n
        self.outcomes: list[ProbeOutcome | None] = [None] * n
        self.cursor = 0
        self.active = 0
        self.left = n
        self.future = future
        self.aborted = False
        self.handles: set[asyncio.TimerHandle] = set()


class IcmpProber:
    """Echo rounds from one socket per family. ``open()`` inside the running loop (the IPv6
    socket opens on first use), ``close()`` at the end."""

    def __init__(
        self, *, privileged: bool | None = None, socket_factory: SocketFactory | None = None
    ) -> None:
        self._privileged = os.geteuid() == 0 if privileged is None else privileged
        self._factory = socket_factory or open_icmp_socket
        self._id = random.randrange(1, 0xFFFF)
        self._sequence = random.randrange(_SEQUENCES)
        # sequence -> (round, probe slot); the families share one sequence space.
        self._inflight: dict[int, tuple[_Round, int]] = {}
        self._families: dict[int, _Family] = {}
        self._rounds: set[_Round] = set()
        # Family -> loop time of a failed socket opening: retried after _REOPEN_AFTER_S, not per
        # target (a host without IPv6 would log once per IPv6 device per round otherwise).
        self._failed: dict[int, float] = {}
        self._exhausted_logged = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.received = 0
        self.send_errors = 0

    @property
    def privileged(self) -> bool:
        return self._privileged

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._family(4)

    def _family(self, version: int) -> _Family:
        family = self._families.get(version)
        if family is not None:
            return family
        loop = self._loop
        assert loop is not None, "IcmpProber.open() first"
        sock = self._factory(version, self._privileged)
        v4 = version == 4
        family = _Family(
            version=version,
            sock=sock,
            template=EchoTemplate(8 if v4 else 128),
            reply_type=0 if v4 else 129,
            error_types=frozenset((3, 11) if v4 else (1, 3)),
            request_type=8 if v4 else 128,
            ip_header=v4 and self._privileged,
            buffer=bytearray(2048),
        )
        self._families[version] = family
        loop.add_reader(sock.fileno(), self._on_readable, family)
        return family

    def close(self) -> None:
        loop = self._loop
        for family in self._families.values():
            if loop is not None and not loop.is_closed():
                loop.remove_reader(family.sock.fileno())
            family.sock.close()
        self._families.clear()
        for rnd in list(self._rounds):  # closed mid-round: the unfinished are not reported
            self._abort(rnd)
            for dev, outcome in enumerate(rnd.outcomes):
                if outcome is None:
                    rtts = tuple(rnd.rtts[dev])
                    rnd.outcomes[dev] = ProbeOutcome(rnd.targets[dev], rnd.count, rtts, "closed")
            if not rnd.future.done():
                rnd.future.set_result(None)
        self._inflight.clear()

    # -- rounds ------------------------------------------------------------------------------
    async def probe(
        self, address: str, count: int, interval_s: float, timeout_s: float
    ) -> ProbeOutcome:
        """Send ``count`` echo requests ``interval_s`` apart to one address (a round of one)."""
        done = await self.sweep_round([address], count, interval_s, timeout_s, 1, None, str)
        return done[0]

    async def sweep_round(
        self,
        targets: Sequence[Any],
        count: int,
        interval_s: float,
        timeout_s: float,
        concurrency: int,
        on_outcome: Callable[[Any, ProbeOutcome], None] | None,
        address_of: Callable[[Any], str],
    ) -> list[ProbeOutcome]:
        """Probe every target (``count`` echo requests ``interval_s`` apart, each waited for
        ``timeout_s``), at most ``concurrency`` targets at a time; the outcomes in target order.
        ``on_outcome(target, outcome)`` runs as soon as a target is done."""
        loop = self._loop
        assert loop is not None, "IcmpProber.open() first"
        if not targets:
            return []
        addresses = [address_of(t) for t in targets]
        future: asyncio.Future[None] = loop.create_future()
        rnd = _Round(addresses, count, interval_s, timeout_s, max(1, concurrency), None, future)
        if on_outcome is not None:
            rnd.on_outcome = lambda i_target, outcome: on_outcome(targets[i_target], outcome)
        self._rounds.add(rnd)
        try:
            self._refill(rnd)
            await future
        finally:
            self._abort(rnd)
            self._rounds.discard(rnd)
        return [o for o in rnd.outcomes if o is not None]

    def _abort(self, rnd: _Round) -> None:
        if rnd.aborted:
            return
        rnd.aborted = True
        for handle in rnd.handles:
            handle.cancel()
        rnd.handles.clear()
        inflight = self._inflight
        for seq in rnd.seqs:
            if seq >= 0:
                entry = inflight.get(seq)
                if entry is not None and entry[0] is rnd:
                    del inflight[seq]

    def _refill(self, rnd: _Round) -> None:
        """Start as many devices as the concurrency allows, as one batch (again while devices
        finish at once: every probe failed to send, e.g. their network is unreachable)."""
        while not rnd.aborted:
            start = rnd.cursor
            stop = min(len(rnd.targets), start + rnd.concurrency - rnd.active)
            if stop <= start:
                return
            rnd.cursor = stop
            rnd.active += stop - start
            self._send_step(rnd, range(start, stop), 0)

    def _send_step(self, rnd: _Round, batch: range, step: int) -> None:
        loop = self._loop
        assert loop is not None
        inflight = self._inflight
        ident = self._id
        count = rnd.count
        addresses = rnd.targets
        sent_at = rnd.sent_at
        seqs = rnd.seqs
        clock = time.perf_counter
        seq = self._sequence
        families = self._families
        sent = 0
        for dev in batch:
            if rnd.outcomes[dev] is not None:
                continue  # finished early (every probe lost to send errors)
            if rnd.aborted:
                break  # aborted, or on_outcome raised
            address = addresses[dev]
            family = families.get(6 if ":" in address else 4)
            if family is None:
                family = self._open_family(address)
                if family is None:
                    reason = f"no IPv{6 if ':' in address else 4} socket"
                    self._settle_lost(rnd, dev, count - rnd.settled[dev], reason)
                    continue
            for _ in range(_SEQUENCES):
                seq = (seq + 1) & 0xFFFF
                if seq not in inflight:
                    break
            else:  # every sequence number is waiting for a reply: this probe is lost
                if not self._exhausted_logged:
                    self._exhausted_logged = True
                    logger.warning("icmp: 65536 probes in flight; lower FILAS_PING__CONCURRENCY")
                self._settle_lost(rnd, dev, 1, "65536 probes in flight")
                continue
            slot = dev * count + step
            packet = family.template.patch(ident, seq)
            sent_at[slot] = clock()
            try:
                family.sock.sendto(packet, (address, 0))
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                    reason = "send buffer full"
                else:  # e.g. network unreachable while the route's link is down: a lost probe
                    reason = exc.strerror or type(exc).__name__
                self.send_errors += 1
                self._settle_lost(rnd, dev, 1, reason)
                continue
            seqs[slot] = seq
            inflight[seq] = (rnd, slot)
            sent += 1
        self._sequence = seq
        self.sent += sent
        if rnd.aborted:
            return
        if step + 1 < count:
            at = loop.time() + rnd.interval
            handle = loop.call_at(at, self._on_timer, rnd, batch, step + 1, False)
        else:
            handle = loop.call_at(loop.time() + rnd.timeout, self._on_timer, rnd, batch, 0, True)
        rnd.handles.add(handle)

    def _open_family(self, address: str) -> _Family | None:
        version = ipaddress.ip_address(address).version
        loop = self._loop
        assert loop is not None
        failed_at = self._failed.get(version)
        if failed_at is not None and loop.time() - failed_at < _REOPEN_AFTER_S:
            return None
        try:
            return self._family(version)
        except (IcmpUnavailableError, OSError) as exc:
            self._failed[version] = loop.time()
            logger.warning(
                "icmp: no IPv%d socket (retried in %d s): %s", version, _REOPEN_AFTER_S, exc
            )
            return None

    def _on_timer(self, rnd: _Round, batch: range, step: int, deadline: bool) -> None:
        if rnd.aborted:
            return
        if not deadline:
            self._send_step(rnd, batch, step)
            self._refill(rnd)  # devices whose every probe failed to send are done
            return
        inflight = self._inflight
        count = rnd.count
        for dev in batch:
            if rnd.outcomes[dev] is not None:
                continue
            for slot in range(dev * count, dev * count + count):
                seq = rnd.seqs[slot]
                if seq >= 0:
                    entry = inflight.get(seq)
                    if entry is not None and entry[0] is rnd and entry[1] == slot:
                        del inflight[seq]
            self._finish(rnd, dev)
        self._refill(rnd)

    def _settle_lost(self, rnd: _Round, dev: int, probes: int, reason: str) -> None:
        rnd.errors[dev] = reason
        rnd.settled[dev] += probes
        if rnd.settled[dev] >= rnd.count:
            self._finish(rnd, dev)

    def _finish(self, rnd: _Round, dev: int) -> None:
        if rnd.outcomes[dev] is not None:
            return
        rtts = tuple(rnd.rtts[dev])
        outcome = ProbeOutcome(rnd.targets[dev], rnd.count, rtts, None if rtts else rnd.errors[dev])
        rnd.outcomes[dev] = outcome
        rnd.active -= 1
        rnd.left -= 1
        if rnd.on_outcome is not None:
            try:
                rnd.on_outcome(dev, outcome)
            except Exception as exc:  # surfaced by sweep_round
                if not rnd.future.done():
                    rnd.future.set_exception(exc)
                self._abort(rnd)
                return
        if rnd.left == 0 and not rnd.future.done():
            rnd.future.set_result(None)

    # -- replies -----------------------------------------------------------------------------
    def _on_readable(self, family: _Family) -> None:
        """Loop reader callback: drain the replies waiting on the socket (bounded per call)."""
        sock = family.sock
        buf = family.buffer
        inflight = self._inflight
        unpack = _V4_HEADER.unpack_from
        clock = time.perf_counter
        touched: set[_Round] = set()
        check_id = self._privileged
        for _ in range(_READ_BUDGET):
            try:
                n, source = sock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                logger.warning("icmp: receive failed: %s", exc)
                break
            arrived = clock()
            off = (buf[0] & 0x0F) * 4 if family.ip_header else 0
            if n < off + 8:
                continue
            kind = buf[off]
            if kind == family.reply_type:
                ident, seq = unpack(buf, off + 4)
                is_reply = True
            elif kind in family.error_types:
                inner = off + 8
                inner += (buf[inner] & 0x0F) * 4 if family.version == 4 else 40
                if n < inner + 8 or buf[inner] != family.request_type:
                    continue
                ident, seq = unpack(buf, inner + 4)
                is_reply = False
            else:
                continue
            if check_id and ident != self._id:
                continue
            entry = inflight.get(seq)
            if entry is None:
                continue  # late reply after its deadline, a duplicate, or another pinger's
            rnd, slot = entry
            dev = slot // rnd.count
            if is_reply and source[0] != rnd.targets[dev]:
                continue  # not the host we asked
            del inflight[seq]
            if is_reply:
                rtt = arrived - rnd.sent_at[slot]
                if rtt <= rnd.timeout:
                    rnd.rtts[dev].append(rtt * 1000.0)
                    self.received += 1
            rnd.settled[dev] += 1
            if rnd.settled[dev] >= rnd.count:
                self._finish(rnd, dev)
                touched.add(rnd)
        for rnd in touched:
            self._refill(rnd)
