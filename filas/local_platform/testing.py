"""Support for test suites that run against the local platform (used by tests/conftest.py).

Kept in the package, not in conftest, so test modules can import these types by name; nothing
here imports pytest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from filas.local_platform.local import LocalPlatform, RunningPlatform
from filas.local_platform.processes import free_port, free_port_block
from filas.settings import ClickHouseSettings, LocalPlatformSettings, Settings


@dataclass(frozen=True)
class PlatformSession:
    """What a test session runs against: client settings, and the LocalPlatform if we started it."""

    settings: Settings
    local: LocalPlatform | None
    running: RunningPlatform | None


@contextmanager
def _hidden_filas_env() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.upper().startswith("FILAS_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def isolated_settings(**sections: Any) -> Settings:
    """``Settings(**sections)`` built with the process's FILAS_* variables hidden: a developer's
    shell pointing at a shared cluster must never leak into a test run."""
    with _hidden_filas_env():
        return Settings(**sections)


def local_settings(
    home: Path, cache_dir: Path, *, brokers: int = 1, **overrides: Any
) -> LocalPlatformSettings:
    """Local platform settings on free ports under ``home`` (``overrides`` win)."""
    kafka_base = free_port_block(2 * brokers)
    values: dict[str, Any] = {
        "home": home,
        "cache_dir": cache_dir,
        # Node i uses kafka_port + 2*i and controller_port + 2*i: interleaved in one block.
        "kafka_port": kafka_base,
        "controller_port": kafka_base + 1,
        "registry_port": free_port(),
        "registry_management_port": free_port(),
        "clickhouse_tcp_port": free_port(),
        "clickhouse_http_port": free_port(),
    }
    values.update(overrides)
    return LocalPlatformSettings(**values)


def clickhouse_from_url(url: str, default_database: str = "filas") -> ClickHouseSettings:
    """``clickhouse://host:port[/database]`` as settings (native protocol port)."""
    parsed = urlparse(url)
    return ClickHouseSettings(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 9000,
        database=parsed.path.strip("/") or default_database,
    )


def child_env(settings: Settings, prefix: str, home: Path) -> dict[str, str]:
    """The environment for a ``filas`` child process: this one's, minus its FILAS_* variables,
    plus those that point the child at ``settings``' Kafka, registry and ClickHouse, the topic
    ``prefix`` and the local ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FILAS_")}
    kafka, ch = settings.kafka, settings.clickhouse
    env |= {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": kafka.security_protocol.value,
        "FILAS_KAFKA__SASL_MECHANISM": kafka.sasl_mechanism,
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_CLICKHOUSE__HOST": ch.host,
        "FILAS_CLICKHOUSE__PORT": str(ch.port),
        "FILAS_CLICKHOUSE__HTTP_PORT": str(ch.http_port),
        "FILAS_CLICKHOUSE__DATABASE": ch.database,
        "FILAS_CLICKHOUSE__USER": ch.user,
        "FILAS_CLICKHOUSE__PASSWORD": ch.password.get_secret_value(),
        "FILAS_CLICKHOUSE__SINK_PASSWORD": ch.sink_password.get_secret_value(),
        "FILAS_TOPICS__PREFIX": prefix,
        "FILAS_LOCAL__HOME": str(home),
    }
    if ch.sink_user is not None:
        env["FILAS_CLICKHOUSE__SINK_USER"] = ch.sink_user
    if kafka.sasl_username is not None and kafka.sasl_password is not None:
        env["FILAS_KAFKA__SASL_USERNAME"] = kafka.sasl_username
        env["FILAS_KAFKA__SASL_PASSWORD"] = kafka.sasl_password.get_secret_value()
    return env
