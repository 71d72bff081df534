"""``filas radius serve --workers N``: N gateway processes sharing the RADIUS ports.

One gateway process is one Python core (~the decode, decide, sign and two Avro events per
request). Each worker is a complete ``filas radius serve`` (its own replica, live-sessions
table and event producer, decision 0050) whose sockets set SO_REUSEPORT; the kernel hashes
every NAS flow (source address and port) to one worker, so a NAS's retransmissions reach the
worker holding its RFC 5080 duplicate cache. This parent only starts, watches and stops them
(docs/decisions/0101-radius-workers-so-reuseport.md).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping

from filas.errors import FilasError
from filas.settings import Settings

READY_MARK = "radius gateway up"


def concrete_port(host: str, port: int) -> int:
    """A configured port 0 becomes one free port that every worker then binds."""
    if port:
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host if host != "0.0.0.0" else "127.0.0.1", 0))  # noqa: S104
        return int(sock.getsockname()[1])


def worker_env(
    settings: Settings, base: Mapping[str, str], index: int, auth_port: int, acct_port: int
) -> dict[str, str]:
    radius = settings.radius
    instance = radius.gateway_instance or f"{socket.gethostname()}:{os.getpid()}"
    env = dict(base) | {
        "FILAS_RADIUS__AUTH_PORT": str(auth_port),
        "FILAS_RADIUS__ACCT_PORT": str(acct_port),
        "FILAS_RADIUS__REUSE_PORT": "true",
        "FILAS_RADIUS__GATEWAY_INSTANCE": f"{instance}/w{index}",
    }
    if settings.metrics.port:
        env["FILAS_METRICS__PORT"] = str(settings.metrics.port + index)
    return env


class Workers:
    """Start N workers, forward their stderr with a prefix, report when all are up, stop them
    all when one dies or on SIGTERM/SIGINT."""

    def __init__(
        self,
        settings: Settings,
        count: int,
        stats_every: float,
        echo: Callable[[str], None],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        radius = settings.radius
        self.auth_port = concrete_port(radius.bind_host, radius.auth_port)
        self.acct_port = concrete_port(radius.bind_host, radius.acct_port)
        self._settings = settings
        self._count = count
        self._stats_every = stats_every
        self._echo = echo
        self._environ = dict(os.environ if environ is None else environ)
        self._procs: list[subprocess.Popen[str]] = []
        self._ready: list[threading.Event] = []

    def start(self, timeout_s: float) -> None:
        for index in range(self._count):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "filas.cli.main", "radius", "serve"),
                    *("--workers", "1", "--stats-every", str(self._stats_every)),
                ],
                env=worker_env(
                    self._settings, self._environ, index, self.auth_port, self.acct_port
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            ready = threading.Event()
            self._procs.append(proc)
            self._ready.append(ready)
            threading.Thread(target=self._forward, args=(index, proc, ready), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        for index, ready in enumerate(self._ready):
            while not ready.wait(0.2):
                if self._procs[index].poll() is not None:
                    self.stop()
                    raise FilasError(f"radius worker {index} exited during start-up")
                if time.monotonic() > deadline:
                    self.stop()
                    raise FilasError(f"radius worker {index} not up within {timeout_s:.0f}s")

    def _forward(self, index: int, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if READY_MARK in line:  # only the parent announces the gateway as up
                ready.set()
                line = line.replace(READY_MARK, "radius worker up")
            self._echo(f"[w{index}] {line.rstrip()}")

    def wait(self) -> int:
        """Block until a worker exits or a signal arrives; returns the exit status."""
        stopping = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not stopping.wait(0.5):
                for index, proc in enumerate(self._procs):
                    if proc.poll() is not None:
                        self._echo(f"radius worker {index} exited with {proc.returncode}")
                        return proc.returncode or 1
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
