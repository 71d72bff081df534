"""``filas alerts serve`` as operators run it: a subprocess on the platform, fed ping results,
emits the alert and its responses, serves /metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from filas.catalog.ixc_state import DEVICES
from filas.catalog.network import ALERTS, PING_RESULTS, RESPONSES
from filas.local_platform.processes import free_port
from filas.monitoring.scrape import ScrapeError, scrape
from producers.envelope import envelope
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
