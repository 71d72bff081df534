"""Reconnect storm: N distinct logins from 20 NAS inside a window, gateway vs FreeRADIUS 3.2.

Every NAS (source IPs 127.0.0.11-30, each a NAS record in ``ixc.nas`` and a FreeRADIUS client)
sends its share of N PAP Access-Requests (distinct logins, Message-Authenticator) open loop,
spread evenly over ``--window`` seconds, no retransmissions, after a 2,000-request warm-up.
Per server: requests answered, requests unanswered or answered later than 3 s (the NAS
timeout), drain time (last request sent -> last reply received), p50 and p99 round trip.
The peer is FreeRADIUS (``files`` module, bench/radius_auth.py) under the same storm.

Run: ``make bench-radius-storm`` (or ``python -m bench.radius_storm --logins 20000``).
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import radius_auth
from bench.common import report, services
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.local_platform.processes import free_port
from filas.settings import Settings
from producers.envelope import envelope
from producers.radius.pyrad_adapter import ACCESS_REQUEST, RadiusCodec

PEER = "freeradius-3.2-files"
NAS_COUNT = 20
SOCKETS_PER_NAS = 4
NAS_TIMEOUT_S = 3.0


def nas_ip(index: int) -> str:
    return f"127.0.0.{11 + index}"


def seed_nas(settings: Settings, catalog: Catalog) -> None:
    with build_producer(settings, catalog=catalog) as producer:
        for index in range(NAS_COUNT):
            producer.emit(
                NAS,
                {
                    "envelope": envelope("bench"),
                    "nas_id": f"storm-{index}",
                    "name": f"bras-storm-{index}",
                    "ip": nas_ip(index),
                    "vendor": "MIKROTIK",
                    "secret_ref": radius_auth.SECRET_REF,
                },
            )


@contextmanager
def freeradius(logins: int) -> Iterator[int]:
    """bench/radius_auth.py's FreeRADIUS, with the storm's NAS addresses as clients."""
    binary = shutil.which("freeradius") or shutil.which("radiusd")
    if binary is None:
        raise SystemExit("freeradius not installed (apt-get install freeradius)")
    port = free_port()
    conf = radius_auth.FREERADIUS_CONF.replace(
        "    ipaddr = 127.0.0.1\n    secret", "    ipaddr = 127.0.0.0/24\n    secret"
    )
    with tempfile.TemporaryDirectory(prefix="filas-bench-storm-") as tmp:
        raddb = Path(tmp)
        (raddb / "radiusd.conf").write_text(
            conf.format(
                dir=raddb, secret=radius_auth.SECRET, port=port, store="files", sql_module=""
            )
        )
        (raddb / "dictionary").write_text("")
        (raddb / "users").write_text(
            "".join(
                f'{radius_auth.login(i)} Cleartext-Password := "{radius_auth.password(i)}"\n'
                '\tFramed-Pool = "pool-clientes",\n\tSession-Timeout = 86400,\n'
                '\tAcct-Interim-Interval = 300,\n\tMikrotik-Rate-Limit = "50M/100M"\n\n'
                for i in range(logins)
            )
        )
        log_path = raddb / "freeradius.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [binary, "-f", "-d", str(raddb), "-l", "stdout"], stdout=log, stderr=log
            )
            try:
                deadline = time.monotonic() + 60
                while "Ready to process requests" not in log_path.read_text():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("freeradius did not start:\n" + log_path.read_text())
                    time.sleep(0.1)
                radius_auth.SERVER_PIDS[port] = proc.pid
                yield port
            finally:
                proc.terminate()
                proc.wait(30)


def storm(port: int, logins: int, window_s: float) -> dict[str, float]:
    codec = RadiusCodec()
    secret = radius_auth.SECRET.encode()
    socks: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    for index in range(NAS_COUNT * SOCKETS_PER_NAS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        sock.bind((nas_ip(index % NAS_COUNT), 0))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
        socks.append(sock)
    packets = [
        codec.build_request(
            ACCESS_REQUEST,
            secret,
            {
                "User-Name": radius_auth.login(k),
                "NAS-IP-Address": nas_ip(k % len(socks) % NAS_COUNT),
            },
            password=radius_auth.password(k),
            identifier=(k // len(socks)) % 256,
        )
        for k in range(logins)
    ]
    sent_at: dict[tuple[int, int], float] = {}
    rtts: list[float] = []
    last_reply = 0.0

    def receive(timeout: float) -> None:
        nonlocal last_reply
        for key, _ in selector.select(timeout):
            sock = socks[key.data]
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                sent = sent_at.pop((key.data, data[1]), None)
                if sent is not None:
                    last_reply = time.perf_counter()
                    rtts.append(last_reply - sent)

    start = time.perf_counter()
    for k, packet in enumerate(packets):
        due = start + k * window_s / logins
        while (now := time.perf_counter()) < due:
            receive(due - now)
        index = k % len(socks)
        sent_at[(index, packet[1])] = time.perf_counter()
        with contextlib.suppress(BlockingIOError):  # a send the kernel refused: unanswered
            socks[index].sendto(packet, ("127.0.0.1", port))
        receive(0)
    last_sent = time.perf_counter()
    while sent_at and time.perf_counter() < last_sent + NAS_TIMEOUT_S + 1:
        receive(0.05)
    for sock in socks:
        sock.close()
    late = sum(1 for rtt in rtts if rtt > NAS_TIMEOUT_S)
    ordered = sorted(rtts) or [float("nan")]
    return {
        "offered": logins,
        "answered": len(rtts),
        "unanswered_past_3s": len(sent_at) + late,
        "drain_s": max(0.0, last_reply - last_sent),
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "send_s": last_sent - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logins", type=int, default=20_000)
    parser.add_argument("--window", type=float, default=10.0, help="seconds to send them in")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes (SO_REUSEPORT)")
    args = parser.parse_args()
    with services(registry=True) as settings:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        catalog = Catalog.build(prefix)
        specs = [
            catalog.resolve(s)
            for s in (SUBSCRIBERS, CONTRACTS, NAS, ACCOUNTING, AUTH_REQUESTS, AUTH_DECISIONS)
        ]
        TopicAdmin(settings.kafka).apply(catalog.only(*specs))
        radius_auth.seed(settings, catalog, args.logins)
        seed_nas(settings, catalog)
        print(
            f"storm: {args.logins} distinct logins from {NAS_COUNT} NAS "
            f"({nas_ip(0)}-{nas_ip(NAS_COUNT - 1)}) in {args.window:g} s, no retransmissions"
        )
        results: dict[str, dict[str, float]] = {}
        with (
            radius_auth.gateway(settings, prefix, args.workers) as gw_port,
            freeradius(args.logins) as fr_port,
        ):
            for name, port in (("freeradius", fr_port), ("gateway", gw_port)):
                storm(port, min(args.logins, 2000), 1.0)  # warm-up: caches, Kafka connections
                time.sleep(2)
                pid = radius_auth.SERVER_PIDS[port]
                cpu_before = radius_auth.cpu_seconds(pid)
                results[name] = figures = storm(port, args.logins, args.window)
                figures["cpu_s"] = radius_auth.cpu_seconds(pid) - cpu_before
                print(
                    f"{name:10} sent in {figures['send_s']:.2f} s, answered "
                    f"{figures['answered']:.0f}/{figures['offered']:.0f}, unanswered past 3 s "
                    f"{figures['unanswered_past_3s']:.0f}, drain {figures['drain_s']:.3f} s, "
                    f"p50 {figures['p50_ms']:.1f} ms p99 {figures['p99_ms']:.1f} ms, "
                    f"server CPU {figures['cpu_s']:.2f} s",
                    flush=True,
                )
    gw, fr = results["gateway"], results["freeradius"]
    report(
        "radius_storm_unanswered_past_3s",
        gw["unanswered_past_3s"],
        "requests",
        gw["unanswered_past_3s"] / max(fr["unanswered_past_3s"], 1),
        PEER,
    )
    report(
        "radius_storm_drain_time",
        gw["drain_s"],
        "s",
        gw["drain_s"] / max(fr["drain_s"], 1e-3),
        PEER,
    )
    report("radius_storm_p99", gw["p99_ms"], "ms", gw["p99_ms"] / max(fr["p99_ms"], 1e-3), PEER)
    report(
        "radius_storm_answered",
        gw["answered"],
        "requests",
        gw["answered"] / max(fr["answered"], 1),
        PEER,
    )


if __name__ == "__main__":
    main()
