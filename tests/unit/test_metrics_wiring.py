"""Metrics observed by the IXC poller (against the loopback IXC simulator) and the log shipper."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY

from filas.catalog import ixc_state
from filas.logs import configure_logging
from filas.settings import Settings
from producers.ixc.client import IxcClient
from producers.ixc.simulator import FaultPlan, IxcSimulator
from producers.ixc.watermark import WatermarkStore
from tests.unit.test_ixc_poller import (  # fixtures and fakes of the poller's own tests
    MemoryDeadLetters,
    MemorySink,
    client,
    poller,
    sim,
    store,
)

__all__ = ["client", "sim", "store"]  # fixtures, used by name


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_ixc_poller_counts_events_dependency_time_and_errors(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    ixc = {"component": "ixc-adapter", "dependency": "ixc"}
    before = {
        "calls": _sample("filas_dependency_seconds_count", **ixc),
        "customers": _sample("filas_events_out_total", component="ixc-adapter", topic="cliente"),
        "errors": _sample("filas_errors_total", component="ixc-adapter", kind="ixc_unavailable"),
        "polls": _sample("filas_processing_seconds_count", component="ixc-adapter", stage="poll"),
    }
    sim.faults = FaultPlan(error_rate=1.0)
    stop = asyncio.Event()
    sink = MemorySink()
    task = asyncio.create_task(
        poller(client, sink, MemoryDeadLetters(), store).run(interval_s=0.05, stop=stop)
    )
    # Clear the faults only once the poller has met one: a fixed sleep raced a busy machine.
    for _ in range(200):
        errors = _sample("filas_errors_total", component="ixc-adapter", kind="ixc_unavailable")
        if errors > before["errors"]:
            break
        await asyncio.sleep(0.05)
    sim.faults = FaultPlan()
    for _ in range(100):
        if len(sink.keys(ixc_state.CUSTOMERS)) >= 37:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=5)

    customers = len(sink.keys(ixc_state.CUSTOMERS))
    assert customers == 37
    events = _sample("filas_events_out_total", component="ixc-adapter", topic="cliente")
    assert events - before["customers"] == customers
    assert _sample("filas_dependency_seconds_count", **ixc) - before["calls"] >= 37 / 4
    errors = _sample("filas_errors_total", component="ixc-adapter", kind="ixc_unavailable")
    assert errors > before["errors"]
    polls = _sample("filas_processing_seconds_count", component="ixc-adapter", stage="poll")
    assert polls > before["polls"]


class _FailingSink:
    def send(self, event: Mapping[str, Any]) -> None:
        raise RuntimeError("kafka is down")

    def close(self, timeout_s: float) -> None:
        return None


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_log_shipper_failures_are_exported() -> None:
    handle = configure_logging(
        Settings(service_name="unit"), "unit", stream=io.StringIO(), ship=_FailingSink()
    )
    stat = {"component": "log-shipper", "stat": "failed_send"}
    try:
        for i in range(3):
            logging.getLogger("filas.test").info("line %d", i)
        deadline = time.monotonic() + 5
        while _sample("filas_service_stat_total", **stat) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        handle.close()
    assert _sample("filas_service_stat_total", **stat) == 3
