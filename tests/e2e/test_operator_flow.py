"""The issue's "done when": topics applied, an event emitted with `filas emit`, read back with
kcat (Debian's package, a real Kafka client we did not write) and decoded with `filas tail`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from filas.settings import Settings

pytestmark = pytest.mark.e2e


def _env(settings: Settings, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILAS_")}
    env |= {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_TOPICS__PREFIX": prefix,
    }
    return env


def filas(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "filas.cli.main", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_apply_emit_then_kcat_and_tail_read_it_back(platform: Settings, unique_name: str) -> None:
    assert shutil.which("kcat"), (
        "kcat (Debian package) is installed by scripts/install-system-deps.sh"
    )
    env = _env(platform, unique_name)
    applied = filas(env, "topics", "apply")
    assert applied.returncode == 0, applied.stderr
    assert f"{unique_name}radius.accounting" in applied.stdout

    now = datetime.now(UTC).isoformat()
    login = f"{unique_name}cliente@fibra"
    record = {
        "login": login,
        "status_type": "start",
        "session_id": "E2E1",
        "nas_ip_address": "10.20.0.1",
        "framed_ip_address": "100.64.9.9",
        "event_at": now,
        "received_at": now,
    }
    emitted = filas(env, "emit", "radius.accounting", "--json", "-", stdin=json.dumps(record))
    assert emitted.returncode == 0, emitted.stderr
    assert "1 records acknowledged" in emitted.stdout

    topic = f"{unique_name}radius.accounting"
    kcat = subprocess.run(
        [
            "kcat",
            "-b",
            platform.kafka.bootstrap_servers,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-J",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    # The Avro body is binary: kcat's JSON carries it as-is, so decode leniently.
    output = kcat.stdout.decode("utf-8", errors="replace")
    [line] = [json.loads(x) for x in output.splitlines() if x.strip()]
    assert line["key"] == login
    payload: str = line["payload"]
    assert payload[0] == "\x00", "Confluent wire format: magic byte 0"
    assert login in payload  # Avro strings are stored as UTF-8 in the body

    tail = filas(env, "tail", "radius.accounting", "--from-beginning", "--max", "1")
    assert tail.returncode == 0, tail.stderr
    decoded = json.loads(tail.stdout.splitlines()[0])
    assert decoded["key"] == login
    assert decoded["value"]["framed_ip_address"] == "100.64.9.9"
    assert decoded["value"]["envelope"]["source_system"] == "filas-cli"


def test_emit_rejects_bad_input_with_a_clear_error_and_sends_nothing(
    platform: Settings, unique_name: str
) -> None:
    env = _env(platform, unique_name)
    assert filas(env, "topics", "apply").returncode == 0
    bad = {
        "login": "x@fibra",
        "status_type": "not-a-status",
        "session_id": "1",
        "nas_ip_address": "10.0.0.1",
        "event_at": 0,
        "received_at": 0,
    }
    result = filas(env, "emit", "radius.accounting", "--json", "-", stdin=json.dumps(bad))
    assert result.returncode == 2
    assert "status_type" in result.stderr
    assert "Traceback" not in result.stderr

    unknown = filas(env, "emit", "radius.nope", "--json", "-", stdin="{}")
    assert unknown.returncode == 2
    assert "unknown topic" in unknown.stderr

    tail = filas(env, "tail", "radius.accounting", "--from-beginning", "--idle-timeout", "2")
    assert tail.stdout == ""


def test_emit_with_no_broker_fails_fast_not_hangs(platform: Settings, unique_name: str) -> None:
    env = _env(platform, unique_name) | {"FILAS_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    now = datetime.now(UTC).isoformat()
    record = {
        "login": "a",
        "status_type": "start",
        "session_id": "1",
        "nas_ip_address": "10.0.0.1",
        "event_at": now,
        "received_at": now,
    }
    started = time.monotonic()
    result = filas(env, "emit", "radius.accounting", "--json", "-", stdin=json.dumps(record))
    assert result.returncode == 2
    assert "broker_unavailable" in result.stderr
    assert time.monotonic() - started < 60
