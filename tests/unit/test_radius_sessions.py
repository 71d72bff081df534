"""The live-sessions table fed from radius.accounting, and simultaneous-use on top of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from filas.catalog.radius import AUTH_DECISIONS
from filas.settings import RadiusSettings
from producers.radius.events import ListSink
from producers.radius.gateway import RadiusGateway
from producers.radius.pyrad_adapter import ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_REQUEST, RadiusCodec
from streams.radius.replica import StateReplica
from streams.radius.sessions import SessionTable

NOW = 1_800_000_000.0


def acct(
    status: str, login: str = "ana", session: str = "s1", at: float = NOW, **extra: Any
) -> dict[str, Any]:
    return {
        "login": login,
        "status_type": status,
        "session_id": session,
        "unique_session_id": f"u-{session}",
        "nas_id": extra.pop("nas_id", "1"),
        "event_at": datetime.fromtimestamp(at, UTC),
        "session_time_s": extra.pop("session_time_s", 0),
    } | extra


def table(now: float = NOW) -> SessionTable:
    return SessionTable(stale_after_s=600, clock=lambda: now)


def test_start_interim_stop() -> None:
    sessions = table()
    sessions.apply(acct("start", framed_ip_address="100.64.0.1"))
    sessions.apply(acct("interim_update", input_octets=10, session_time_s=300, at=NOW + 1))
    (live,) = sessions.active("ana")
    assert live.framed_ip == "100.64.0.1"
    assert live.input_octets == 10
    assert live.started_at == NOW
    sessions.apply(acct("stop", at=NOW + 2))
    assert sessions.count("ana") == 0
    assert len(sessions) == 0


def test_interim_without_start_counts_from_session_time() -> None:
    sessions = table()
    sessions.apply(acct("interim_update", session_time_s=120))
    assert sessions.active("ana")[0].started_at == NOW - 120


def test_stale_sessions_stop_counting() -> None:
    sessions = table(now=NOW + 601)
    sessions.apply(acct("start"))
    assert sessions.count("ana") == 0


def test_accounting_on_ends_the_nas_sessions_only() -> None:
    sessions = table()
    sessions.apply(acct("start", session="a", nas_id="1"))
    sessions.apply(acct("start", session="b", nas_id="2"))
    sessions.apply(acct("accounting_on", login="@nas/1", nas_id="1"))
    assert [s.session_id for s in sessions.active("ana")] == ["b"]


def test_simultaneous_use_rejects_a_second_session() -> None:
    codec = RadiusCodec()
    replica = StateReplica()
    replica.put_nas("1", {"nas_id": "1", "name": "b", "ip": "10.0.0.1", "secret_ref": "r"})
    replica.put_subscriber(
        "ana", {"login": "ana", "contract_id": "c", "status": "ACTIVE", "password": "pw"}
    )
    sessions = SessionTable(stale_after_s=600)
    sink = ListSink()
    gateway = RadiusGateway(
        RadiusSettings(nas_secrets={"r": SecretStr("s")}), replica, sink, codec, sessions
    )

    def ask() -> int:
        packet = codec.build_request(ACCESS_REQUEST, b"s", {"User-Name": "ana"}, password="pw")
        reply = gateway.handle_auth(packet, ("10.0.0.1", 1))
        assert reply is not None
        return int(codec.decode_reply(reply, b"s")["_code"][0])

    now = datetime.now(UTC).timestamp()
    assert ask() == ACCESS_ACCEPT
    sessions.apply(acct("start", at=now))
    assert ask() == ACCESS_REJECT
    assert sink.of(AUTH_DECISIONS)[-1]["reason"] == "simultaneous_use"
    sessions.apply(acct("stop", at=now + 1))
    assert ask() == ACCESS_ACCEPT
