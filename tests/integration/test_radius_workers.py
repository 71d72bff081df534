"""``filas radius serve --workers 2``: two gateway processes share the ports (SO_REUSEPORT)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid

import pytest

from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.settings import Settings
from producers.radius.pyrad_adapter import ACCESS_ACCEPT, ACCESS_REQUEST, RadiusCodec
from tests.integration.test_radius_gateway import (
    SECRET,
    SECRET_REF,
    consume,
    login_record,
    nas_record,
)

pytestmark = pytest.mark.integration

CODEC = RadiusCodec()
REQUESTS = 24
PASSWORD = "senha-joao"


def test_two_workers_share_the_port_and_both_answer(platform: Settings) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    catalog = Catalog.build(prefix)
    specs = [
        catalog.resolve(s)
        for s in (SUBSCRIBERS, CONTRACTS, NAS, ACCOUNTING, AUTH_REQUESTS, AUTH_DECISIONS)
    ]
    TopicAdmin(platform.kafka).apply(catalog.only(*specs))
    with build_producer(platform, catalog=catalog) as producer:
        producer.emit(NAS, nas_record("1", "127.0.0.1"))
        producer.emit(SUBSCRIBERS, login_record("joao@fibra", "senha-joao"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILAS_")} | {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": platform.kafka.bootstrap_servers,
        "FILAS_REGISTRY__URL": platform.registry.url,
        "FILAS_TOPICS__PREFIX": prefix,
        "FILAS_RADIUS__BIND_HOST": "127.0.0.1",
        "FILAS_RADIUS__AUTH_PORT": "0",
        "FILAS_RADIUS__ACCT_PORT": "0",
        "FILAS_RADIUS__NAS_SECRETS": f'{{"{SECRET_REF}": "{SECRET}"}}',
        "FILAS_RADIUS__GATEWAY_INSTANCE": "gw",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "filas.cli.main", "radius", "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    up = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("radius gateway up"):
                up.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        assert up.wait(120), "".join(lines[-30:])
        port = int(next(ln for ln in lines if ln.startswith("radius gateway up")).split()[4])
        accepted = 0
        for _ in range(REQUESTS):  # a new source port each time: flows hash over both workers
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                request = CODEC.build_request(
                    ACCESS_REQUEST,
                    SECRET.encode(),
                    {"User-Name": "joao@fibra"},
                    password="senha-joao",
                )
                sock.sendto(request, ("127.0.0.1", port))
                reply = sock.recv(4096)
                assert CODEC.verify_reply(request, reply, SECRET.encode())
                accepted += reply[0] == ACCESS_ACCEPT
        assert accepted == REQUESTS
        decisions = consume(
            platform, catalog.resolve(AUTH_DECISIONS), lambda got: len(got) >= REQUESTS
        )
        instances = {d["gateway_instance"] for d in decisions}
        assert instances == {"gw/w0", "gw/w1"}, instances
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    # Both workers are gone with the parent.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))
