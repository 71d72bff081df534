"""``filas radius serve --workers N``: what each worker is told, and SO_REUSEPORT sharing."""

from __future__ import annotations

import socket

from filas.settings import MetricsSettings, RadiusSettings, Settings
from producers.radius.workers import concrete_port, worker_env


def test_each_worker_gets_the_shared_ports_its_own_name_and_metrics_port() -> None:
    settings = Settings(
        radius=RadiusSettings(gateway_instance="gw-a"), metrics=MetricsSettings(port=9400)
    )
    env = worker_env(settings, {"PATH": "/bin"}, 1, 11812, 11813)
    assert env["PATH"] == "/bin"
    assert env["FILAS_RADIUS__AUTH_PORT"] == "11812"
    assert env["FILAS_RADIUS__ACCT_PORT"] == "11813"
    assert env["FILAS_RADIUS__REUSE_PORT"] == "true"
    assert env["FILAS_RADIUS__GATEWAY_INSTANCE"] == "gw-a/w1"
    assert env["FILAS_METRICS__PORT"] == "9401"
    assert "FILAS_METRICS__PORT" not in worker_env(Settings(), {}, 0, 1, 2)


def test_port_zero_becomes_one_concrete_port_workers_can_share() -> None:
    assert concrete_port("127.0.0.1", 1812) == 1812
    port = concrete_port("127.0.0.1", 0)
    assert port > 0
    socks = []
    try:
        for _ in range(2):  # what two workers do with reuse_port=True
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", port))
            socks.append(sock)
    finally:
        for sock in socks:
            sock.close()
