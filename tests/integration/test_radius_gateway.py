"""The RADIUS gateway against real Kafka + registry, with FreeRADIUS's radclient as the NAS.

The replica is fed by emitting SubscriberLogin/Contract/Nas records through the SDK into this
module's prefixed topics; the gateway's events are read back from Kafka.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer
from pydantic import SecretStr

from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.ixc_state import CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.settings import RadiusSettings, Settings
from producers.envelope import envelope
from producers.radius import mschap
from producers.radius.service import GatewayService
from producers.sdk import EventProducer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="radclient not installed"),
]

SECRET = "nas-secret-1"
SECRET_REF = "ixc/nas/1/radius-secret"


def login_record(login: str, password: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "envelope": envelope("test"),
        "login": login,
        "login_id": login,
        "login_type": "PPPOE",
        "contract_id": extra.pop("contract_id", f"c-{login}"),
        "customer_id": "1",
        "status": extra.pop("status", "ACTIVE"),
        "password": password,
        "download_kbps": 100_000,
        "upload_kbps": 50_000,
    } | extra


def contract_record(contract_id: str, status: str) -> dict[str, Any]:
    return {
        "envelope": envelope("test"),
        "contract_id": contract_id,
        "customer_id": "1",
        "plan_id": None,
        "download_kbps": None,
        "upload_kbps": None,
        "days_overdue": None,
        "updated_at": None,
        "plan_name": "Fibra 100M",
        "status": status,
        "ixc_status": "A",
        "ixc_internet_status": "A",
        "monthly_price": Decimal("99.90"),
        "trust_unblock_active": False,
    }


def nas_record(nas_id: str, ip: str) -> dict[str, Any]:
    return {
        "envelope": envelope("test"),
        "nas_id": nas_id,
        "name": f"bras-{nas_id}",
        "ip": ip,
        "vendor": "MIKROTIK",
        "secret_ref": SECRET_REF,
    }


@dataclass
class Env:
    settings: Settings
    catalog: Catalog
    service: GatewayService
    producer: EventProducer
    loop: asyncio.AbstractEventLoop

    @property
    def auth(self) -> str:
        return f"127.0.0.1:{self.service.gateway.auth_port}"

    @property
    def acct(self) -> str:
        return f"127.0.0.1:{self.service.gateway.acct_port}"


@pytest.fixture(scope="module")
def env(platform: Settings) -> Iterator[Env]:
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    catalog = Catalog.build(prefix)
    specs = [
        catalog.resolve(s)
        for s in (SUBSCRIBERS, CONTRACTS, NAS, ACCOUNTING, AUTH_REQUESTS, AUTH_DECISIONS)
    ]
    TopicAdmin(platform.kafka).apply(catalog.only(*specs))
    settings = platform.model_copy(
        update={
            "radius": RadiusSettings(
                bind_host="127.0.0.1",
                auth_port=0,
                acct_port=0,
                nas_secrets={SECRET_REF: SecretStr(SECRET)},
                blocked_policy="block_pool",
                default_pool="pool-clientes",
                gateway_instance="test-gw",
            )
        }
    )
    producer = build_producer(settings, catalog=catalog)
    producer.emit(NAS, nas_record("1", "127.0.0.1"))
    producer.emit(SUBSCRIBERS, login_record("joao@fibra", "senha-joao"))
    producer.emit(SUBSCRIBERS, login_record("fixo@fibra", "senha-fixo", static_ipv4="100.64.10.20"))
    producer.emit(
        SUBSCRIBERS,
        login_record("mac@fibra", "senha-mac", mac="aa:bb:cc:dd:ee:ff", bind_mac=True),
    )
    producer.emit(SUBSCRIBERS, login_record("off@fibra", "senha-off", status="BLOCKED"))
    producer.emit(SUBSCRIBERS, login_record("duplo@fibra", "senha-duplo", simultaneous_use=1))
    producer.emit(SUBSCRIBERS, login_record("devedor@fibra", "senha-dev", contract_id="c-dev"))
    producer.emit(CONTRACTS, contract_record("c-dev", "BLOCKED"))
    producer.flush()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    service = GatewayService(settings, catalog=catalog)
    asyncio.run_coroutine_threadsafe(service.start(), loop).result(timeout=90)
    try:
        yield Env(settings, catalog, service, producer, loop)
    finally:
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        producer.close()


@dataclass
class Reply:
    code: str | None
    attributes: dict[str, str]


def radclient(
    server: str, command: str, secret: str, attributes: str, *, timeout_s: float = 1.0
) -> Reply:
    done = subprocess.run(
        ["radclient", "-x", "-r", "1", "-t", str(timeout_s), server, command, secret],
        input=attributes,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    code = None
    attrs: dict[str, str] = {}
    in_reply = False
    for line in done.stdout.splitlines():
        match = re.match(r"Received (\S+) Id", line)
        if match:
            code, in_reply = match.group(1), True
            continue
        if in_reply and line.startswith("\t") and " = " in line:
            name, value = line.strip().split(" = ", 1)
            attrs[name] = value.strip('"')
    return Reply(code, attrs)


def auth(env: Env, user: str, password: str, *extra: str, chap: bool = False) -> Reply:
    credential = f'CHAP-Password = "{password}"' if chap else f'User-Password = "{password}"'
    lines = [
        f'User-Name = "{user}"',
        credential,
        "NAS-IP-Address = 127.0.0.1",
        "Message-Authenticator = 0x00",
        *extra,
    ]
    return radclient(env.auth, "auth", SECRET, "\n".join(lines) + "\n")


def consume(settings: Settings, spec: TopicSpec, until: Any, timeout_s: float = 30) -> list[Any]:
    consumer = Consumer(
        settings.kafka.client_config()
        | {"group.id": f"read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([spec.name])
    serde = build_serdes(settings)(spec)
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(records):
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            records.append(serde.deserialize(msg.value()))
    consumer.close()
    return records


def test_pap_accept_carries_the_reply_attributes(env: Env) -> None:
    reply = auth(env, "joao@fibra", "senha-joao")
    assert reply.code == "Access-Accept"
    assert reply.attributes["Mikrotik-Rate-Limit"] == "50M/100M"
    assert reply.attributes["Framed-Pool"] == "pool-clientes"
    assert reply.attributes["Session-Timeout"] == "86400"
    assert reply.attributes["Acct-Interim-Interval"] == "300"
    assert "Message-Authenticator" in reply.attributes


def test_chap_accept_and_static_ip(env: Env) -> None:
    reply = auth(env, "fixo@fibra", "senha-fixo", chap=True)
    assert reply.code == "Access-Accept"
    assert reply.attributes["Framed-IP-Address"] == "100.64.10.20"
    assert "Framed-Pool" not in reply.attributes
    assert auth(env, "fixo@fibra", "errada", chap=True).code == "Access-Reject"


@pytest.mark.parametrize(
    ("user", "password", "extra", "message"),
    [
        ("ninguem@fibra", "x", (), "Login desconhecido"),
        ("joao@fibra", "errada", (), "Senha incorreta"),
        ("mac@fibra", "senha-mac", ('Calling-Station-Id = "11:22:33:44:55:66"',), "MAC"),
        ("off@fibra", "senha-off", (), "Login desativado"),
    ],
)
def test_rejects_say_why(
    env: Env, user: str, password: str, extra: tuple[str, ...], message: str
) -> None:
    reply = auth(env, user, password, *extra)
    assert reply.code == "Access-Reject"
    assert message in reply.attributes["Reply-Message"]


def mschapv2(env: Env, user: str, password: str, ident: int = 5) -> tuple[Reply, bytes, bytes]:
    """radclient sends the MS-CHAP-Challenge / MS-CHAP2-Response a PPP peer would compute."""
    challenge, peer = os.urandom(16), os.urandom(16)
    nt = mschap.generate_nt_response(challenge, peer, user, password)
    response = bytes((ident, 0)) + peer + bytes(8) + nt
    lines = [
        f'User-Name = "{user}"',
        f"MS-CHAP-Challenge = 0x{challenge.hex()}",
        f"MS-CHAP2-Response = 0x{response.hex()}",
        "Message-Authenticator = 0x00",
    ]
    return radclient(env.auth, "auth", SECRET, "\n".join(lines) + "\n"), challenge, response


def test_mschapv2_accept_decrypts_in_radclient(env: Env) -> None:
    reply, challenge, response = mschapv2(env, "joao@fibra", "senha-joao")
    assert reply.code == "Access-Accept"
    assert reply.attributes["Mikrotik-Rate-Limit"] == "50M/100M"
    nt, peer = response[26:], response[2:18]
    success = mschap.authenticator_response("senha-joao", nt, peer, challenge, "joao@fibra")
    assert reply.attributes["MS-CHAP2-Success"] == "0x05" + success.encode().hex()
    master = mschap.master_key("senha-joao", nt)
    # radclient decrypts the salt-encrypted keys (RFC 2548) with the secret and its own
    # request authenticator: equal keys prove the encryption.
    assert reply.attributes["MS-MPPE-Send-Key"] == "0x" + (
        mschap.asymmetric_start_key(master, server_send=True).hex()
    )
    assert reply.attributes["MS-MPPE-Recv-Key"] == "0x" + (
        mschap.asymmetric_start_key(master, server_send=False).hex()
    )
    assert reply.attributes["MS-MPPE-Encryption-Policy"] == "Encryption-Allowed"


def test_mschapv2_wrong_password_gets_ms_chap_error(env: Env) -> None:
    reply, challenge, _ = mschapv2(env, "joao@fibra", "errada", ident=9)
    assert reply.code == "Access-Reject"
    assert "E=691 R=0 C=" + challenge.hex().upper() in reply.attributes["MS-CHAP-Error"]
    assert "MS-MPPE-Recv-Key" not in reply.attributes


def test_bound_mac_accepts_in_any_notation(env: Env) -> None:
    reply = auth(env, "mac@fibra", "senha-mac", 'Calling-Station-Id = "AA-BB-CC-DD-EE-FF"')
    assert reply.code == "Access-Accept"


def test_blocked_contract_goes_to_the_block_pool(env: Env) -> None:
    reply = auth(env, "devedor@fibra", "senha-dev")
    assert reply.code == "Access-Accept"
    assert reply.attributes["Framed-Pool"] == "bloqueados"
    assert reply.attributes["Mikrotik-Rate-Limit"] == "256k/256k"


def test_missing_message_authenticator_is_dropped(env: Env) -> None:
    before = env.service.gateway.stats.dropped_missing_message_authenticator
    lines = 'User-Name = "joao@fibra"\nUser-Password = "senha-joao"\n'
    assert radclient(env.auth, "auth", SECRET, lines, timeout_s=0.5).code is None
    assert env.service.gateway.stats.dropped_missing_message_authenticator > before


def test_wrong_shared_secret_gets_no_reply(env: Env) -> None:
    before = env.service.gateway.stats.dropped_bad_authenticator
    lines = 'User-Name = "joao@fibra"\nUser-Password = "senha-joao"\nMessage-Authenticator = 0x00\n'
    assert radclient(env.auth, "auth", "not-the-secret", lines, timeout_s=0.5).code is None
    acct = 'User-Name = "joao@fibra"\nAcct-Status-Type = Start\nAcct-Session-Id = "x"\n'
    assert radclient(env.acct, "acct", "not-the-secret", acct, timeout_s=0.5).code is None
    assert env.service.gateway.stats.dropped_bad_authenticator >= before + 2


def test_replica_follows_new_logins(env: Env) -> None:
    env.producer.emit(SUBSCRIBERS, login_record("novo@fibra", "senha-nova"))
    env.producer.flush()
    deadline = time.monotonic() + 15
    while env.service.replica.subscriber("novo@fibra") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert auth(env, "novo@fibra", "senha-nova").code == "Access-Accept"


def test_retransmission_gets_the_cached_reply(env: Env) -> None:
    codec = env.service.gateway.codec
    packet = codec.build_request(
        1, SECRET.encode(), {"User-Name": "dup@fibra-unknown"}, password="x"
    )
    before = env.service.gateway.stats.duplicates
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(packet, ("127.0.0.1", env.service.gateway.auth_port))
        first = sock.recv(4096)
        sock.sendto(packet, ("127.0.0.1", env.service.gateway.auth_port))
        second = sock.recv(4096)
    assert first == second
    assert env.service.gateway.stats.duplicates == before + 1
    decisions = consume(
        env.settings,
        env.catalog.resolve(AUTH_DECISIONS),
        lambda rs: False,
        timeout_s=5,
    )
    assert [d["reason"] for d in decisions if d["login"] == "dup@fibra-unknown"] == [
        "unknown_login"
    ]


def test_garbage_never_stops_the_gateway(env: Env) -> None:
    before = env.service.gateway.stats.dropped_malformed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in (b"", b"\x01", b"\x01\x02\x00\x14" + b"\x00" * 15, b"\xff" * 600):
            sock.sendto(data, ("127.0.0.1", env.service.gateway.auth_port))
            sock.sendto(data, ("127.0.0.1", env.service.gateway.acct_port))
    assert auth(env, "joao@fibra", "senha-joao").code == "Access-Accept"
    assert env.service.gateway.stats.dropped_malformed >= before + 6
    assert env.service.gateway.stats.internal_errors == 0


def test_unknown_nas_is_dropped_and_never_answered(env: Env) -> None:
    # Same process, new gateway whose replica knows no NAS at 127.0.0.1.
    from producers.radius.events import ListSink
    from producers.radius.gateway import RadiusGateway
    from streams.radius.replica import StateReplica

    replica = StateReplica()
    replica.put_nas("9", nas_record("9", "10.9.9.9"))
    gateway = RadiusGateway(env.settings.radius, replica, ListSink())
    asyncio.run_coroutine_threadsafe(gateway.start(), env.loop).result(timeout=5)
    try:
        lines = (
            'User-Name = "joao@fibra"\nUser-Password = "senha-joao"\nMessage-Authenticator = 0x00\n'
        )
        assert (
            radclient(f"127.0.0.1:{gateway.auth_port}", "auth", SECRET, lines, timeout_s=0.5).code
            is None
        )
        assert gateway.stats.dropped_unknown_nas >= 1
        assert gateway.stats.answered == 0
    finally:
        env.loop.call_soon_threadsafe(gateway.close)


def test_accounting_is_answered_and_lands_on_kafka(env: Env) -> None:
    session = uuid.uuid4().hex[:8]
    base = (
        'User-Name = "joao@fibra"\nNAS-IP-Address = 127.0.0.1\n'
        f'Acct-Session-Id = "{session}"\nFramed-IP-Address = 100.64.0.7\n'
        'Calling-Station-Id = "aa:bb:cc:00:11:22"\n'
    )
    for status, extra in (
        ("Start", ""),
        ("Interim-Update", "Acct-Input-Octets = 1000\nAcct-Input-Gigawords = 1\n"),
        ("Stop", "Acct-Output-Octets = 42\nAcct-Terminate-Cause = User-Request\n"),
    ):
        reply = radclient(env.acct, "acct", SECRET, base + f"Acct-Status-Type = {status}\n" + extra)
        assert reply.code == "Accounting-Response"

    records = consume(
        env.settings,
        env.catalog.resolve(ACCOUNTING),
        lambda rs: len([r for r in rs if r["session_id"] == session]) >= 3,
    )
    mine = [r for r in records if r["session_id"] == session]
    assert [r["status_type"] for r in mine] == ["start", "interim_update", "stop"]
    assert mine[1]["input_octets"] == 2**32 + 1000
    assert mine[2]["terminate_cause"] == "user_request"
    assert mine[0]["calling_station_id"] == "AA:BB:CC:00:11:22"
    assert mine[0]["framed_ip_address"] == "100.64.0.7"
    assert {r["nas_id"] for r in mine} == {"1"}
    assert all(r["event_at"] <= datetime.now(UTC) for r in mine)


def wait_for(condition: Any, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_simultaneous_use_counts_sessions_from_the_accounting_topic(env: Env) -> None:
    sessions = env.service.sessions
    assert sessions is not None
    assert auth(env, "duplo@fibra", "senha-duplo").code == "Access-Accept"
    base = 'User-Name = "duplo@fibra"\nAcct-Session-Id = "duplo-1"\n'
    start = radclient(env.acct, "acct", SECRET, base + "Acct-Status-Type = Start\n")
    assert start.code == "Accounting-Response"
    # The gateway's own AccountingRecord comes back through Kafka into every gateway's table.
    wait_for(lambda: sessions.count("duplo@fibra") == 1)
    reply = auth(env, "duplo@fibra", "senha-duplo")
    assert reply.code == "Access-Reject"
    assert "simultaneas" in reply.attributes["Reply-Message"]
    stop = radclient(env.acct, "acct", SECRET, base + "Acct-Status-Type = Stop\n")
    assert stop.code == "Accounting-Response"
    wait_for(lambda: sessions.count("duplo@fibra") == 0)
    assert auth(env, "duplo@fibra", "senha-duplo").code == "Access-Accept"


def test_every_decision_is_an_event_without_the_password(env: Env) -> None:
    assert auth(env, "joao@fibra", "senha-joao").code == "Access-Accept"
    assert env.service.publisher.drain(30)
    requests = consume(env.settings, env.catalog.resolve(AUTH_REQUESTS), lambda rs: False, 5)
    decisions = consume(
        env.settings,
        env.catalog.resolve(AUTH_DECISIONS),
        lambda rs: len(rs) >= len(requests),
    )
    assert requests
    assert len(decisions) == len(requests)
    assert "senha-joao" not in repr(requests) + repr(decisions)
    by_reason = {d["reason"] for d in decisions}
    assert {"ok", "unknown_login", "wrong_password", "mac_mismatch", "disabled"} <= by_reason
    assert "blocked_pool" in by_reason
    ok = next(d for d in decisions if d["reason"] == "ok")
    assert ok["gateway_instance"] == "test-gw"
    assert ok["reply_attributes"]["Mikrotik-Rate-Limit"] == "50M/100M"
    assert env.service.publisher.stats.dropped == 0
