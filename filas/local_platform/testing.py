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
