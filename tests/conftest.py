"""Session fixtures: the real services integration tests run against.

``platform`` starts Kafka (1 broker), Apicurio Registry and ClickHouse once per pytest session
through the same ``LocalPlatform`` code as ``filas up`` (free ports, a temporary home), unless
``KAFKA_BOOTSTRAP_SERVERS`` (optionally ``SCHEMA_REGISTRY_URL``, ``CLICKHOUSE_URL`` as
``clickhouse://host:port[/database]``) name running ones; services not named are still started.
Nothing starts unless a collected test asks for it, so ``tests/unit`` runs with no services.
"""

from __future__ import annotations

import contextlib
import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from filas.local_platform.local import LocalPlatform
from filas.local_platform.testing import (
    PlatformSession,
    clickhouse_from_url,
    isolated_settings,
    local_settings,
)
from filas.settings import ClickHouseSettings, KafkaSettings, RegistrySettings, Settings

REPO = Path(__file__).resolve().parents[1]
# Shared by every session and by 'filas up' run in the repository: Kafka's jars and the
# Apicurio app are downloaded once (about 200 MB), not per temporary home.
CACHE_DIR = REPO / ".filas" / "cache"
START_TIMEOUT_S = 240.0
# One broker holds every test's uniquely prefixed topics for the whole session (thousands of
# partitions by the end): 512 MiB ran out of heap at about 15,000 partitions.
SESSION_KAFKA_HEAP = "1536m"


@pytest.fixture(scope="session")
def platform_cache_dir() -> Path:
    return CACHE_DIR


@pytest.fixture(scope="session")
def platform_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformSession]:
    external_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    external_registry = os.environ.get("SCHEMA_REGISTRY_URL")
    external_clickhouse = os.environ.get("CLICKHOUSE_URL")
    clickhouse = (
        clickhouse_from_url(external_clickhouse)
        if external_clickhouse
        else ClickHouseSettings(database="filas_test")
    )
    base = isolated_settings(
        kafka=KafkaSettings(bootstrap_servers=external_kafka or "127.0.0.1:1"),
        registry=RegistrySettings(url=external_registry)
        if external_registry
        else RegistrySettings(),
        clickhouse=clickhouse,
    )
    if external_kafka and external_registry and external_clickhouse:
        yield PlatformSession(settings=base, local=None, running=None)
        return

    home = tmp_path_factory.mktemp("filas-home")
    local = LocalPlatform(
        local_settings(
            home, CACHE_DIR, start_timeout_s=START_TIMEOUT_S, kafka_heap=SESSION_KAFKA_HEAP
        ),
        clickhouse,
    )
    try:
        running = local.up(
            brokers=1,
            registry=external_registry is None,
            clickhouse=external_clickhouse is None,
            external_bootstrap=external_kafka,
        )
        update: dict[str, object] = {
            "kafka": running.kafka_settings(base.kafka),
            "local": local.local,
        }
        if running.registry_url is not None:
            update["registry"] = base.registry.model_copy(update={"url": running.registry_url})
        if running.clickhouse_port is not None:
            update["clickhouse"] = base.clickhouse.model_copy(
                update={"port": running.clickhouse_port, "http_port": running.clickhouse_http_port}
            )
        settings = base.model_copy(update=update)
        if external_kafka is None:
            _SESSION_TOPICS.append(_TopicJanitor(settings))
        yield PlatformSession(settings=settings, local=local, running=running)
    finally:
        _SESSION_TOPICS.clear()
        local.down()


class _TopicJanitor:
    """Deletes the topics a test module created on the session's own broker. Every test makes
    uniquely prefixed topics, and one broker holding all of them to the end of a session ran out
    of file descriptors (a few per partition) and, earlier, of heap."""

    def __init__(self, settings: Settings) -> None:
        self._admin = AdminClient(dict(settings.kafka.client_config()))
        self.at_start = self.topics()

    def topics(self) -> set[str]:
        names = self._admin.list_topics(timeout=30).topics
        return {n for n in names if not n.startswith(("_", "kafkasql"))}

    def delete_since(self, before: set[str]) -> None:
        # Best effort: a topic a test deleted itself, or a broker a test stopped, is not a failure.
        with contextlib.suppress(KafkaException):
            created = sorted(self.topics() - before)
            if created:
                for future in self._admin.delete_topics(created, operation_timeout=30).values():
                    with contextlib.suppress(KafkaException):
                        future.result()


# The janitor of the broker this session started; none when the tests run against services named
# in the environment (those may be shared with other runs, whose topics are not ours to delete).
_SESSION_TOPICS: list[_TopicJanitor] = []


@pytest.fixture(scope="module", autouse=True)
def _delete_module_topics() -> Iterator[None]:
    before = _SESSION_TOPICS[0].topics() if _SESSION_TOPICS else None
    yield
    if _SESSION_TOPICS:
        janitor = _SESSION_TOPICS[0]
        janitor.delete_since(janitor.at_start if before is None else before)


@pytest.fixture(scope="session")
def platform(platform_session: PlatformSession) -> Settings:
    """Settings pointing at the session's Kafka, registry and ClickHouse."""
    return platform_session.settings


@pytest.fixture
def unique_name() -> str:
    """A fresh ``t<hex>-`` prefix for this test's topics and consumer groups."""
    return f"t{uuid.uuid4().hex[:12]}-"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # Finalize what the tests left for the garbage collector (an unclosed HTTP session's socket)
    # now, while pytest still reports unraisable exceptions: at interpreter exit its hook found
    # tracemalloc half torn down and the run ended with an internal error after every test passed.
    # Unfrozen first: a service left running freezes what was alive (filas/collector.py), which
    # gc.collect() would otherwise skip.
    gc.unfreeze()
    gc.collect()
