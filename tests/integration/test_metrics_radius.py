"""``filas radius serve`` serves /metrics: decision latency and the gateway's own counters
(accepts, drops) scraped over HTTP match what radclient (the NAS) saw."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.local_platform.processes import free_port
from filas.monitoring.scrape import Samples, ScrapeError, scrape
from filas.settings import Settings
from tests.integration.test_radius_gateway import (
    SECRET,
    SECRET_REF,
    login_record,
    nas_record,
    radclient,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="radclient not installed"),
]

REPO = Path(__file__).resolve().parents[2]
COMPONENT = "radius-gateway"
ACCEPTS = 3


def _value(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def _scrape(port: int) -> Samples:
    for _ in range(20):
        try:
            return scrape(f"http://127.0.0.1:{port}/metrics")
        except ScrapeError:
            time.sleep(0.5)
    return scrape(f"http://127.0.0.1:{port}/metrics")


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gateway_metrics_match_what_the_nas_saw(
    platform: Settings, unique_name: str, tmp_path: Path
) -> None:
    catalog = Catalog.build(unique_name)
    specs = [
        catalog.resolve(s)
        for s in (SUBSCRIBERS, CONTRACTS, NAS, ACCOUNTING, AUTH_REQUESTS, AUTH_DECISIONS)
    ]
    TopicAdmin(platform.kafka).apply(catalog.only(*specs))
    with build_producer(platform, catalog=catalog) as producer:
        producer.emit(NAS, nas_record("1", "127.0.0.1"))
        producer.emit(SUBSCRIBERS, login_record("joao@fibra", "senha-joao"))

    auth_port, acct_port, metrics_port = _free_udp_port(), _free_udp_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FILAS_")},
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": platform.kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": platform.kafka.security_protocol.value,
        "FILAS_REGISTRY__URL": platform.registry.url,
        "FILAS_TOPICS__PREFIX": unique_name,
        "FILAS_RADIUS__BIND_HOST": "127.0.0.1",
        "FILAS_RADIUS__AUTH_PORT": str(auth_port),
        "FILAS_RADIUS__ACCT_PORT": str(acct_port),
        "FILAS_RADIUS__NAS_SECRETS": json.dumps({SECRET_REF: SECRET}),
        "FILAS_METRICS__PORT": str(metrics_port),
    }
    log = tmp_path / "gateway.log"
    with log.open("ab") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "filas.cli.main", "radius", "serve", "--stats-every", "3600"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = f"127.0.0.1:{auth_port}"
    good = (
        'User-Name = "joao@fibra"\nUser-Password = "senha-joao"\n'
        "NAS-IP-Address = 127.0.0.1\nMessage-Authenticator = 0x00\n"
    )
    try:
        deadline = time.monotonic() + 90
        accepted = 0
        while accepted == 0 and time.monotonic() < deadline:
            assert gateway.poll() is None, log.read_text()[-3000:]
            if radclient(server, "auth", SECRET, good, timeout_s=0.5).code == "Access-Accept":
                accepted = 1
        assert accepted, log.read_text()[-3000:]
        before = _scrape(metrics_port)
        for _ in range(ACCEPTS):
            assert radclient(server, "auth", SECRET, good, timeout_s=3).code == "Access-Accept"
        # No Message-Authenticator from a NAS that sends it: dropped, never answered.
        bare = 'User-Name = "joao@fibra"\nUser-Password = "senha-joao"\n'
        assert radclient(server, "auth", SECRET, bare, timeout_s=0.5).code is None
        after = _scrape(metrics_port)

        def delta(name: str, **labels: str) -> float:
            return _value(after, name, **labels) - _value(before, name, **labels)

        stat = "filas_service_stat_total"
        assert delta(stat, component=COMPONENT, stat="accepts") == ACCEPTS
        assert delta(stat, component=COMPONENT, stat="received") == ACCEPTS + 1
        dropped = "dropped_missing_message_authenticator"
        assert delta(stat, component=COMPONENT, stat=dropped) == 1
        # Every datagram that reached the handler is timed, the dropped one included.
        latency = {"component": COMPONENT, "stage": "handle_auth"}
        assert delta("filas_processing_seconds_count", **latency) == ACCEPTS + 1
        assert delta("filas_processing_seconds_sum", **latency) > 0
    finally:
        gateway.terminate()
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(10)
