"""``filas campaigns create`` and ``filas campaigns fanout`` as processes: the campaign is
fanned out, /metrics counts it, SIGTERM stops the service cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from filas.local_platform.processes import free_port
from filas.monitoring.scrape import Samples, ScrapeError, scrape
from streams.campaigns.runner import message_topics
from tests.integration.test_campaign_fanout_kafka import (  # noqa: F401 - fixtures
    Env,
    Reader,
    env,
    reader,
    seed,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMPONENT = "campaign-fanout"


def _value(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_cli_fanout_serves_metrics_and_stops_on_sigterm(
    env: Env,  # noqa: F811
    reader: Reader,  # noqa: F811
    tmp_path: Path,
) -> None:
    ids = seed(env, 60)
    s = env.settings
    port = free_port()
    proc_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FILAS_")},
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": s.kafka.security_protocol.value,
        "FILAS_REGISTRY__URL": s.registry.url,
        "FILAS_TOPICS__PREFIX": s.topics.prefix,
        "FILAS_METRICS__PORT": str(port),
        "FILAS_CAMPAIGNS__BATCH_SIZE": "20",
    }
    definition = tmp_path / "aviso.yaml"
    definition.write_text(
        "name: Aviso\nchannels: [sms]\npurpose: service\nlane: transactional\n"
        "body: 'Olá {{ first_name }}, manutenção programada hoje.'\nsend_window: '00:00-24:00'\n"
    )
    created = subprocess.run(
        [sys.executable, "-m", "filas.cli.main", "campaigns", "create", str(definition)],
        cwd=REPO, env=proc_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    cid = created.stdout.strip().splitlines()[-1]
    log = tmp_path / "fanout.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "filas.cli.main", "campaigns", "fanout", "--stats-every", "1"],
            cwd=REPO, env=proc_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        lane = message_topics(env.catalog)["transactional"].name
        deadline = time.monotonic() + 60
        samples: Samples = {}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            assert proc.poll() is None, log.read_text()
            reader.poll()
            try:
                samples = scrape(f"http://127.0.0.1:{port}/metrics")
            except ScrapeError:
                continue
            if reader.status(cid) == "done" and _value(
                samples, "filas_events_out_total", component=COMPONENT, topic=lane
            ) >= len(ids):
                break
        assert reader.status(cid) == "done", log.read_text()
        assert sorted(m["recipient_id"] for m in reader.of(cid)) == ids
        assert _value(samples, "filas_events_out_total", component=COMPONENT, topic=lane) == 60
        assert _value(samples, "filas_batch_size_sum", component=COMPONENT) == 60
        assert _value(samples, "filas_processing_seconds_count", component=COMPONENT) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
