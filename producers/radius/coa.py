"""Contract-status events -> RFC 5176 CoA-Request / Disconnect-Request to the NAS holding the
session, with timeouts, retries, a result event per request and an idempotency ledger.

``plan_for`` is the pure policy, ``CoaSender`` the UDP exchange (blocking socket, one request at
a time), ``CoaProcessor`` ties them to the replica, the live-sessions table and the ledger. The
Kafka side (consumer group, offset commits, loading the ledger) is ``streams/radius/coa_worker``.
See docs/decisions/0051-radius-coa-ledger-from-result-topic.md.
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from filas.catalog import TopicSpec
from filas.catalog.radius import COA_RESULTS
from filas.settings import RadiusSettings
from producers.envelope import envelope
from producers.radius.coa_packet import (
    COA_REQUEST,
    DISCONNECT_REQUEST,
    AttributeValue,
    build_request,
    parse_reply,
)
from producers.radius.errors import MalformedPacket
from producers.radius.policy import rate_limit
from producers.radius.vendors import event_value, rate_attributes
from streams.radius.replica import NasEntry, StateReplica, Subscriber
from streams.radius.sessions import LiveSession, SessionTable

logger = logging.getLogger(__name__)

SOURCE = "radius-coa"


class CoaAction(StrEnum):
    DISCONNECT = "DISCONNECT"
    COA = "COA"
    NONE = "NONE"


class CoaOutcome(StrEnum):
    ACK = "ACK"
    NAK = "NAK"
    TIMEOUT = "TIMEOUT"
    NO_SESSION = "NO_SESSION"
    NO_NAS = "NO_NAS"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, slots=True)
class CoaPlan:
    action: CoaAction
    attributes: Mapping[str, str] = field(default_factory=dict)


def _kbps(kbps: int) -> str:
    return f"{kbps // 1000}M" if kbps >= 1000 and kbps % 1000 == 0 else f"{kbps}k"


def plan_for(
    event: Mapping[str, Any], subscriber: Subscriber | None, settings: RadiusSettings
) -> CoaPlan:
    """What one ContractStatusChanged asks of a live session.

    BLOCKED: ``coa_block_action`` (disconnect: the NAS re-authenticates into the block pool or is
    rejected, per ``blocked_policy``; coa: block pool + block rate on the running session).
    ACTIVE (trust unblock, payment, plan change): ``coa_unblock_action`` (coa: the plan's rate,
    the new plan's when the event carries it). REDUCED: the reduced rate. SUSPENDED/CANCELLED:
    disconnect. Anything else: nothing.
    """
    new = str(event["new_status"])
    if new == "BLOCKED":
        if settings.coa_block_action == "disconnect":
            return CoaPlan(CoaAction.DISCONNECT)
        return CoaPlan(
            CoaAction.COA,
            {"Mikrotik-Rate-Limit": settings.block_rate_limit, "Framed-Pool": settings.block_pool},
        )
    if new in ("SUSPENDED", "CANCELLED"):
        return CoaPlan(CoaAction.DISCONNECT)
    if new == "REDUCED":
        return CoaPlan(CoaAction.COA, {"Mikrotik-Rate-Limit": settings.reduced_rate_limit})
    if new == "ACTIVE":
        if str(event.get("previous_status")) == "ACTIVE" and event.get("reason") != "PLAN_CHANGE":
            return CoaPlan(CoaAction.NONE)
        if settings.coa_unblock_action == "disconnect":
            return CoaPlan(CoaAction.DISCONNECT)
        up, down = event.get("new_upload_kbps"), event.get("new_download_kbps")
        if up is not None and down is not None:
            rate: str | None = f"{_kbps(int(up))}/{_kbps(int(down))}"
        else:
            rate = rate_limit(subscriber) if subscriber is not None else None
        attributes = {"Mikrotik-Rate-Limit": rate} if rate else {}
        if settings.default_pool:
            attributes["Framed-Pool"] = settings.default_pool
        return CoaPlan(CoaAction.COA, attributes)
    return CoaPlan(CoaAction.NONE)


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: CoaOutcome
    attempts: int
    error_cause: int | None
    latency_ms: float


class CoaSender:
    """One request at a time on a blocking UDP socket: send, wait ``timeout_s`` for a valid
    answer, retransmit the same bytes (same identifier and authenticator, RFC 5080) up to
    ``retries`` times. Stray, forged or malformed datagrams are ignored."""

    def __init__(self, timeout_s: float, retries: int, *, message_authenticator: bool = True):
        self._timeout = timeout_s
        self._retries = retries
        self._message_authenticator = message_authenticator
        self._ids = itertools.cycle(range(256))

    def send(
        self,
        action: CoaAction,
        address: tuple[str, int],
        secret: bytes,
        attributes: Mapping[str, AttributeValue],
    ) -> SendResult:
        code = DISCONNECT_REQUEST if action is CoaAction.DISCONNECT else COA_REQUEST
        request = build_request(
            code,
            next(self._ids),
            secret,
            attributes,
            message_authenticator=self._message_authenticator,
        )
        started = time.monotonic()
        attempts = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(self._retries + 1):
                attempts += 1
                sock.sendto(request, address)
                deadline = time.monotonic() + self._timeout
                while (remaining := deadline - time.monotonic()) > 0:
                    sock.settimeout(remaining)
                    try:
                        data, source = sock.recvfrom(4096)
                    except TimeoutError:
                        break
                    except OSError as exc:  # ICMP port unreachable etc.: wait out the try
                        logger.debug("coa: %s from %s", exc, address)
                        time.sleep(max(0.0, deadline - time.monotonic()))
                        break
                    if source[0] != address[0]:
                        continue
                    try:
                        reply = parse_reply(data, request, secret)
                    except MalformedPacket as exc:
                        logger.warning("coa: ignored reply from %s: %s", address[0], exc)
                        continue
                    return SendResult(
                        CoaOutcome.ACK if reply.ack else CoaOutcome.NAK,
                        attempts,
                        reply.error_cause,
                        (time.monotonic() - started) * 1000.0,
                    )
        return SendResult(CoaOutcome.TIMEOUT, attempts, None, (time.monotonic() - started) * 1000.0)


class Sender(Protocol):
    def send(
        self,
        action: CoaAction,
        address: tuple[str, int],
        secret: bytes,
        attributes: Mapping[str, AttributeValue],
    ) -> SendResult: ...


class Ledger:
    """(status event id, action) pairs already handled. Seeded from ``radius.coa-results`` at
    start-up (every result event is a ledger entry), then kept by this process."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._seen: set[tuple[str, str]] = set(entries)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def add(self, key: tuple[str, str]) -> None:
        self._seen.add(key)

    def __len__(self) -> int:
        return len(self._seen)


Emit = Callable[[TopicSpec, Mapping[str, Any]], None]


@dataclass
class CoaStats:
    events: int = 0
    duplicates: int = 0
    sent: int = 0
    ack: int = 0
    nak: int = 0
    timeout: int = 0
    no_session: int = 0


def _epoch_ms(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp() * 1000.0
    if isinstance(value, int | float):
        return float(value)
    return None


class CoaProcessor:
    """One status event -> its result events, emitted (and acknowledged: ``emit`` must block
    until the broker acks) before the event counts as done in the ledger."""

    def __init__(
        self,
        settings: RadiusSettings,
        replica: StateReplica,
        sessions: SessionTable,
        sender: Sender,
        emit: Emit,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._replica = replica
        self._sessions = sessions
        self._sender = sender
        self._emit = emit
        self.ledger = ledger or Ledger()
        self._clock = clock
        self.stats = CoaStats()

    def _logins(self, contract_id: str) -> list[Subscriber]:
        # A scan: status events are rare next to Access-Requests; an index is a later step.
        return [s for s in list(self._replica.subscribers.values()) if s.contract_id == contract_id]

    def _nas(self, nas_id: str | None) -> NasEntry | None:
        if nas_id is None:
            return None
        for nas in list(self._replica.nas_by_ip.values()):
            if nas.nas_id == nas_id and nas.active:
                return nas
        return None

    def handle(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Send what the event asks for; return the result records emitted ([] for a replay)."""
        self.stats.events += 1
        event_id = str(event["envelope"]["event_id"])
        contract_id = str(event["contract_id"])
        subscribers = self._logins(contract_id)
        plan = plan_for(event, subscribers[0] if subscribers else None, self._settings)
        key = (event_id, plan.action.value)
        if key in self.ledger:
            self.stats.duplicates += 1
            logger.info("coa: status event %s (%s) already handled", event_id, plan.action)
            return []
        results: list[dict[str, Any]] = []
        base = {
            "contract_id": contract_id,
            "status_event_id": event_id,
            "action": plan.action.value,
            "reason": str(event.get("reason", "OTHER")),
        }
        occurred = _epoch_ms(event["envelope"].get("occurred_at"))
        if plan.action is CoaAction.NONE:
            results.append(self._result(base, CoaOutcome.SKIPPED, occurred))
        else:
            for subscriber in subscribers:
                per_login = plan_for(event, subscriber, self._settings)
                for session in self._sessions.active(subscriber.login):
                    results.append(self._send(base, per_login, subscriber, session, occurred))
            if not results:
                self.stats.no_session += 1
                results.append(self._result(base, CoaOutcome.NO_SESSION, occurred))
        for record in results:
            self._emit(COA_RESULTS, record)
        self.ledger.add(key)
        return results

    def _send(
        self,
        base: dict[str, Any],
        plan: CoaPlan,
        subscriber: Subscriber,
        session: LiveSession,
        occurred: float | None,
    ) -> dict[str, Any]:
        nas = self._nas(session.nas_id)
        secret = self._settings.nas_secrets.get(nas.secret_ref) if nas is not None else None
        target = {
            "login": subscriber.login,
            "nas_id": session.nas_id,
            "nas_ip": nas.ip if nas is not None else None,
            "session_id": session.session_id,
        }
        if nas is None or secret is None:
            logger.warning("coa: no NAS/secret for session %s of %s", session.session_id, target)
            return self._result(base | target, CoaOutcome.NO_NAS, occurred)
        attributes: dict[str, AttributeValue] = {
            "User-Name": subscriber.login,
            "Acct-Session-Id": session.session_id,
            "NAS-IP-Address": nas.ip,
        }
        if session.framed_ip:
            attributes["Framed-IP-Address"] = session.framed_ip
        extra: dict[str, AttributeValue] = {}
        if plan.action is CoaAction.COA:
            # The plan carries the rate as Mikrotik text; the NAS gets its vendor's dialect.
            extra = {k: v for k, v in plan.attributes.items() if k != "Mikrotik-Rate-Limit"}
            extra |= rate_attributes(
                nas.vendor,
                plan.attributes.get("Mikrotik-Rate-Limit"),
                self._settings.juniper_rate_service,
            )
        attributes |= extra
        attributes["Event-Timestamp"] = int(self._clock())
        self.stats.sent += 1
        sent = self._sender.send(
            plan.action, (nas.ip, nas.coa_port), secret.get_secret_value().encode(), attributes
        )
        if sent.outcome is CoaOutcome.ACK:
            self.stats.ack += 1
        elif sent.outcome is CoaOutcome.NAK:
            self.stats.nak += 1
        else:
            self.stats.timeout += 1
        return self._result(
            base | target | {"attributes": {k: event_value(v) for k, v in extra.items()}},
            sent.outcome,
            occurred,
            attempts=sent.attempts,
            error_cause=sent.error_cause,
            latency_ms=sent.latency_ms,
        )

    def _result(
        self,
        fields: dict[str, Any],
        outcome: CoaOutcome,
        occurred: float | None,
        *,
        attempts: int = 0,
        error_cause: int | None = None,
        latency_ms: float = 0.0,
    ) -> dict[str, Any]:
        now_ms = self._clock() * 1000.0
        return {
            "envelope": envelope(SOURCE, correlation_id=fields["status_event_id"]),
            "login": None,
            "nas_id": None,
            "nas_ip": None,
            "session_id": None,
            "attributes": {},
            **fields,
            "outcome": outcome.value,
            "attempts": attempts,
            "error_cause": error_cause,
            "latency_ms": latency_ms,
            "status_event_lag_ms": None if occurred is None else max(0.0, now_ms - occurred),
        }
