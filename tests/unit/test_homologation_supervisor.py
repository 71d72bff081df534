"""The homologation supervisor with fake processes: readiness, early exits, ordered stop with
escalation (SIGINT, SIGTERM, SIGKILL), and one log file per child."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import pytest

from filas.homologation.supervisor import Supervisor, SupervisorError, log_contains


class FakeProc:
    def __init__(self, name: str, ignores: set[int], stops: list[str], ready_after: int) -> None:
        self.name = name
        self.pid = 1000 + len(stops)
        self.ignores = ignores
        self.signals: list[int] = []
        self.code: int | None = None
        self.stops = stops
        self.polls = 0
        self.ready_after = ready_after
        self.log: IO[bytes] | None = None

    def poll(self) -> int | None:
        self.polls += 1
        if self.log is not None and self.polls == self.ready_after:
            self.log.write(b"service up\n")
            self.log.flush()
        return self.code

    def wait(self, timeout: float | None = None) -> int:
        if self.code is None:
            raise subprocess.TimeoutExpired(self.name, timeout or 0)
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig not in self.ignores:
            self.code = -sig
            self.stops.append(self.name)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class FakeSpawner:
    def __init__(self) -> None:
        self.procs: dict[str, FakeProc] = {}
        self.stops: list[str] = []
        self.plan: dict[str, tuple[set[int], int, int | None]] = {}
        self.envs: dict[str, Mapping[str, str]] = {}

    def __call__(self, argv: Sequence[str], env: Mapping[str, str], log: IO[bytes]) -> FakeProc:
        name = argv[0]
        ignores, ready_after, exit_code = self.plan.get(name, (set(), 2, None))
        proc = FakeProc(name, ignores, self.stops, ready_after)
        proc.log = log
        proc.code = exit_code
        self.procs[name] = proc
        self.envs[name] = env
        return proc


def supervisor(tmp_path: Path, spawner: FakeSpawner) -> Supervisor:
    clock = [0.0]

    def sleep(s: float) -> None:
        clock[0] += s

    return Supervisor(
        tmp_path / "logs", {"BASE": "1"}, spawn=spawner, clock=lambda: clock[0], sleep=sleep
    )


def test_start_waits_for_readiness_and_logs_per_child(tmp_path: Path) -> None:
    spawner = FakeSpawner()
    spawner.plan["gateway"] = (set(), 5, None)
    sup = supervisor(tmp_path, spawner)
    child = sup.start("gw", ["gateway"], env={"X": "2"}, ready=log_contains("service up"))
    assert child.log_path == tmp_path / "logs" / "gw.log"
    assert "service up" in child.log_text()
    assert spawner.envs["gateway"] == {"BASE": "1", "X": "2"}
    assert sup.running() == ["gw"]


def test_a_child_that_exits_before_ready_fails_the_start_with_its_log(tmp_path: Path) -> None:
    spawner = FakeSpawner()
    spawner.plan["broken"] = (set(), 99, 3)
    sup = supervisor(tmp_path, spawner)
    with pytest.raises(SupervisorError, match="exited with 3 before it was ready"):
        sup.start("b", ["broken"], ready=log_contains("never"))


def test_readiness_times_out(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, FakeSpawner())
    with pytest.raises(SupervisorError, match="not ready after 2s"):
        sup.start("slow", ["slow"], ready=log_contains("never"), timeout_s=2)


def test_stop_all_goes_in_reverse_order_and_escalates(tmp_path: Path) -> None:
    spawner = FakeSpawner()
    spawner.plan["stubborn"] = ({signal.SIGINT, signal.SIGTERM}, 2, None)
    sup = supervisor(tmp_path, spawner)
    for name in ("sink", "stubborn", "worker"):
        sup.start(name, [name])
    codes = sup.stop_all()
    assert spawner.stops == ["worker", "stubborn", "sink"]  # last started, first stopped
    assert spawner.procs["stubborn"].signals == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    assert spawner.procs["sink"].signals == [signal.SIGINT]
    assert codes == {"worker": -signal.SIGINT, "stubborn": -signal.SIGKILL, "sink": -signal.SIGINT}
    assert sup.running() == []


def test_context_exit_stops_everything_even_on_error(tmp_path: Path) -> None:
    spawner = FakeSpawner()

    def failing_step() -> None:
        with supervisor(tmp_path, spawner) as sup:
            sup.start("a", ["a"])
            raise RuntimeError("step failed")

    with pytest.raises(RuntimeError):
        failing_step()
    assert spawner.stops == ["a"]


def test_run_returns_the_exit_code_of_a_one_shot(tmp_path: Path) -> None:
    spawner = FakeSpawner()
    spawner.plan["topics"] = (set(), 2, 0)
    sup = supervisor(tmp_path, spawner)
    code, _log = sup.run("topics", ["topics"])
    assert code == 0
    assert sup.stop_all() == {"topics": 0}
    assert spawner.procs["topics"].signals == []  # finished: never signalled
