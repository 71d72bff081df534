"""The services a benchmark measures against: the running platform, or a private one.

With ``FILAS_KAFKA__BOOTSTRAP_SERVERS`` set (e.g. after sourcing ``.filas/platform.env``), the
benchmark uses those services. Otherwise it starts Kafka and the registry under a fresh
``.filas/bench-<pid>`` on free ports and stops and deletes them afterwards, so it never disturbs
``make up`` nor another benchmark running at the same time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filas.local_platform.local import LocalPlatform
from filas.local_platform.processes import free_port, free_port_block
from filas.settings import LocalPlatformSettings, RegistrySettings, Settings


def report(name: str, value: float, unit: str, ratio: float, peer: str) -> None:
    """The one line format every benchmark ends with, so runs can be compared."""
    print(f"{name}: {value:.6g} {unit} (ratio {ratio:.2f} vs {peer})", flush=True)


@contextmanager
def services(*, registry: bool = True, clickhouse: bool = False) -> Iterator[Settings]:
    if os.environ.get("FILAS_KAFKA__BOOTSTRAP_SERVERS"):
        yield Settings()
        return
    base = Settings()
    kafka_port = free_port_block(2)
    local = LocalPlatformSettings(
        home=Path(f".filas/bench-{os.getpid()}"),
        cache_dir=base.local.cache_dir or base.local.home / "cache",
        kafka_port=kafka_port,
        controller_port=kafka_port + 1,
        registry_port=free_port(),
        registry_management_port=free_port(),
        clickhouse_tcp_port=free_port(),
        clickhouse_http_port=free_port(),
    )
    platform = LocalPlatform(local)
    running = platform.up(registry=registry, clickhouse=clickhouse, echo=print)
    try:
        yield Settings(
            local=local,
            kafka=running.kafka_settings(base.kafka),
            registry=RegistrySettings(url=running.registry_url or base.registry.url),
        )
    finally:
        platform.down()
        shutil.rmtree(local.home, ignore_errors=True)
