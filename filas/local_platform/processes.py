"""Detached service processes tracked by pid files, plus port helpers.

A service outlives the ``filas up`` that started it, so its pid is the only handle a later
``filas down`` has. A pid file alone is not trusted: the pid may have been reused by an unrelated
process, so the file also records a token that must appear in the process's command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from filas.errors import PlatformError

_TAIL_BYTES = 6000
# Popen objects of the services this Python process started. Holding them keeps Popen.__del__
# from warning "still running" (the services are meant to outlive it) and lets us reap zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now (a later bind can still race; tests accept that)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_block(count: int, host: str = "127.0.0.1", attempts: int = 50) -> int:
    """First of ``count`` consecutive free ports (a cluster lays its nodes out by offset)."""
    for _ in range(attempts):
        base = free_port(host)
        if base + count > 65535:
            continue
        if all(_bindable(host, base + i) for i in range(count)):
            return base
    raise PlatformError(f"no block of {count} consecutive free ports found on {host}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(path: Path, max_bytes: int = _TAIL_BYTES) -> str:
    """The end of a log file, for error messages: the cause of a failed start is nearly always
    in the last few dozen lines."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"


def _alive(pid: int) -> bool:
    # Reap our own exited children first: a zombie still answers kill(pid, 0).
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 is the state; "Z" (zombie) and "X" (dead) no longer run anything.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass(frozen=True)
class ServiceProcess:
    """One long-running service process: how to start it and where its pid and log live."""

    name: str
    argv: Sequence[str]
    run_dir: Path
    log_path: Path
    # A string unique to this instance (usually its config path) that its command line contains.
    token: str
    cwd: Path | None = None
    env: Mapping[str, str] | None = None

    @property
    def pid_path(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    def pid(self) -> int | None:
        """The running pid, or None (stale pid files are removed)."""
        try:
            pid_text, token = self.pid_path.read_text().split("\n", 1)
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        child = _CHILDREN.get(pid)
        if child is not None:
            # Our own child: no reuse possible while we hold it unreaped.
            if child.poll() is None:
                return pid
        elif _alive(pid):
            cmdline = _cmdline(pid)
            # An empty command line is a process mid-exec (the java launcher re-execs itself):
            # alive, just not identifiable yet.
            if not cmdline or token.strip() in cmdline:
                return pid
        self.pid_path.unlink(missing_ok=True)
        return None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> int:
        """Start detached (own session, so a Ctrl-C in the terminal does not reach it)."""
        existing = self.pid()
        if existing is not None:
            return existing
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        with self.log_path.open("ab") as log:
            log.write(f"\n==== {time.strftime('%F %T')} starting {self.name}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    list(self.argv),
                    cwd=self.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise PlatformError(f"could not start {self.name}: {exc}") from exc
        _CHILDREN[proc.pid] = proc
        self.pid_path.write_text(f"{proc.pid}\n{self.token}\n")
        return proc.pid

    def signal(self, sig: signal.Signals) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown hooks, no flush."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid, 10.0)
        self.pid_path.unlink(missing_ok=True)

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if the process is still there after ``grace_s``."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, grace_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 10.0)
        self.pid_path.unlink(missing_ok=True)

    @staticmethod
    def _wait_gone(pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.1)
        return not _alive(pid)


def wait_until(
    what: str,
    ready: Callable[[], bool],
    timeout_s: float,
    processes: Sequence[ServiceProcess] = (),
    interval_s: float = 0.25,
) -> float:
    """Poll ``ready`` until it is true; return the seconds it took.

    Fails fast, with the log tail, as soon as one of ``processes`` exits: waiting out the whole
    timeout for a service that already died only hides the cause.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        for proc in processes:
            if not proc.running():
                raise PlatformError(
                    f"{proc.name} exited while waiting for {what}; log {proc.log_path}:\n"
                    f"{log_tail(proc.log_path)}"
                )
        if ready():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- {p.log_path}\n{log_tail(p.log_path)}" for p in processes)
            raise PlatformError(f"{what} not ready after {timeout_s:.0f}s\n{tails}")
        time.sleep(interval_s)
