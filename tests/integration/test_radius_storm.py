"""Reconnect storm against the real gateway (Kafka + registry): one NAS floods, another is served.

radclient has no source-address option and the kernel picks 127.0.0.1 for every loopback
destination, so the flood comes from pyrad-built Access-Requests on sockets bound to 127.0.0.2
(faster than radclient can send) and the quiet NAS is FreeRADIUS's radclient from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.settings import RadiusSettings, Settings
from producers.envelope import envelope
from producers.radius.pyrad_adapter import ACCESS_REQUEST, RadiusCodec
from producers.radius.service import GatewayService

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="radclient not installed"),
]

SECRET = "nas-secret-storm"
SECRET_REF = "ixc/nas/storm/radius-secret"
STORM = 8000
STORM_SOCKETS = 32


@dataclass
class Env:
    service: GatewayService


def nas_record(nas_id: str, ip: str) -> dict[str, object]:
    return {
        "envelope": envelope("test"),
        "nas_id": nas_id,
        "name": f"bras-{nas_id}",
        "ip": ip,
        "vendor": "MIKROTIK",
        "secret_ref": SECRET_REF,
    }


def login_record(login: str, password: str) -> dict[str, object]:
    return {
        "envelope": envelope("test"),
        "login": login,
        "login_id": login,
        "login_type": "PPPOE",
        "contract_id": f"c-{login}",
        "customer_id": "1",
        "status": "ACTIVE",
        "password": password,
        "download_kbps": 100_000,
        "upload_kbps": 50_000,
    }


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
                gateway_instance="test-storm",
                enforce_simultaneous_use=False,
            )
        }
    )
    producer = build_producer(settings, catalog=catalog)
    producer.emit(NAS, nas_record("quiet", "127.0.0.1"))
    producer.emit(NAS, nas_record("storm", "127.0.0.2"))
    producer.emit(SUBSCRIBERS, login_record("quieto@fibra", "senha-quieta"))
    producer.emit(SUBSCRIBERS, login_record("tempestade@fibra", "senha-storm"))
    producer.flush()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    service = GatewayService(settings, catalog=catalog)
    asyncio.run_coroutine_threadsafe(service.start(), loop).result(timeout=90)
    try:
        yield Env(service)
    finally:
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        producer.close()


def storm(port: int, answered: list[int], ready: threading.Event) -> None:
    codec = RadiusCodec()
    packets = [
        codec.build_request(
            ACCESS_REQUEST,
            SECRET.encode(),
            {"User-Name": "tempestade@fibra", "NAS-IP-Address": "127.0.0.2"},
            password="senha-storm",
            identifier=(k // STORM_SOCKETS) % 256,
        )
        for k in range(STORM)
    ]
    socks = []
    for _ in range(STORM_SOCKETS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        sock.bind(("127.0.0.2", 0))
        sock.setblocking(False)
        socks.append(sock)
    ready.set()
    for k, packet in enumerate(packets):
        socks[k % STORM_SOCKETS].sendto(packet, ("127.0.0.1", port))
    deadline = time.monotonic() + 4
    count = 0
    while time.monotonic() < deadline:
        got = False
        for sock in socks:
            try:
                while True:
                    sock.recv(4096)
                    count += 1
                    got = True
            except BlockingIOError:
                pass
        if not got:
            time.sleep(0.01)
    for sock in socks:
        sock.close()
    answered.append(count)


def quiet_auth(port: int) -> tuple[str | None, float]:
    attributes = (
        'User-Name = "quieto@fibra"\nUser-Password = "senha-quieta"\n'
        "NAS-IP-Address = 127.0.0.1\nMessage-Authenticator = 0x00\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        ["radclient", "-r", "1", "-t", "2", f"127.0.0.1:{port}", "auth", SECRET],
        input=attributes,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed = time.monotonic() - started
    code = None
    for word in ("Access-Accept", "Access-Reject"):
        if f"Received {word}" in done.stdout:
            code = word
    return code, elapsed


def test_a_storm_from_one_nas_does_not_starve_another(env: Env) -> None:
    gateway = env.service.gateway
    port = gateway.auth_port
    assert quiet_auth(port)[0] == "Access-Accept"  # warm: radclient start-up cost measured
    answered: list[int] = []
    ready = threading.Event()
    flood = threading.Thread(target=storm, args=(port, answered, ready))
    flood.start()
    ready.wait(10)
    results = [quiet_auth(port) for _ in range(5)]
    flood.join(timeout=30)
    admission = gateway.admission_stats()
    assert [code for code, _ in results] == ["Access-Accept"] * 5, (results, admission)
    # Every quiet request answered on the first try (radclient waits 2 s before a retry) and
    # well inside a NAS timeout; radclient's own start-up is part of the figure.
    assert max(elapsed for _, elapsed in results) < 1.0, (results, admission)
    assert answered
    assert answered[0] > 0
    assert admission["admitted"] > 0
