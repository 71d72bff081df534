"""CoA / Disconnect (RFC 5176) without Kafka: a pyrad-based NAS listener on a free UDP port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from pyrad import packet as rp
from pyrad.dictionary import Dictionary

from filas.catalog import TopicSpec
from filas.catalog.radius import COA_RESULTS
from filas.settings import RadiusSettings
from producers.envelope import envelope
from producers.radius.coa import CoaAction, CoaProcessor, CoaSender, Ledger, plan_for
from producers.radius.coa_packet import (
    COA_REQUEST,
    DISCONNECT_REQUEST,
    build_request,
    parse_reply,
)
from producers.radius.errors import MalformedPacket
from producers.radius.pyrad_adapter import DICTIONARY_PATH
from streams.radius.replica import StateReplica
from streams.radius.sessions import SessionTable

SECRET = b"coa-secret"
SECRET_REF = "ixc/nas/9/radius-secret"


@dataclass
class Received:
    code: int
    attributes: dict[str, list[Any]]
    at: float


@dataclass
class FakeNas:
    """A NAS's RFC 5176 listener (a UDP socket thread) built on pyrad: verifies the Request
    Authenticator and Message-Authenticator, records the request, answers ACK (or NAK with
    Error-Cause, or nothing when ``silent``)."""

    secret: bytes = SECRET
    answer: str = "ack"  # ack | nak | silent
    error_cause: int = 503
    received: list[Received] = field(default_factory=list)
    datagrams: int = 0
    port: int = 0
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._dict = Dictionary(str(DICTIONARY_PATH))

    def start(self) -> FakeNas:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._stopped = threading.Event()

        def run() -> None:
            while not self._stopped.is_set():
                try:
                    data, addr = sock.recvfrom(4096)
                except TimeoutError:
                    continue
                self.datagrams += 1
                reply = self.handle(data)
                if reply is not None:
                    sock.sendto(reply, addr)
            sock.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def handle(self, data: bytes) -> bytes | None:
        pkt = rp.CoAPacket(packet=data, secret=self.secret, dict=self._dict)
        if not pkt.VerifyCoARequest():
            return None
        if pkt.message_authenticator and not pkt.verify_message_authenticator():
            return None
        attrs = {k: list(pkt[k]) for k in pkt.keys() if isinstance(k, str)}  # noqa: SIM118 - pyrad
        self.received.append(Received(pkt.code, attrs, time.monotonic()))
        if self.answer == "silent":
            return None
        reply = pkt.CreateReply()
        if self.answer == "nak":
            reply.code = rp.CoANAK if pkt.code == rp.CoARequest else rp.DisconnectNAK
            reply["Error-Cause"] = self.error_cause
        raw: bytes = reply.ReplyPacket()
        return raw

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)


@pytest.fixture
def nas() -> Iterator[FakeNas]:
    listener = FakeNas().start()
    yield listener
    listener.stop()


def settings(**extra: Any) -> RadiusSettings:
    return RadiusSettings(
        nas_secrets={SECRET_REF: SecretStr(SECRET.decode())},
        coa_timeout_s=0.2,
        coa_retries=2,
        **extra,
    )


def status_event(new: str, previous: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "envelope": envelope("test"),
        "contract_id": "c-1",
        "customer_id": "1",
        "previous_status": previous,
        "new_status": new,
        "reason": reason,
        "changed_at": datetime.now(UTC),
    } | extra


BLOCK = ("BLOCKED", "ACTIVE", "NON_PAYMENT_BLOCK")
UNBLOCK = ("ACTIVE", "BLOCKED", "TRUST_UNBLOCK")


@dataclass
class Harness:
    processor: CoaProcessor
    emitted: list[tuple[str, dict[str, Any]]]


def harness(
    nas: FakeNas, radius: RadiusSettings | None = None, vendor: str = "MIKROTIK"
) -> Harness:
    radius = radius or settings()
    replica = StateReplica()
    replica.put_nas(
        "9",
        {
            "nas_id": "9",
            "name": "bras-9",
            "ip": "127.0.0.1",
            "vendor": vendor,
            "secret_ref": SECRET_REF,
            "coa_port": nas.port,
        },
    )
    replica.put_subscriber(
        "ana@fibra",
        {
            "login": "ana@fibra",
            "contract_id": "c-1",
            "status": "ACTIVE",
            "password": "x",
            "download_kbps": 100_000,
            "upload_kbps": 50_000,
        },
    )
    sessions = SessionTable(stale_after_s=600)
    sessions.apply(
        {
            "login": "ana@fibra",
            "status_type": "start",
            "session_id": "81a00001",
            "unique_session_id": "u1",
            "nas_id": "9",
            "framed_ip_address": "100.64.1.2",
            "event_at": datetime.now(UTC),
        }
    )
    emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(spec: TopicSpec, record: Any) -> None:
        emitted.append((spec.name, dict(record)))

    sender = CoaSender(radius.coa_timeout_s, radius.coa_retries)
    return Harness(CoaProcessor(radius, replica, sessions, sender, emit), emitted)


def test_packets_verify_with_pyrad() -> None:
    d = Dictionary(str(DICTIONARY_PATH))
    raw = build_request(
        COA_REQUEST,
        7,
        SECRET,
        {"User-Name": "ana", "Mikrotik-Rate-Limit": "50M/100M", "Framed-IP-Address": "10.0.0.1"},
    )
    pkt = rp.CoAPacket(packet=raw, secret=SECRET, dict=d)
    assert pkt.VerifyCoARequest()
    assert pkt.verify_message_authenticator()
    assert pkt["Mikrotik-Rate-Limit"] == ["50M/100M"]
    assert pkt["Framed-IP-Address"] == ["10.0.0.1"]
    reply = pkt.CreateReply()
    assert parse_reply(reply.ReplyPacket(), raw, SECRET).ack
    with pytest.raises(MalformedPacket):
        parse_reply(reply.ReplyPacket(), raw, b"wrong")


def test_policy() -> None:
    radius = settings()
    assert plan_for(status_event(*BLOCK), None, radius).action is CoaAction.DISCONNECT
    as_coa = plan_for(status_event(*BLOCK), None, settings(coa_block_action="coa"))
    assert as_coa.action is CoaAction.COA
    assert as_coa.attributes == {"Mikrotik-Rate-Limit": "256k/256k", "Framed-Pool": "bloqueados"}
    plan = plan_for(
        status_event(
            "ACTIVE", "ACTIVE", "PLAN_CHANGE", new_upload_kbps=100_000, new_download_kbps=300_000
        ),
        None,
        radius,
    )
    assert plan.attributes == {"Mikrotik-Rate-Limit": "100M/300M"}
    assert plan_for(status_event("ACTIVE", "ACTIVE", "OTHER"), None, radius).action is (
        CoaAction.NONE
    )
    assert plan_for(status_event("CANCELLED", "ACTIVE", "CANCELLATION"), None, radius).action is (
        CoaAction.DISCONNECT
    )


def test_block_sends_disconnect_and_records_ack(nas: FakeNas) -> None:
    h = harness(nas)
    (result,) = h.processor.handle(status_event(*BLOCK))
    (got,) = nas.received
    assert got.code == DISCONNECT_REQUEST
    assert got.attributes["User-Name"] == ["ana@fibra"]
    assert got.attributes["Acct-Session-Id"] == ["81a00001"]
    assert got.attributes["Framed-IP-Address"] == ["100.64.1.2"]
    assert "Mikrotik-Rate-Limit" not in got.attributes
    assert result["outcome"] == "ACK"
    assert result["action"] == "DISCONNECT"
    assert result["attempts"] == 1
    assert result["nas_id"] == "9"
    assert [name for name, _ in h.emitted] == [COA_RESULTS.name]


def test_block_as_coa_carries_block_pool_and_rate(nas: FakeNas) -> None:
    h = harness(nas, settings(coa_block_action="coa"))
    (result,) = h.processor.handle(status_event(*BLOCK))
    (got,) = nas.received
    assert got.code == COA_REQUEST
    assert got.attributes["Mikrotik-Rate-Limit"] == ["256k/256k"]
    assert got.attributes["Framed-Pool"] == ["bloqueados"]
    assert result["attributes"] == {"Mikrotik-Rate-Limit": "256k/256k", "Framed-Pool": "bloqueados"}


def test_unblock_sends_coa_with_plan_rate(nas: FakeNas) -> None:
    h = harness(nas)
    (result,) = h.processor.handle(status_event(*UNBLOCK))
    (got,) = nas.received
    assert got.code == COA_REQUEST
    assert got.attributes["Mikrotik-Rate-Limit"] == ["50M/100M"]
    assert result["outcome"] == "ACK"
    assert result["action"] == "COA"


def test_replayed_event_sends_nothing(nas: FakeNas) -> None:
    h = harness(nas)
    event = status_event(*BLOCK)
    assert len(h.processor.handle(event)) == 1
    assert h.processor.handle(event) == []
    assert len(nas.received) == 1
    assert h.processor.stats.duplicates == 1
    # A restarted worker whose ledger was loaded from the result topic skips it too.
    fresh = harness(nas)
    fresh.processor.ledger = Ledger([(event["envelope"]["event_id"], "DISCONNECT")])
    assert fresh.processor.handle(event) == []
    assert len(nas.received) == 1


def test_nak_is_recorded_with_error_cause(nas: FakeNas) -> None:
    nas.answer = "nak"
    (result,) = harness(nas).processor.handle(status_event(*UNBLOCK))
    assert result["outcome"] == "NAK"
    assert result["error_cause"] == 503


def test_silent_nas_retries_then_times_out(nas: FakeNas) -> None:
    nas.answer = "silent"
    (result,) = harness(nas).processor.handle(status_event(*BLOCK))
    assert result["outcome"] == "TIMEOUT"
    assert result["attempts"] == 3
    assert nas.datagrams == 3
    assert result["latency_ms"] >= 3 * 200 * 0.9


def test_no_live_session_is_a_result_too(nas: FakeNas) -> None:
    h = harness(nas)
    (result,) = h.processor.handle(status_event(*BLOCK, contract_id="c-none"))
    assert result["outcome"] == "NO_SESSION"
    assert nas.received == []


def test_results_match_the_schema(nas: FakeNas) -> None:
    from schemas.catalog import SchemaCatalog

    schema = SchemaCatalog.load()
    h = harness(nas)
    h.processor.handle(status_event(*BLOCK))
    h.processor.handle(status_event(*BLOCK, contract_id="c-none"))
    validate = getattr(schema, "validate", None)
    if validate is None:
        pytest.skip("SchemaCatalog has no validate()")
    for _, record in h.emitted:
        validate("ixc.filas.radius.CoaResult", record)


def test_stray_datagrams_are_ignored() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    def answer_garbage() -> None:
        data, addr = sock.recvfrom(4096)
        sock.sendto(b"\x00" * 10, addr)
        sock.sendto(data[:1] + b"\x00" + data[2:], addr)  # wrong identifier

    t = threading.Thread(target=answer_garbage, daemon=True)
    t.start()
    result = CoaSender(0.2, 0).send(CoaAction.COA, ("127.0.0.1", port), SECRET, {"User-Name": "a"})
    t.join(2)
    sock.close()
    assert result.outcome.value == "TIMEOUT"
