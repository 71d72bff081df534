"""Kafka stops mid-test: the gateway keeps answering from its replica, and every event it
buffered meanwhile reaches Kafka once the broker is back (none lost).

Starts its own single-broker cluster (stopping the session's broker would break other tests);
no registry, so serdes use confluent's in-process mock (same wire format), shared by the seeding
producer and the gateway.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from pydantic import SecretStr

from filas.admin.topics import TopicAdmin
from filas.bootstrap import Serdes
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.local_platform.kafka import KafkaCluster
from filas.local_platform.maven import KafkaVersions, fetch_kafka
from filas.local_platform.testing import isolated_settings, local_settings
from filas.settings import KafkaSettings, RadiusSettings, RegistrySettings
from producers.envelope import envelope
from producers.radius.service import GatewayService
from producers.sdk import EventProducer
from schemas.catalog import SchemaCatalog
from schemas.registry_client import SchemaRegistry

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="radclient not installed"),
]

SECRET = "outage-secret"
SESSIONS = 120


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, platform_cache_dir: Path) -> Iterator[Any]:
    local = local_settings(tmp_path_factory.mktemp("radius-kafka"), platform_cache_dir)
    libs = fetch_kafka(
        platform_cache_dir,
        KafkaVersions(local.kafka_version, local.log4j_version, local.slf4j_version),
    )
    cluster = KafkaCluster.from_settings(local, libs, brokers=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop(grace_s=20)


def radclient_file(server: str, command: str, packets: list[str]) -> tuple[int, float]:
    """Send every packet (8 in parallel); (replies received, seconds taken)."""
    started = time.monotonic()
    done = subprocess.run(
        ["radclient", "-x", "-p", "8", "-r", "1", "-t", "2", server, command, SECRET],
        input="\n".join(packets),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return len(re.findall(r"^Received ", done.stdout, re.M)), time.monotonic() - started


def test_kafka_down_auth_still_answered_and_events_delivered_after_restart(
    broker: KafkaCluster, unique_name: str
) -> None:
    catalog = Catalog.build(unique_name)
    specs = [
        catalog.resolve(s)
        for s in (SUBSCRIBERS, CONTRACTS, NAS, ACCOUNTING, AUTH_REQUESTS, AUTH_DECISIONS)
    ]
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, delivery_timeout_ms=8000)
    TopicAdmin(kafka).apply(catalog.only(*specs))
    serdes = Serdes(SchemaCatalog.load(), SchemaRegistry(RegistrySettings(url="mock://radius")))
    settings = isolated_settings(
        kafka=kafka,
        radius=RadiusSettings(
            bind_host="127.0.0.1",
            auth_port=0,
            acct_port=0,
            nas_secrets={"ref": SecretStr(SECRET)},
            gateway_instance="outage-gw",
        ),
    )
    with EventProducer(kafka, catalog, serdes) as seed:
        seed.emit(
            NAS,
            {
                "envelope": envelope("test"),
                "nas_id": "1",
                "name": "bras",
                "ip": "127.0.0.1",
                "vendor": "MIKROTIK",
                "secret_ref": "ref",
            },
        )
        seed.emit(
            SUBSCRIBERS,
            {
                "envelope": envelope("test"),
                "login": "ana@fibra",
                "login_id": "1",
                "login_type": "PPPOE",
                "contract_id": "c1",
                "customer_id": "1",
                "status": "ACTIVE",
                "password": "senha-ana",
            },
        )

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    service = GatewayService(settings, catalog=catalog, serdes=serdes)
    asyncio.run_coroutine_threadsafe(service.start(), loop).result(timeout=60)
    auth = f"127.0.0.1:{service.gateway.auth_port}"
    acct = f"127.0.0.1:{service.gateway.acct_port}"
    access = 'User-Name = "ana@fibra"\nUser-Password = "senha-ana"\nMessage-Authenticator = 0x00\n'
    try:
        broker.stop_node(0, grace_s=20)
        sessions = [f"out-{uuid.uuid4().hex[:6]}-{i}" for i in range(SESSIONS)]
        accounting = [
            f'User-Name = "ana@fibra"\nAcct-Status-Type = Start\nAcct-Session-Id = "{s}"\n'
            for s in sessions
        ]
        acct_replies, acct_took = radclient_file(acct, "acct", accounting)
        auth_replies, auth_took = radclient_file(auth, "auth", [access] * 40)
        assert acct_replies == SESSIONS
        assert auth_replies == 40
        # Answered from memory: far inside a NAS's 3 s timeout, with the broker gone.
        assert acct_took < 10
        assert auth_took < 10
        assert service.gateway.stats.accepts == 40
        assert service.publisher.buffered + service.publisher.in_flight > 0

        time.sleep(10)  # past delivery.timeout.ms: failed deliveries go back to the buffer
        broker.start_node(0)
        assert service.publisher.drain(120), "events not delivered after Kafka came back"
        assert service.publisher.stats.dropped == 0
        # The outage outlasted delivery.timeout.ms: the events went back to the buffer.
        assert service.publisher.stats.redelivery_attempts > 0
    finally:
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    spec = catalog.resolve(ACCOUNTING)
    serde = serdes(spec)
    consumer = Consumer(
        kafka.client_config() | {"group.id": f"{unique_name}read", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([spec.name])
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not set(sessions) <= seen:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            seen.add(serde.deserialize(msg.value())["session_id"])
    consumer.close()
    missing = set(sessions) - seen
    assert not missing, f"{len(missing)} accounting events lost, e.g. {sorted(missing)[:5]}"
