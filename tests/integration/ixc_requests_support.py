"""Shared by the service-request integration tests and benches: the IXC simulator on a thread,
and ``filas ingress serve`` / ``filas requests work`` as real subprocesses pointed at the test's
topics (so a worker can be killed -9 and a second ingress instance started)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from filas.settings import Settings
from producers.ixc.simulator import IxcSimulator, SimulatedIsp

SIM_TOKEN = "sim-requests-token"
API_TOKEN = "api-token-noc"
LIMITED_TOKEN = "api-token-limited"
GATEWAY_SECRET = "pix-gateway-secret"
REPO = Path(__file__).resolve().parents[2]


class SimThread:
    """The IXC homologation simulator served from its own event loop on a daemon thread."""

    def __init__(self, isp: SimulatedIsp) -> None:
        self.sim = IxcSimulator(isp, token=SIM_TOKEN)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.base_url = asyncio.run_coroutine_threadsafe(self.sim.start(), self._loop).result(10)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the simulator's loop (mutations race-free with requests)."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def service_env(settings: Settings, prefix: str, sim_url: str, **extra: str) -> dict[str, str]:
    """FILAS_* variables for a subprocess: the test's Kafka, registry, prefix and simulator."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FILAS_")}
    kafka = settings.kafka
    env |= {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": kafka.security_protocol.value,
        "FILAS_KAFKA__SASL_MECHANISM": kafka.sasl_mechanism,
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_TOPICS__PREFIX": prefix,
        "FILAS_IXC__BASE_URL": sim_url,
        "FILAS_IXC__TOKEN": SIM_TOKEN,
        "FILAS_IXC__MIN_REQUEST_INTERVAL_S": "0",
        "FILAS_IXC__REQUEST_TIMEOUT_S": "3.0",
        "FILAS_INGRESS__TOKENS": json.dumps({"noc": API_TOKEN, "limited": LIMITED_TOKEN}),
        "FILAS_INGRESS__WEBHOOK_SECRETS": json.dumps({"pix-gw": GATEWAY_SECRET}),
        "FILAS_INGRESS__CLIENT_RATES": json.dumps({"limited": 1.0}),
        "FILAS_INGRESS__RATE_PER_S": "5000",
        "FILAS_INGRESS__RATE_BURST": "5000",
        "FILAS_INGRESS__BACKOFF_INITIAL_S": "0.2",
        "FILAS_INGRESS__BACKOFF_MAX_S": "1.0",
        "FILAS_INGRESS__MAX_ATTEMPTS": "3",
        "FILAS_INGRESS__IXC_RATE_PER_S": "200",
        "FILAS_INGRESS__WORKER_SESSION_TIMEOUT_S": "6",
        # One request at a time: the lane test can tell which lane was drained first.
        "FILAS_INGRESS__WORKER_CONCURRENCY": "1",
    }
    if kafka.sasl_username is not None:
        env["FILAS_KAFKA__SASL_USERNAME"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        env["FILAS_KAFKA__SASL_PASSWORD"] = kafka.sasl_password.get_secret_value()
    if settings.registry.username is not None and settings.registry.password is not None:
        env["FILAS_REGISTRY__USERNAME"] = settings.registry.username
        env["FILAS_REGISTRY__PASSWORD"] = settings.registry.password.get_secret_value()
    return env | extra


class Service:
    """One ``filas`` subprocess; ``kill()`` sends SIGKILL (no clean shutdown at all)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "filas.cli.main", *args],
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not logged; log:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def wait_state(
    client: httpx.Client, request_id: str, states: set[str], timeout_s: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/requests/{request_id}")
        if response.status_code == 200:
            body = response.json()
            if body["state"] in states:
                return body
        time.sleep(0.05)
    raise AssertionError(f"{request_id} not in {states} after {timeout_s}s: {body}")
