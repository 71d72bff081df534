"""CoA latency: contract-status event -> CoA worker -> NAS ACK, p50/p99 (issue 3: p99 < 5 s).

Kafka + registry from ``bench.common.services``; a NAS responder on a free UDP port answers
every CoA/Disconnect-Request with an ACK; ``--events`` block events (one contract and one live
session each) are emitted at ``--rate`` per second while the worker (``CoaWorker``, the same code
as ``filas radius coa``) runs. Latency is the result's ``status_event_lag_ms``: from the status
event's occurred_at to the ACK's arrival. The peer figure is the issue's 5 s p99 budget.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import statistics
import struct
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from bench.common import report, services
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACT_STATUS, CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, COA_RESULTS
from filas.settings import RadiusSettings
from producers.envelope import envelope
from streams.radius.coa_worker import CoaWorker

SECRET = b"bench-coa-secret"
SECRET_REF = "bench/nas/1"  # noqa: S105 - a reference, not a secret
PEER = "issue 3 budget p99 5000 ms"


class AckingNas:
    """Answers every request with the matching ACK (code + 1), Response Authenticator signed."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.received += 1
            header = struct.pack("!BBH", data[0] + 1, data[1], 20)
            auth = hashlib.md5(header + data[4:20] + SECRET).digest()  # noqa: S324 - RFC 5176
            self.sock.sendto(header + auth, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="status events per second")
    args = parser.parse_args()
    with services() as base:
        prefix = f"bench{uuid.uuid4().hex[:8]}-"
        catalog = Catalog.build(prefix)
        specs = [
            catalog.resolve(s)
            for s in (SUBSCRIBERS, CONTRACTS, NAS, ACCOUNTING, CONTRACT_STATUS, COA_RESULTS)
        ]
        TopicAdmin(base.kafka).apply(catalog.only(*specs))
        settings = base.model_copy(
            update={
                "radius": RadiusSettings(
                    nas_secrets={SECRET_REF: SecretStr(SECRET.decode())},
                    coa_start_from="earliest",
                )
            }
        )
        nas = AckingNas()
        producer = build_producer(settings, catalog=catalog)
        now = datetime.now(UTC)
        producer.emit(
            NAS,
            {
                "envelope": envelope("bench"),
                "nas_id": "1",
                "name": "bras-1",
                "ip": "127.0.0.1",
                "vendor": "MIKROTIK",
                "secret_ref": SECRET_REF,
                "coa_port": nas.port,
            },
        )
        for i in range(args.events):
            login = f"b{i}@fibra"
            producer.emit(
                SUBSCRIBERS,
                {
                    "envelope": envelope("bench"),
                    "login": login,
                    "login_id": login,
                    "login_type": "PPPOE",
                    "contract_id": f"c-{i}",
                    "customer_id": "1",
                    "status": "ACTIVE",
                    "password": "x",
                    "download_kbps": 100_000,
                    "upload_kbps": 50_000,
                },
            )
            producer.emit(
                ACCOUNTING,
                {
                    "envelope": envelope("bench"),
                    "login": login,
                    "status_type": "start",
                    "session_id": f"s{i}",
                    "nas_id": "1",
                    "nas_ip_address": "127.0.0.1",
                    "event_at": now,
                    "received_at": now,
                },
            )
        producer.flush()
        worker = CoaWorker(settings, catalog=catalog)
        worker.start()

        def emit() -> None:
            for i in range(args.events):
                at = datetime.now(UTC)
                event: dict[str, Any] = {
                    "envelope": envelope("bench", occurred_at=at),
                    "contract_id": f"c-{i}",
                    "customer_id": "1",
                    "previous_status": "ACTIVE",
                    "new_status": "BLOCKED",
                    "reason": "NON_PAYMENT_BLOCK",
                    "changed_at": at,
                }
                producer.emit(CONTRACT_STATUS, event)
                producer.poll(0)
                time.sleep(1.0 / args.rate)
            producer.flush()

        lags: list[float] = []
        other = 0
        sender = threading.Thread(target=emit, daemon=True)
        sender.start()
        deadline = time.monotonic() + args.events / args.rate + 60
        try:
            while len(lags) + other < args.events and time.monotonic() < deadline:
                worker.run_once(0.2)
                for r in worker.last_results:
                    if r["outcome"] == "ACK":
                        lags.append(float(r["status_event_lag_ms"]))
                    else:
                        other += 1
        finally:
            sender.join(30)
            worker.close()
            producer.close()
            nas.close()
        if len(lags) < 2:
            raise SystemExit(f"only {len(lags)} ACKs ({other} other outcomes)")
        q = statistics.quantiles(lags, n=100)
        print(
            f"{len(lags)} ACKs, {other} other outcomes, {nas.received} datagrams at the NAS, "
            f"{args.rate:.0f} events/s"
        )
        report("radius_coa_block_to_ack_p50", q[49], "ms", q[49] / 5000.0, PEER)
        report("radius_coa_block_to_ack_p99", q[98], "ms", q[98] / 5000.0, PEER)


if __name__ == "__main__":
    main()
