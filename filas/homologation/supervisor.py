"""A small process supervisor: named subprocesses, one log file each, readiness checks, and a
stop that always runs (SIGINT, then SIGTERM, then SIGKILL), in reverse start order.

Children run in their own session, so a Ctrl-C in the terminal reaches the run only and the run
stops them in order (a sink must outlive the processors whose events it lands). The process
factory is a parameter so unit tests drive the supervisor with fakes.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from filas.errors import FilasError


class SupervisorError(FilasError):
    code = "HOMOLOGATION_PROCESS"
    retriable = False


class Proc(Protocol):
    """What the supervisor needs of a child (``subprocess.Popen`` satisfies it)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


Spawn = Callable[[Sequence[str], Mapping[str, str], IO[bytes]], Proc]


def spawn_subprocess(argv: Sequence[str], env: Mapping[str, str], log: IO[bytes]) -> Proc:
    return subprocess.Popen(
        list(argv),
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def filas_argv(*args: str) -> list[str]:
    """The argv of a ``filas`` command in this interpreter."""
    return [sys.executable, "-m", "filas.cli.main", *args]


# Readiness: a check gets the log text so far and answers whether the child is ready.
Ready = Callable[[str], bool]


def log_contains(text: str) -> Ready:
    return lambda log: text in log


def tcp_open(host: str, port: int) -> Ready:
    def check(_log: str) -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def http_ok(url: str) -> Ready:
    def check(_log: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - local URL
                return 200 <= int(response.status) < 300
        except OSError:
            return False

    return check


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: Proc
    log_path: Path
    log: IO[bytes]
    started_at: float
    exit_code: int | None = None
    stopped_by_us: bool = False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Supervisor:
    """Start named children, wait for readiness, stop them all (reverse order) on exit."""

    log_dir: Path
    base_env: Mapping[str, str]
    spawn: Spawn = spawn_subprocess
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    stop_grace_s: float = 15.0
    children: dict[str, Child] = field(default_factory=dict)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        ready: Ready | None = None,
        timeout_s: float = 90.0,
    ) -> Child:
        """Start ``argv`` as ``name`` (log: <log_dir>/<name>.log) and wait until ``ready``."""
        if name in self.children and self.children[name].proc.poll() is None:
            raise SupervisorError(f"{name} is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        proc = self.spawn(argv, {**self.base_env, **(env or {})}, log)
        child = Child(name, list(argv), proc, log_path, log, self.clock())
        self.children[name] = child
        if ready is not None:
            self.wait_ready(name, ready, timeout_s)
        return child

    def wait_ready(self, name: str, ready: Ready, timeout_s: float) -> None:
        child = self.children[name]
        deadline = self.clock() + timeout_s
        while True:
            if ready(child.log_text()):
                return
            code = child.proc.poll()
            if code is not None:
                child.exit_code = code
                raise SupervisorError(
                    f"{name} exited with {code} before it was ready; "
                    f"log {child.log_path}:\n{_tail(child.log_text())}"
                )
            if self.clock() >= deadline:
                raise SupervisorError(
                    f"{name} not ready after {timeout_s:.0f}s; "
                    f"log {child.log_path}:\n{_tail(child.log_text())}"
                )
            self.sleep(0.1)

    def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 300.0,
    ) -> tuple[int, str]:
        """Run a one-shot command to completion: (exit code, its log text)."""
        child = self.start(name, argv, env=env)
        deadline = self.clock() + timeout_s
        while child.proc.poll() is None:
            if self.clock() >= deadline:
                self.stop(name)
                raise SupervisorError(f"{name} did not finish in {timeout_s:.0f}s")
            self.sleep(0.1)
        child.exit_code = child.proc.poll()
        child.log.close()
        return int(child.exit_code or 0), child.log_text()

    def alive(self, name: str) -> bool:
        child = self.children.get(name)
        return child is not None and child.proc.poll() is None

    def stop(self, name: str) -> int | None:
        """SIGINT, then SIGTERM, then SIGKILL, each given ``stop_grace_s`` / 3 (at least 2 s)."""
        child = self.children[name]
        step = max(2.0, self.stop_grace_s / 3)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if child.proc.poll() is not None:
                break
            child.stopped_by_us = True
            try:
                child.proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                child.proc.wait(timeout=step)
            except subprocess.TimeoutExpired:
                continue
        child.exit_code = child.proc.poll()
        if not child.log.closed:
            child.log.close()
        return child.exit_code

    def stop_all(self) -> dict[str, int | None]:
        """Stop every child, last started first; returns each one's exit code."""
        codes: dict[str, int | None] = {}
        for name in reversed(list(self.children)):
            codes[name] = self.stop(name)
        return codes

    def running(self) -> list[str]:
        return [name for name, child in self.children.items() if child.proc.poll() is None]

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])
