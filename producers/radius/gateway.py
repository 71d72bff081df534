"""The RADIUS gateway: asyncio UDP endpoints answering NAS requests from the local replica.

Per packet (all in memory, no await on the hot path):
1. the source IP must be a known NAS with a secret in the store, else drop + log (never answer);
2. RFC 5080 duplicate detection: same source, identifier and authenticator inside the window
   gets the cached reply, never a second decision;
3. Access-Request: Message-Authenticator verified when present and required unless the NAS record
   opts out (BlastRADIUS); PAP/CHAP checked against the replica; decision by ``policy.decide``;
   Accounting-Request: Request Authenticator verified, answered at once;
4. the AuthRequest/AuthDecision/AccountingRecord events go to an ``EventSink`` after the reply.
Malformed packets are counted and dropped; no exception escapes a datagram handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.metrics import PROCESSING_SECONDS
from filas.settings import RadiusSettings
from producers.envelope import envelope
from producers.radius import policy
from producers.radius.admission import FairQueue
from producers.radius.errors import MalformedPacket
from producers.radius.events import EventSink
from producers.radius.mschap import ERROR_CODES
from producers.radius.pyrad_adapter import (
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    RadiusCodec,
    RadiusRequest,
    peek_header,
)
from producers.radius.vendors import event_value
from streams.radius.replica import NasEntry, StateReplica, normalize_mac
from streams.radius.sessions import SessionTable

logger = logging.getLogger(__name__)

SOURCE_SYSTEM = "filas-radius-gateway"

_SERVICE_TYPES = {
    "Framed-User": "framed_user",
    "Login-User": "login_user",
    "Call-Check": "call_check",
    "Authorize-Only": "authorize_only",
    "Outbound-User": "outbound_user",
}
_STATUS_TYPES = {
    "Start": "start",
    "Interim-Update": "interim_update",
    "Stop": "stop",
    "Accounting-On": "accounting_on",
    "Accounting-Off": "accounting_off",
}
_TERMINATE_CAUSES = frozenset(
    {
        "user_request", "lost_carrier", "lost_service", "idle_timeout", "session_timeout",
        "admin_reset", "admin_reboot", "port_error", "nas_error", "nas_request", "nas_reboot",
        "port_unneeded", "port_preempted", "port_suspended", "service_unavailable", "callback",
        "user_error", "host_request",
    }
)  # fmt: skip


@dataclass
class GatewayStats:
    received: int = 0
    answered: int = 0
    accepts: int = 0
    rejects: int = 0
    accounting: int = 0
    duplicates: int = 0
    dropped_malformed: int = 0
    dropped_unknown_nas: int = 0
    dropped_no_secret: int = 0
    dropped_missing_message_authenticator: int = 0
    dropped_bad_authenticator: int = 0
    dropped_unsupported: int = 0
    internal_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class DuplicateCache:
    """RFC 5080 section 2.2.2: (source, identifier, authenticator) -> reply, for ``window_s``."""

    def __init__(self, window_s: float, max_entries: int = 200_000) -> None:
        self._window = window_s
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, int, int, bytes], tuple[float, bytes]] = OrderedDict()

    def get(self, key: tuple[str, int, int, bytes], now: float) -> bytes | None:
        self._expire(now)
        hit = self._entries.get(key)
        return hit[1] if hit is not None else None

    def put(self, key: tuple[str, int, int, bytes], reply: bytes, now: float) -> None:
        self._entries[key] = (now + self._window, reply)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first[0] > now:
                return
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RadiusGateway:
    def __init__(
        self,
        settings: RadiusSettings,
        replica: StateReplica,
        events: EventSink,
        codec: RadiusCodec | None = None,
        sessions: SessionTable | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.replica = replica
        self.events = events
        self.codec = codec or RadiusCodec()
        self.stats = GatewayStats()
        self.instance = settings.gateway_instance or default_instance()
        # nas_id -> whether its last Access-Request carried Message-Authenticator.
        self.nas_sends_message_authenticator: dict[str, bool] = {}
        self._secrets = {
            ref: secret.get_secret_value().encode() for ref, secret in settings.nas_secrets.items()
        }
        self._dedupe = DuplicateCache(settings.duplicate_window_s)
        self._listeners: list[_Listener] = []
        self.auth_port = 0
        self.acct_port = 0
        self._unknown_logged: dict[str, float] = {}

    # ---- network --------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.settings.bind_host
        for port, handler in (
            (self.settings.auth_port, self.handle_auth),
            (self.settings.acct_port, self.handle_acct),
        ):
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
            try:
                if self.settings.reuse_port:
                    # Workers share the port; Linux hashes each NAS flow (source address and
                    # port) to one of them, so retransmissions meet their own dedupe cache.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    # A reconnect storm arrives faster than one core answers: queue it in the
                    # kernel (capped by net.core.rmem_max/wmem_max) instead of dropping it.
                    sock.setsockopt(socket.SOL_SOCKET, option, self.settings.socket_buffer_bytes)
                sock.bind(address)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            listener = _Listener(sock, handler, self, loop)
            loop.add_reader(sock.fileno(), listener.readable)
            self._listeners.append(listener)
        self.auth_port = self._listeners[0].sock.getsockname()[1]
        self.acct_port = self._listeners[1].sock.getsockname()[1]
        logger.info(
            "radius gateway %s listening on %s auth %d acct %d",
            self.instance,
            host,
            self.auth_port,
            self.acct_port,
        )

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()

    def admission_stats(self) -> dict[str, int]:
        """Both ports' admission counters summed (docs/radius.md, reconnect storms)."""
        total: dict[str, int] = {}
        for listener in self._listeners:
            for name, value in listener.queue.stats.as_dict().items():
                total[name] = total.get(name, 0) + value
        return total

    def cached_reply(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        """The RFC 5080 cached reply for a retransmission, answered before admission."""
        if len(data) < 20:
            return None
        key = (addr[0], addr[1], data[1], data[4:20])
        cached = self._dedupe.get(key, time.monotonic())
        if cached is not None:
            self.stats.received += 1
            self.stats.duplicates += 1
        return cached

    # ---- shared steps ---------------------------------------------------------------------

    def _nas_and_secret(self, ip: str) -> tuple[NasEntry, bytes] | None:
        nas = self.replica.nas(ip)
        if nas is None or not nas.active:
            self.stats.dropped_unknown_nas += 1
            self._log_once(ip, "radius: dropped packet from unknown NAS %s", ip)
            return None
        secret = self._secrets.get(nas.secret_ref)
        if secret is None:
            self.stats.dropped_no_secret += 1
            self._log_once(
                ip, "radius: NAS %s (%s): no secret %r in the store", nas.nas_id, ip, nas.secret_ref
            )
            return None
        return nas, secret

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._unknown_logged.get(key, -1e9) > 60:
            self._unknown_logged[key] = now
            logger.warning(message, *args)

    def _receive(
        self, data: bytes, addr: tuple[str, int], expected_code: int
    ) -> tuple[NasEntry, RadiusRequest, tuple[str, int, int, bytes], float] | bytes | None:
        """Common front: NAS lookup, duplicate check, decode. Returns a cached reply (bytes),
        None to drop, or what the handler needs."""
        self.stats.received += 1
        try:
            header = peek_header(data)
        except MalformedPacket:
            self.stats.dropped_malformed += 1
            return None
        if header.code != expected_code:
            self.stats.dropped_unsupported += 1
            return None
        found = self._nas_and_secret(addr[0])
        if found is None:
            return None
        nas, secret = found
        now = time.monotonic()
        key = (addr[0], addr[1], header.identifier, header.authenticator)
        cached = self._dedupe.get(key, now)
        if cached is not None:
            self.stats.duplicates += 1
            return cached
        try:
            request = self.codec.decode(data, secret)
        except MalformedPacket:
            self.stats.dropped_malformed += 1
            return None
        return nas, request, key, now

    # ---- Access-Request -------------------------------------------------------------------

    def handle_auth(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        received = self._receive(data, addr, ACCESS_REQUEST)
        if received is None or isinstance(received, bytes):
            return received
        nas, request, key, started = received
        codec = self.codec
        self.nas_sends_message_authenticator[nas.nas_id] = request.has_message_authenticator
        if request.has_message_authenticator:
            if not codec.message_authenticator_valid(request):
                self.stats.dropped_bad_authenticator += 1
                self._log_once(
                    f"ma:{nas.nas_id}", "radius: bad Message-Authenticator from NAS %s", nas.nas_id
                )
                return None
        elif nas.requires_message_authenticator or not (
            self.settings.allow_message_authenticator_opt_out
        ):
            self.stats.dropped_missing_message_authenticator += 1
            self._log_once(
                f"noma:{nas.nas_id}",
                "radius: Access-Request without Message-Authenticator from NAS %s dropped",
                nas.nas_id,
            )
            return None
        login = request.text("User-Name")
        if not login:
            self.stats.dropped_malformed += 1
            return None

        method = codec.credential(request)
        subscriber = self.replica.subscriber(login)
        mschap = codec.mschap2(request) if method == "MSCHAPV2" else None

        def check(password: str) -> bool:
            if method == "PAP":
                return codec.check_pap(request, password)
            if method == "CHAP":
                return codec.check_chap(request, password)
            return mschap is not None and mschap.verify(login, password)

        calling = request.text("Calling-Station-Id")
        decision = policy.decide(
            subscriber=subscriber,
            contract_status=(
                self.replica.contract_status.get(subscriber.contract_id) if subscriber else None
            ),
            nas=nas,
            calling_station_id=calling,
            password_ok=check,
            settings=self.settings,
            active_sessions=(
                self.sessions.count(login) if self.sessions is not None and subscriber else 0
            ),
        )
        encoded = b""
        if mschap is not None:  # RFC 2548: success + MPPE keys, or MS-CHAP-Error
            if decision.accept and subscriber is not None and subscriber.password is not None:
                encoded = mschap.success_attributes(
                    login, subscriber.password, codec.secret(request), request.authenticator
                )
            elif not decision.accept:
                encoded = mschap.error_attribute(
                    ERROR_CODES.get(decision.reason, 691),
                    decision.reply_message or "Authentication failed",
                )
        reply = codec.access_reply(
            request, accept=decision.accept, attributes=decision.attributes, encoded=encoded
        )
        self._dedupe.put(key, reply, started)
        self.stats.answered += 1
        if decision.accept:
            self.stats.accepts += 1
        else:
            self.stats.rejects += 1
        latency_us = int((time.monotonic() - started) * 1_000_000)
        # Events after the reply is built; the endpoint sends it right after we return.
        try:
            contract_id = subscriber.contract_id if subscriber else None
            self._publish_auth(
                request, nas, addr, login, method, calling, decision, latency_us, contract_id
            )
        except Exception:  # an event problem must never cost the NAS its answer
            self.stats.internal_errors += 1
            logger.exception("radius: building auth events failed")
        return reply

    def _publish_auth(
        self,
        request: RadiusRequest,
        nas: NasEntry,
        addr: tuple[str, int],
        login: str,
        method: str,
        calling: str | None,
        decision: policy.Decision,
        latency_us: int,
        contract_id: str | None,
    ) -> None:
        now = datetime.now(UTC)
        request_envelope = envelope(SOURCE_SYSTEM, occurred_at=now, event_id=_event_id())
        service = request.text("Service-Type")
        port_type = request.first("NAS-Port-Type")
        self.events.publish(
            AUTH_REQUESTS,
            {
                "envelope": request_envelope,
                "login": login,
                "nas_id": nas.nas_id,
                "nas_ip_address": request.text("NAS-IP-Address") or addr[0],
                "nas_identifier": request.text("NAS-Identifier"),
                "nas_port": request.number("NAS-Port"),
                "nas_port_id": request.text("NAS-Port-Id"),
                "nas_port_type": None if port_type is None else str(port_type),
                "calling_station_id": normalize_mac(calling) if calling else None,
                "called_station_id": request.text("Called-Station-Id"),
                "auth_method": method,
                "service_type": None if service is None else _SERVICE_TYPES.get(service, "other"),
                "framed_protocol": request.text("Framed-Protocol"),
                "packet_identifier": request.identifier,
                "source_address": f"{addr[0]}:{addr[1]}",
                "received_at": now - timedelta(microseconds=latency_us),
                "gateway_instance": self.instance,
            },
        )
        self.events.publish(
            AUTH_DECISIONS,
            {
                "envelope": envelope(
                    SOURCE_SYSTEM,
                    correlation_id=request_envelope["event_id"],
                    occurred_at=now,
                    event_id=_event_id(),
                ),
                "login": login,
                "request_event_id": request_envelope["event_id"],
                "decision": "accept" if decision.accept else "reject",
                "reason": decision.reason,
                "reply_message": decision.reply_message,
                "reply_attributes": {k: event_value(v) for k, v in decision.attributes.items()},
                "contract_id": contract_id,
                "pool": decision.pool,
                "framed_ip_address": decision.framed_ip,
                "rate_limit": decision.rate_limit,
                "nas_ip_address": request.text("NAS-IP-Address") or addr[0],
                "latency_us": latency_us,
                "decided_at": now,
                "gateway_instance": self.instance,
            },
        )

    # ---- Accounting-Request ---------------------------------------------------------------

    def handle_acct(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        received = self._receive(data, addr, ACCOUNTING_REQUEST)
        if received is None or isinstance(received, bytes):
            return received
        nas, request, key, started = received
        codec = self.codec
        if not codec.accounting_authenticator_valid(request) or (
            request.has_message_authenticator and not codec.message_authenticator_valid(request)
        ):
            self.stats.dropped_bad_authenticator += 1
            self._log_once(
                f"acct:{nas.nas_id}", "radius: bad accounting authenticator from %s", nas.nas_id
            )
            return None
        status = request.text("Acct-Status-Type")
        status_type = _STATUS_TYPES.get(status or "")
        if status_type is None:
            self.stats.dropped_malformed += 1
            return None
        reply = codec.accounting_reply(request)
        self._dedupe.put(key, reply, started)
        self.stats.answered += 1
        self.stats.accounting += 1
        try:
            self._publish_accounting(request, nas, addr, status_type)
        except Exception:
            self.stats.internal_errors += 1
            logger.exception("radius: building the accounting event failed")
        return reply

    def _publish_accounting(
        self, request: RadiusRequest, nas: NasEntry, addr: tuple[str, int], status_type: str
    ) -> None:
        now = datetime.now(UTC)
        login = request.text("User-Name") or f"@nas/{nas.nas_id}"  # Accounting-On/Off
        session_id = request.text("Acct-Session-Id") or ""
        delay = request.number("Acct-Delay-Time") or 0
        stamp = request.number("Event-Timestamp")
        event_at = datetime.fromtimestamp(stamp, UTC) if stamp else now - timedelta(seconds=delay)
        cause = request.text("Acct-Terminate-Cause")
        if cause is not None:
            cause = cause.lower().replace("-", "_")
            cause = cause if cause in _TERMINATE_CAUSES else "other"
        calling = request.text("Calling-Station-Id")
        unique = hashlib.sha256(f"{nas.nas_id}\0{session_id}\0{login}".encode()).hexdigest()[:32]
        self.events.publish(
            ACCOUNTING,
            {
                "envelope": envelope(SOURCE_SYSTEM),
                "login": login,
                "status_type": status_type,
                "session_id": session_id,
                "unique_session_id": unique,
                "nas_id": nas.nas_id,
                "nas_ip_address": request.text("NAS-IP-Address") or addr[0],
                "nas_identifier": request.text("NAS-Identifier"),
                "nas_port": request.number("NAS-Port"),
                "nas_port_id": request.text("NAS-Port-Id"),
                "calling_station_id": normalize_mac(calling) if calling else None,
                "framed_ip_address": request.text("Framed-IP-Address"),
                "framed_ipv6_prefix": request.text("Framed-IPv6-Prefix"),
                "delegated_ipv6_prefix": request.text("Delegated-IPv6-Prefix"),
                "input_octets": _octets(request, "Input"),
                "output_octets": _octets(request, "Output"),
                "input_packets": request.number("Acct-Input-Packets") or 0,
                "output_packets": request.number("Acct-Output-Packets") or 0,
                "session_time_s": request.number("Acct-Session-Time") or 0,
                "terminate_cause": cause if status_type == "stop" else None,
                "delay_s": delay,
                "event_at": event_at,
                "received_at": now,
            },
        )


def _event_id() -> str:
    """A random (version 4) UUID string without ``uuid.UUID`` objects or a urandom call per
    event: two per Access-Request were ~10 % of the hot path. The generator is seeded from the
    OS at start-up in every process (workers are spawned, not forked)."""
    n = (_random_bits(128) & _UUID_CLEAR) | _UUID_V4
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_random_bits = random.Random().getrandbits  # seeded from os.urandom
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)


def _octets(request: RadiusRequest, direction: str) -> int:
    low = request.number(f"Acct-{direction}-Octets") or 0
    high = request.number(f"Acct-{direction}-Gigawords") or 0
    return (high << 32) + low


Handler = Callable[[bytes, tuple[str, int]], bytes | None]


class _Listener:
    """One UDP port: the reader admits datagrams into a per-NAS ``FairQueue``; a drain step
    answers them round robin, ``admission_batch`` per event-loop turn, so the reader keeps
    emptying the kernel buffer (and classifying every NAS) while a storm is being served."""

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        gateway: RadiusGateway,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        settings = gateway.settings
        self.sock = sock
        self._handler = handler
        self._gateway = gateway
        self._loop = loop
        self._read_budget = settings.admission_read_budget
        self._batch = settings.admission_batch
        self.queue: FairQueue[tuple[bytes, tuple[str, int]]] = FairQueue(
            max_queued=settings.admission_max_queued,
            max_queued_per_nas=settings.admission_max_queued_per_nas,
            max_age_s=settings.admission_max_age_s,
            clock=time.monotonic,
        )
        self._drain_scheduled = False
        self._closed = False
        # Decision latency per port (stage handle_auth / handle_acct), queue wait excluded.
        self._latency = PROCESSING_SECONDS.labels(
            "radius-gateway", getattr(handler, "__name__", "handle")
        )

    def readable(self) -> None:
        sock = self.sock
        gateway = self._gateway
        for _ in range(self._read_budget):
            try:
                data, raw_addr = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                logger.debug("radius: socket error %s", exc)
                continue
            addr = (str(raw_addr[0]), int(raw_addr[1]))
            try:
                cached = gateway.cached_reply(data, addr)
            except Exception:
                gateway.stats.internal_errors += 1
                logger.exception("radius: unexpected error admitting a packet from %s", addr[0])
                continue
            if cached is not None:
                self._send(cached, addr)
                continue
            dedupe = (addr[0], addr[1], data[1], data[4:20]) if len(data) >= 20 else None
            if not self.queue.offer(addr[0], (data, addr), dedupe):
                gateway.stats.received += 1
        if self.queue and not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self.drain)

    def drain(self) -> None:
        self._drain_scheduled = False
        if self._closed:
            return
        for _ in range(self._batch):
            entry = self.queue.pop()
            if entry is None:
                break
            data, addr = entry
            started = time.perf_counter()
            try:
                reply = self._handler(data, addr)
            except Exception:  # the last line of defence: count, log, keep serving
                self._gateway.stats.internal_errors += 1
                logger.exception("radius: unexpected error handling a packet from %s", addr[0])
                continue
            self._latency.observe(time.perf_counter() - started)
            if reply is not None:
                self._send(reply, addr)
        if self.queue:
            self._drain_scheduled = True
            self._loop.call_soon(self.drain)

    def _send(self, reply: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(reply, addr)
        except (BlockingIOError, InterruptedError):
            # Send buffer full: the NAS retransmits and gets the cached reply.
            logger.debug("radius: send buffer full, reply to %s dropped", addr[0])
        except OSError as exc:
            logger.debug("radius: socket error %s", exc)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(RuntimeError, ValueError):  # the loop is already closed
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
