"""The run's NAS fleet: RADIUS clients that send from each NAS's own loopback address, and the
NAS side of RFC 5176 (a CoA/Disconnect listener per NAS that ACKs, like a BNG would).

Every NAS of the simulated ISP has an address 127.<octet>.1.<n> (the simulator's loopback
address plan), so the gateway recognises it by source address exactly as in production, and the
CoA worker reaches it at ``ip:coa_port`` from the ``ixc.nas`` record.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from producers.radius.pyrad_adapter import ACCESS_REQUEST, ACCOUNTING_REQUEST, RadiusCodec

COA_REQUEST = 43
DISCONNECT_REQUEST = 40
SOCKETS_PER_NAS = 2


@dataclass(frozen=True)
class NasInfo:
    nas_id: str
    ip: str
    secret: bytes
    pop_id: str


@dataclass(frozen=True)
class Request:
    """One packet a NAS sends: Access-Request (PAP or CHAP) or Accounting-Request."""

    nas: int  # index into the fleet
    code: int
    attributes: Mapping[str, str | int | bytes]
    password: str | None = None  # PAP
    chap_password: str | None = None  # CHAP (RFC 1994 MD5 over id, password, challenge)


@dataclass(frozen=True)
class Reply:
    code: int
    rtt_s: float
    retransmitted: bool


@dataclass
class ExchangeStats:
    sent: int = 0
    retransmissions: int = 0
    answered: int = 0
    unanswered: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    rtts_s: list[float] = field(default_factory=list)

    def percentile_ms(self, q: float) -> float:
        if not self.rtts_s:
            return float("nan")
        ordered = sorted(self.rtts_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class _Pending:
    index: int
    first_sent: float
    last_sent: float
    packet: bytes
    attempts: int = 1


def chap_attributes(password: str, ident: int, challenge: bytes) -> dict[str, bytes]:
    digest = hashlib.md5(bytes([ident]) + password.encode() + challenge).digest()  # noqa: S324
    return {"CHAP-Password": bytes([ident]) + digest, "CHAP-Challenge": challenge}


class NasFleet:
    """RADIUS clients of every NAS (``SOCKETS_PER_NAS`` UDP sockets bound to the NAS address)."""

    def __init__(self, nas: Sequence[NasInfo], host: str, auth_port: int, acct_port: int) -> None:
        self.nas = list(nas)
        self.host = host
        self.auth_port = auth_port
        self.acct_port = acct_port
        self.codec = RadiusCodec()
        self._socks: list[socket.socket] = []
        for info in self.nas:
            for _ in range(SOCKETS_PER_NAS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
                sock.bind((info.ip, 0))
                sock.setblocking(False)
                self._socks.append(sock)

    def close(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks.clear()

    def _encode(self, request: Request, ident: int) -> bytes:
        info = self.nas[request.nas]
        attributes: dict[str, str | int | bytes] = {"NAS-IP-Address": info.ip}
        attributes.update(request.attributes)
        if request.chap_password is not None:
            attributes.update(chap_attributes(request.chap_password, ident, os.urandom(16)))
        return self.codec.build_request(
            request.code,
            info.secret,
            attributes,
            password=request.password,
            identifier=ident,
            message_authenticator=request.code == ACCESS_REQUEST,
        )

    def exchange(
        self,
        requests: Sequence[Request],
        *,
        window_s: float,
        timeout_s: float = 3.0,
        retries: int = 1,
    ) -> tuple[list[Reply | None], ExchangeStats]:
        """Send every request, paced evenly over ``window_s``; a request unanswered after
        ``timeout_s`` is retransmitted (same identifier and bytes, as a NAS does) ``retries``
        times. Returns one reply (or None) per request, in order."""
        stats = ExchangeStats()
        replies: list[Reply | None] = [None] * len(requests)
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(self._socks):
            selector.register(sock, selectors.EVENT_READ, index)
        free: list[list[int]] = [list(range(256)) for _ in self._socks]
        pending: dict[tuple[int, int], _Pending] = {}
        turn = [0] * len(self.nas)

        def port_of(code: int) -> int:
            return self.acct_port if code == ACCOUNTING_REQUEST else self.auth_port

        def receive(wait: float) -> None:
            for key, _ in selector.select(max(0.0, wait)):
                sock_index = int(key.data)
                sock = self._socks[sock_index]
                while True:
                    try:
                        data = sock.recv(4096)
                    except (BlockingIOError, InterruptedError):
                        break
                    if len(data) < 20:
                        continue
                    entry = pending.pop((sock_index, data[1]), None)
                    if entry is None:
                        continue  # a late duplicate
                    free[sock_index].append(data[1])
                    rtt = time.perf_counter() - entry.first_sent
                    replies[entry.index] = Reply(data[0], rtt, entry.attempts > 1)
                    stats.answered += 1
                    stats.codes[data[0]] += 1
                    stats.rtts_s.append(rtt)

        def resend_expired() -> None:
            now = time.perf_counter()
            for key, entry in list(pending.items()):
                if now - entry.last_sent < timeout_s:
                    continue
                if entry.attempts > retries:
                    del pending[key]
                    free[key[0]].append(key[1])
                    stats.unanswered += 1
                    continue
                code = requests[entry.index].code
                with contextlib.suppress(BlockingIOError):
                    self._socks[key[0]].sendto(entry.packet, (self.host, port_of(code)))
                entry.last_sent = now
                entry.attempts += 1
                stats.retransmissions += 1

        start = time.perf_counter()
        total = len(requests)
        try:
            for k, request in enumerate(requests):
                due = start + (k * window_s / total if total else 0)
                while (now := time.perf_counter()) < due:
                    receive(due - now)
                    resend_expired()
                base = request.nas * SOCKETS_PER_NAS
                while True:
                    sock_index = base + turn[request.nas] % SOCKETS_PER_NAS
                    turn[request.nas] += 1
                    if free[sock_index]:
                        break
                    if all(not free[base + s] for s in range(SOCKETS_PER_NAS)):
                        receive(0.05)
                        resend_expired()
                ident = free[sock_index].pop(0)
                packet = self._encode(request, ident)
                sent = time.perf_counter()
                pending[(sock_index, ident)] = _Pending(k, sent, sent, packet)
                with contextlib.suppress(BlockingIOError):
                    self._socks[sock_index].sendto(packet, (self.host, port_of(request.code)))
                stats.sent += 1
                receive(0)
            deadline = time.perf_counter() + timeout_s * (retries + 1) + 0.5
            while pending and time.perf_counter() < deadline:
                receive(0.05)
                resend_expired()
            stats.unanswered += len(pending)
        finally:
            selector.close()
        return replies, stats


class CoaListeners:
    """The NAS side of RFC 5176: one UDP socket per NAS on ``ip:port`` answering every
    CoA-Request (43 -> 44 ACK) and Disconnect-Request (40 -> 41 ACK), signed with that NAS's
    secret. Counts what it received per (NAS, code)."""

    def __init__(self, nas: Sequence[NasInfo], port: int) -> None:
        self.received: Counter[tuple[str, int]] = Counter()
        self._secrets: dict[int, bytes] = {}
        self._socks: list[socket.socket] = []
        self._ids: dict[int, str] = {}
        self._selector = selectors.DefaultSelector()
        for info in nas:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((info.ip, port))
            sock.setblocking(False)
            self._secrets[sock.fileno()] = info.secret
            self._ids[sock.fileno()] = info.nas_id
            self._selector.register(sock, selectors.EVENT_READ)
            self._socks.append(sock)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coa-listeners", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data, addr = sock.recvfrom(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                if len(data) < 20 or data[0] not in (COA_REQUEST, DISCONNECT_REQUEST):
                    continue
                with self._lock:
                    self.received[(self._ids[sock.fileno()], data[0])] += 1
                header = struct.pack("!BBH", data[0] + 1, data[1], 20)
                secret = self._secrets[sock.fileno()]
                auth = hashlib.md5(header + data[4:20] + secret).digest()  # noqa: S324 - RFC 5176
                with contextlib.suppress(OSError):
                    sock.sendto(header + auth, addr)

    def count(self, code: int) -> int:
        with self._lock:
            return sum(n for (_, c), n in self.received.items() if c == code)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._selector.close()
        for sock in self._socks:
            sock.close()
