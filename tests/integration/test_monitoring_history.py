"""``filas monitor serve`` end to end: a stopped consumer -> growing lag rows and a finding in
ClickHouse (through the real sink), a dependency finding from a real scraped /metrics endpoint,
lag gauges on the monitor's /metrics, and the status page rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from consumers.clickhouse.app import run_migrations, tables_for
from consumers.clickhouse.client import ClickHouse, quote
from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog
from filas.catalog.monitoring import FINDINGS, LAG_SAMPLES
from filas.local_platform.processes import free_port
from filas.monitoring.scrape import ScrapeError, scrape
from filas.settings import Settings, TopicsSettings
from schemas.registry_client import SchemaRegistry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FIRST, LATER, CONSUMED = 600, 300, 200


@pytest.fixture
def settings(platform: Settings, unique_name: str) -> Iterator[Settings]:
    database = f"monitor_{uuid.uuid4().hex[:10]}"
    ours = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "clickhouse": platform.clickhouse.model_copy(update={"database": database}),
        }
    )
    yield ours
    admin = ClickHouse(ours.clickhouse, database="default")
    admin.query(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()


def _produce(settings: Settings, topic: str, count: int) -> None:
    producer = Producer(settings.kafka.client_config())
    for i in range(count):
        producer.produce(topic, key=f"k{i % 30}", value=b"x" * 16)
    assert producer.flush(15) == 0


def _consume_and_stop(settings: Settings, topic: str, group: str, wanted: int) -> None:
    consumer = Consumer(
        settings.kafka.client_config()
        | {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    offsets: dict[int, int] = {}
    got, deadline = 0, time.monotonic() + 60
    while got < wanted and time.monotonic() < deadline:
        for msg in consumer.consume(min(100, wanted - got), timeout=1):
            assert msg.error() is None
            offsets[msg.partition()] = msg.offset() + 1
            got += 1
    consumer.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
    )
    consumer.close()
    assert got == wanted


class _SlowMailer:
    """A real /metrics endpoint of a process that spends ~90 % of its time waiting on SMTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._proc = Histogram(
            "filas_processing_seconds", "p", ["component", "stage"], registry=self.registry
        )
        self._dep = Histogram(
            "filas_dependency_seconds", "d", ["component", "dependency"], registry=self.registry
        )
        self.port = free_port()
        self._server, self._thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while not self._stop.wait(0.1):
            self._proc.labels("test-mailer", "send").observe(0.1)
            self._dep.labels("test-mailer", "smtp").observe(0.09)

    def close(self) -> None:
        self._stop.set()
        self._worker.join(5)
        self._server.shutdown()
        self._server.server_close()


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("FILAS_")},
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": settings.kafka.security_protocol.value,
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_CLICKHOUSE__HOST": settings.clickhouse.host,
        "FILAS_CLICKHOUSE__PORT": str(settings.clickhouse.port),
        "FILAS_CLICKHOUSE__DATABASE": settings.clickhouse.database,
        "FILAS_TOPICS__PREFIX": settings.topics.prefix,
        **extra,
    }


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "filas.cli.main", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _dump_dom(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_stopped_consumer_lag_history_findings_and_status_page(
    settings: Settings, tmp_path: Path
) -> None:
    prefix = settings.topics.prefix
    topic, group = f"{prefix}work.events", f"{prefix}worker"
    admin = AdminClient(settings.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(15)
    _produce(settings, topic, FIRST)
    _consume_and_stop(settings, topic, group, CONSUMED)

    catalog = Catalog.build(prefix)
    TopicAdmin(settings.kafka).apply(catalog.only(LAG_SAMPLES, FINDINGS))
    # Registered before the monitor and the sink start: two processes setting a new subject's
    # compatibility at the same moment race in the registry (409 "rule already exists").
    SchemaRegistry(settings.registry).register_all(catalog.only(LAG_SAMPLES, FINDINGS))
    names = ["filas.monitoring.lag", "filas.monitoring.findings"]
    run_migrations(settings, names)
    tables = {spec.name.removeprefix(prefix): t.name for spec, t in
              ((t.topic, t) for t in tables_for(settings, names).values())}  # fmt: skip

    mailer = _SlowMailer()
    web_port = free_port()
    monitor = _spawn(
        ["monitor", "serve", "--interval", "1"],
        _env(
            settings,
            FILAS_MONITORING__WEB_PORT=str(web_port),
            FILAS_MONITORING__HISTORY_MINUTES="5",
            FILAS_MONITORING__SCRAPE_URLS=json.dumps([f"http://127.0.0.1:{mailer.port}/metrics"]),
        ),
        tmp_path / "monitor.log",
    )
    sink = _spawn(
        ["sink", "run", "--topics", names[0], "--topics", names[1], "--group",
         f"{prefix}sink", "--batch-rows", "200", "--linger", "0.3"],
        _env(settings),
        tmp_path / "sink.log",
    )  # fmt: skip
    clickhouse = ClickHouse(settings.clickhouse)
    lag_table, findings_table = quote(tables[names[0]]), quote(tables[names[1]])
    try:

        def lag_passes() -> list[tuple[int, int]]:
            for name, process in (("monitor", monitor), ("sink", sink)):
                assert process.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
            return [
                (int(at), int(lag))
                for at, lag in clickhouse.query(
                    f"SELECT toUInt32(envelope_occurred_at) AS at, sum(lag) FROM {lag_table} "  # noqa: S608
                    "FINAL WHERE consumer_group = %(g)s GROUP BY at ORDER BY at",
                    {"g": group},
                )
            ]

        deadline = time.monotonic() + 120
        while not lag_passes() and time.monotonic() < deadline:
            time.sleep(0.5)  # the monitor's first pass has landed: history starts here
        # The consumer stays stopped while production goes on: lag grows pass after pass.
        for _ in range(LATER // 50):
            _produce(settings, topic, 50)
            time.sleep(1.2)
        expected_lag = FIRST + LATER - CONSUMED

        passes: list[tuple[int, int]] = []
        stalled: list[tuple[str, str]] = []
        dependency: list[tuple[str, str | None]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            passes = lag_passes()
            stalled = clickhouse.query(
                f"SELECT consumer_group, topic FROM {findings_table} FINAL "  # noqa: S608
                "WHERE rule = 'group_stalled' AND consumer_group = %(g)s",
                {"g": group},
            )
            dependency = clickhouse.query(
                f"SELECT component, dependency FROM {findings_table} FINAL "  # noqa: S608
                "WHERE rule = 'dependency'"
            )
            if passes and passes[-1][1] == expected_lag and stalled and dependency:
                break
            time.sleep(1)
        lags = [lag for _, lag in passes]
        assert lags, (tmp_path / "monitor.log").read_text()[-3000:]
        assert lags[-1] == expected_lag
        assert lags[0] < lags[-1], f"lag did not grow: {passes}"
        assert lags == sorted(lags), f"lag of a stopped consumer went down: {passes}"
        assert (group, topic) in stalled
        assert ("test-mailer", "smtp") in dependency

        # The monitor's own /metrics (served on the status page's port): the lag gauge.
        samples = scrape(f"http://127.0.0.1:{web_port}/metrics")
        gauge = samples[("filas_consumer_lag", (("group", group), ("topic", topic)))]
        assert gauge == expected_lag

        if CHROMIUM is None:
            pytest.skip("chromium is not installed (scripts/install-system-deps.sh installs it)")
        dom = _dump_dom(f"http://127.0.0.1:{web_port}/", tmp_path / "chromium")
        row = re.search(
            rf'<tr data-group="{re.escape(group)}" data-topic="{re.escape(topic)}" '
            r'data-lag="(\d+)">',
            dom,
        )
        assert row is not None, dom[:3000]
        assert int(row.group(1)) == expected_lag
        assert f'<td class="lag">{expected_lag:,}</td>' in dom
        assert f'data-rule="group_stalled" data-group="{group}"' in dom
        mailer_row = re.search(r'<tr data-component="test-mailer">(.*?)</tr>', dom)
        assert mailer_row is not None, dom[:3000]
        assert re.search(r"smtp (8\d|9\d)%", mailer_row.group(1)), mailer_row.group(1)
        points = re.findall(
            rf'<circle class="point"[^>]*data-group="{re.escape(group)}" data-t="(\d+)" '
            r'data-v="([\d.]+)"',
            dom,
        )
        lag_points = points[: len(points) // 2]  # the lag chart comes first, then throughput
        assert len(lag_points) >= 2, dom[-3000:]
        values = [float(v) for _, v in lag_points]
        assert values[-1] > values[0]
        assert values[-1] <= expected_lag
    finally:
        clickhouse.close()
        _stop(monitor)
        _stop(sink)
        mailer.close()


def test_scrape_of_a_stopped_endpoint_is_a_retriable_error() -> None:
    port = free_port()
    with pytest.raises(ScrapeError) as info:
        scrape(f"http://127.0.0.1:{port}/metrics", timeout_s=2)
    assert info.value.retriable
