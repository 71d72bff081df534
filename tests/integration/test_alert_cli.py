"""``filas alerts serve`` as operators run it: a subprocess on the platform, fed ping results,
emits the alert and its responses, serves /metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from filas.catalog.ixc_state import DEVICES
from filas.catalog.network import ALERTS, PING_RESULTS, RESPONSES
from filas.local_platform.processes import free_port
from filas.monitoring.scrape import ScrapeError, scrape
from producers.envelope import envelope
from streams.network.engine import AlertEngine, Observation
from streams.network.noc_webhook import NocWebhook
from streams.network.responses import ResponsePlanner
from streams.network.service import device_info
from tests.integration.test_ping_pinger import (
    Env,
    TopicReader,
    device,
    env,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.integration


def result(device_id: str, at: datetime, received: int) -> dict[str, Any]:
    return {
        "envelope": envelope("test", occurred_at=at),
        "device_id": device_id,
        "target_ip": "127.0.0.1",
        "probes_sent": 1,
        "probes_received": received,
        "loss_ratio": 1.0 - received,
        "probed_at": at,
        "pinger_instance": "test",
    }


def test_alerts_serve_process(env: Env) -> None:  # noqa: F811
    env.producer.emit(DEVICES, device("olt-9", "127.0.0.1", logins=("L1", "L2")))
    env.producer.flush()
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FILAS_")} | {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": env.settings.kafka.bootstrap_servers,
        "FILAS_REGISTRY__URL": env.settings.registry.url,
        "FILAS_TOPICS__PREFIX": env.catalog.prefix,
        "FILAS_METRICS__PORT": str(port),
        "FILAS_PING__DOWN_AFTER_ROUNDS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "filas.cli.main", "alerts", "serve", "--stats-every", "1"],
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def reap() -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    env.started.append(reap)
    start = datetime.now(UTC) - timedelta(minutes=1)
    for i in range(4):
        env.producer.emit(PING_RESULTS, result("olt-9", start + timedelta(seconds=i), 0))
    env.producer.flush()
    alerts = TopicReader(env, ALERTS)
    [opened] = alerts.until(lambda rs: len(rs) >= 1, 60, "the alert from the CLI process")
    assert (opened["action"], opened["root_device_id"]) == ("open", "olt-9")
    assert opened["affected_subscriber_count"] == 2
    responses = TopicReader(env, RESPONSES)
    notices = responses.until(
        lambda rs: len([r for r in rs if r["kind"] == "SUBSCRIBER_NOTICE"]) == 2, 20, "notices"
    )
    assert {r["login_id"] for r in notices if r["kind"] == "SUBSCRIBER_NOTICE"} == {"L1", "L2"}
    deadline = time.monotonic() + 10
    while True:
        try:
            samples = scrape(f"http://127.0.0.1:{port}/metrics")
            break
        except ScrapeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    counted = {
        (dict(labels)["component"], dict(labels)["topic"]): value
        for (name, labels), value in samples.items()
        if name in ("filas_events_in_total", "filas_events_out_total")
    }
    assert counted[("alerting", env.catalog.resolve(PING_RESULTS).name)] >= 4
    assert counted[("alerting", env.catalog.resolve(ALERTS).name)] >= 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


class NocEndpoint:
    """A webhook receiver on 127.0.0.1 (free port): accepts, or refuses with 400, by device."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, Any], str]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                refused = body["root_device_id"] == "refused"
                if not refused:
                    received.append((body, self.headers["Idempotency-Key"]))
                self.send_response(400 if refused else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/noc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_noc_webhook_posts_notifications_and_dead_letters_refusals(env: Env) -> None:  # noqa: F811
    endpoint = NocEndpoint()
    env.started.append(endpoint.close)
    settings = env.settings.model_copy(
        update={
            "ping": env.settings.ping.model_copy(
                update={"noc_webhook_url": SecretStr(endpoint.url), "noc_webhook_retries": 1}
            )
        }
    )
    engine = AlertEngine(settings.ping)
    engine.upsert_device(device_info(device("olt-7", "127.0.0.1", logins=("L1",))))
    engine.upsert_device(device_info(device("refused", "127.0.0.2")))
    planner = ResponsePlanner(settings.ping.responses)
    at = int(time.time() * 1000)
    for i in range(3):
        engine.observe(Observation("olt-7", at + i, 1, 0))
        engine.observe(Observation("refused", at + i, 1, 0))
    planned = [r for e in engine.drain() for r in planner.plan(e)]
    for r in planned:
        env.producer.emit(RESPONSES, r)
    env.producer.flush()
    hook = NocWebhook(settings, catalog=env.catalog, serdes=env.serdes)
    try:
        deadline = time.monotonic() + 30
        while hook.sent + hook.dead_letters < 2 and time.monotonic() < deadline:
            hook.run_once(0.2)
    finally:
        hook.close()
    [(body, key)] = endpoint.received
    noc = next(r for r in planned if r["kind"] == "NOC_NOTIFY" and r["root_device_id"] == "olt-7")
    assert key == noc["response_id"]
    assert (body["root_device_id"], body["affected_subscriber_count"]) == ("olt-7", 1)
    dlq = TopicReader(env, env.catalog.dead_letter_for(RESPONSES))
    [letter] = dlq.until(lambda rs: len(rs) == 1, 10, "the refused notification")
    assert letter["error_code"] == "noc_webhook"
    assert "HTTP 400" in letter["error_message"]
