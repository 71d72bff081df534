"""The training guide (docs/treinamento/) as the team types it: every ```bash treino block of
every exercise runs, in order, in one bash per exercise (``set -euo pipefail``) against the
session platform, in a training area of its own (FILAS_TOPICS__PREFIX, TREINO), and each
exercise's "Resultado esperado" is checked here, partly on the printed output and partly on
Kafka itself. A process an exercise starts with ``&`` must be stopped by the exercise; whatever
is left is killed (its process group) and fails the test."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from filas.local_platform.processes import free_port
from filas.local_platform.testing import child_env
from filas.settings import Settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "treinamento"
BLOCK = re.compile(r"^```bash treino\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
MARK = "@@treino-bloco@@"
EXERCISE_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Exercise:
    number: int
    path: Path
    blocks: list[str]


def exercises() -> list[Exercise]:
    found = []
    for path in sorted(GUIDE.glob("[0-9][0-9]-*.md")):
        found.append(Exercise(int(path.name[:2]), path, BLOCK.findall(path.read_text())))
    return found


@dataclass
class Ran:
    """One exercise's output, split per ```bash treino block (stdout and stderr together)."""

    blocks: list[str]
    leftover: bool

    def lines(self, block: int) -> list[str]:
        return self.blocks[block].splitlines()

    def json_lines(self, block: int) -> list[dict[str, Any]]:
        out = []
        for line in self.lines(block):
            if line.startswith("{"):
                try:
                    document = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not {"level", "logger"} <= document.keys():  # not a service's log line
                    out.append(document)
        return out


def guide_env(settings: Settings, prefix: str, home: Path) -> dict[str, str]:
    """The FILAS_* variables `.filas/platform.env` gives the team, for the session platform."""
    return child_env(settings, prefix, home) | {
        # What the preparation's `export` lines set (the test's own area and ports).
        "TREINO": f"{prefix}treino",
        "PORTA_STATUS": str(free_port()),
        "PORTA_IXC": str(free_port()),
        "PORTA_INGRESS": str(free_port()),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_exercise(exercise: Exercise, env: dict[str, str], cwd: Path) -> Ran:
    parts = ["set -euo pipefail"]
    for block in exercise.blocks:
        parts += [f"echo {MARK}", block]
    proc = subprocess.Popen(
        ["bash", "-c", "exec 2>&1\n" + "\n".join(parts)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the exercise's background jobs share this process group
    )
    try:
        out, _ = proc.communicate(timeout=EXERCISE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{exercise.path.name} did not finish in {EXERCISE_TIMEOUT_S}s:\n{out[-4000:]}")
    leftover = False
    deadline = time.monotonic() + 5
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(proc.pid):
        leftover = True
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(2)
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"{exercise.path.name} exited {proc.returncode}:\n{out[-6000:]}"
    blocks = out.split(MARK + "\n")[1:]
    assert len(blocks) == len(exercise.blocks), out[-4000:]
    return Ran(blocks, leftover)


# ---- each exercise's "Resultado esperado" ----------------------------------------------------


def check_preparation(ran: Ran, env: dict[str, str]) -> None:
    prefix = env["FILAS_TOPICS__PREFIX"]
    assert f"{prefix}radius.accounting" in ran.blocks[0]
    assert f"{prefix}radius.accounting.dlq" in ran.blocks[0]
    assert re.search(r"^\d+ created, 0 columns added, \d+ unchanged$", ran.blocks[0], re.M)


def check_status_page(ran: Ran, env: dict[str, str]) -> None:
    page = ran.blocks[0]
    assert "<h1>Filas queue status</h1>" in page
    document = json.loads(page[page.index("{") :])
    assert document["topicos"] > 0
    assert document["gargalos"] == []
    for table in ("topics", "consumer groups", "bottlenecks"):
        assert table in ran.blocks[1]
    assert f"{env['FILAS_TOPICS__PREFIX']}radius.accounting" in ran.blocks[1]


def check_bottleneck(ran: Ran, env: dict[str, str]) -> None:
    group, topic = f"{env['TREINO']}-sink", f"{env['FILAS_TOPICS__PREFIX']}radius.accounting"
    assert "2 rows in 1 batches, 0 dead letters" in ran.blocks[0]
    [finding] = ran.json_lines(1)
    assert (finding["rule"], finding["group"], finding["topic"]) == ("group_stalled", group, topic)
    assert finding["evidence"]["lag"] == 2
    assert finding["evidence"]["members"] == 0
    assert "no member is running" in finding["fix"]
    assert "2 rows in 1 batches, 0 dead letters" in ran.blocks[2]
    assert ran.json_lines(2) == [{"group": group, "topic": topic, "lag": 0}]


def check_dlq(ran: Ran, env: dict[str, str], settings: Settings) -> None:
    prefix = env["FILAS_TOPICS__PREFIX"]
    assert re.search(r"^0 rows in \d+ batches, 1 dead letters", ran.blocks[0], re.M)
    assert "decode (DecodeError)" in ran.blocks[1]
    assert "unknown magic byte 0x7b" in ran.blocks[1]
    replay = ran.blocks[2]
    assert "would-replay: 0@0" in replay
    assert "dry run: replayed 0" in replay
    assert "replayed 1, already sent 0" in replay
    assert re.search(r"^replayed 0, already sent 0", replay, re.M), "the second run sends nothing"
    [shown] = [x for x in ran.lines(2) if "filas-dlq-origin=" in x]
    assert "chave=ana@fibra" in shown
    # Independently of kcat: the original bytes are back in the source topic, exactly once.
    topic = f"{prefix}radius.accounting"
    config = {"group.id": f"{prefix}check", "auto.offset.reset": "earliest"}
    consumer = Consumer(settings.kafka.client_config() | config | {"enable.auto.commit": False})
    back = []
    try:
        consumer.subscribe([topic])
        idle_until = time.monotonic() + 15
        while time.monotonic() < idle_until:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            idle_until = time.monotonic() + 3
            headers = dict(msg.headers() or [])
            if "filas-dlq-origin" in headers:
                back.append((msg.key(), msg.value(), headers["filas-dlq-origin"]))
    finally:
        consumer.close()
    assert back == [
        (b"ana@fibra", b'{"login": "ana@fibra", "status": "start"}', f"{topic}.dlq:0:0".encode())
    ]


def check_campaign(ran: Ran, env: dict[str, str]) -> None:
    assert "total emitted=" in ran.blocks[0]
    assert "dead_lettered=0" in ran.blocks[0]
    [campaign] = re.findall(r"^campanha: ([0-9a-f-]{36})$", ran.blocks[1], re.M)
    [bar] = [x for x in ran.lines(1) if x.startswith("done")]
    assert "50 matched" in bar
    *messages, progress = ran.json_lines(2)
    assert len(messages) == 2
    for message in messages:
        assert message["channel"] in ("email", "sms")
        assert message["address"]
        assert message["body"].startswith("Olá ")
    assert progress["status"] == "done"
    assert progress["matched"] == 50
    assert progress["queued"] == progress["planned"] > 0
    skipped = ("no_consent", "invalid_address", "opt_out", "frequency_cap")
    assert progress["planned"] + sum(progress[f"skipped_{k}"] for k in skipped) == 100
    assert progress["skipped_no_consent"] > 0
    env["CAMPANHA_DO_TREINO"] = campaign  # exercise 6 finds it in ClickHouse


def check_outage(ran: Ran, env: dict[str, str]) -> None:
    lines = ran.json_lines(2)
    alerts = [x for x in lines if "action" in x]
    assert alerts == [
        {
            "action": "open",
            "state": "down",
            "severity": "minor",
            "root_device_id": "olt-treino",
            "affected_subscriber_count": 3,
            "summary": "OLT Treino (POP Centro) down: 1 devices, 3 subscribers",
        }
    ]
    responses = [x for x in lines if "kind" in x]
    kinds = sorted(x["kind"] for x in responses)
    assert kinds == sorted(["NOC_NOTIFY", "TICKET", "PAUSE_MARKETING"] + 3 * ["SUBSCRIBER_NOTICE"])
    notices = {x["login_id"] for x in responses if x["kind"] == "SUBSCRIBER_NOTICE"}
    assert notices == {"ana@fibra", "bruno@fibra", "carla@fibra"}
    assert re.search(r"results=4 alerts=1 responses=6 .*dead_letters=0", ran.blocks[2])


def check_clickhouse(ran: Ran, env: dict[str, str]) -> None:
    assert "1 dead letters" in ran.blocks[0]
    out = ran.blocks[1]
    for name in ("alerts_per_root_cause", "campaign_funnel", "consumer_lag_history"):
        assert re.search(rf"^{name}\s", out, re.M), name
    rows = [line.split("\t") for line in ran.lines(1) if "\t" in line]
    [alert] = [r for r in rows if r[0] == "olt-treino"]
    assert alert[1] == "OLT Treino (POP Centro)"
    assert alert[5] == "3"  # subscribers_affected
    [funnel] = [r for r in rows if r[0] == env["CAMPANHA_DO_TREINO"]]
    assert int(funnel[1]) > 0  # queued
    assert funnel[2] == "0"  # sent: nobody ran the delivery workers in the training area
    assert [r for r in rows if r[0] == f"{env['TREINO']}-sink"], "lag history of the sink group"


def check_requests(ran: Ran, env: dict[str, str]) -> None:
    assert json.loads(ran.lines(0)[-1]) == {"ok": True}
    ticket, trusted, refused = (json.loads(x) for x in ran.lines(1)[-3:])
    assert ticket["type"] == "open_ticket"
    assert ticket["state"] == "done"
    assert ticket["result"]["ixc_id"]
    assert trusted == {**trusted, "type": "trust_unblock", "state": "done", "error": None}
    assert refused["state"] == "failed"
    assert refused["attempts"] == 1
    assert refused["error"]["code"] == "CONTRATO_NAO_BLOQUEADO"
    [pair] = re.findall(r"^primeiro: (\S+) repetido: (\S+)$", ran.blocks[2], re.M)
    assert pair[0] == pair[1] != "null"
    assert '"replayed_signature"' in ran.lines(2)


def test_every_exercise_is_indexed_and_states_its_expected_result() -> None:
    index = (GUIDE / "README.md").read_text()
    found = exercises()
    assert [e.number for e in found] == list(range(8))
    for exercise in found:
        text = exercise.path.read_text()
        assert f"({exercise.path.name})" in index, f"{exercise.path.name} not in the index"
        assert "## Resultado esperado" in text, exercise.path.name
        assert exercise.blocks, f"{exercise.path.name} has no ```bash treino block"
    assert "docs/treinamento/README.md" in (REPO / "README.md").read_text()


def test_training_guide_runs_as_written(
    platform: Settings, unique_name: str, tmp_path: Path
) -> None:
    env = guide_env(platform, unique_name, tmp_path / "home")
    terminal = tmp_path / "terminal"
    terminal.mkdir()
    checks: dict[int, Callable[[Ran, dict[str, str]], None]] = {
        0: check_preparation,
        1: check_status_page,
        2: check_bottleneck,
        3: lambda ran, e: check_dlq(ran, e, platform),
        4: check_campaign,
        5: check_outage,
        6: check_clickhouse,
        7: check_requests,
    }
    for exercise in exercises():
        begin = time.monotonic()
        ran = run_exercise(exercise, env, terminal)
        checks[exercise.number](ran, env)
        assert not ran.leftover, f"{exercise.path.name} left a background process running"
        print(f"{exercise.path.name}: {time.monotonic() - begin:.1f}s")
