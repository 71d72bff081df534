"""The CoA worker's metrics on real Kafka with a NAS that answers: one status event -> one
status event in, one timed NAS exchange (dependency=nas), one timed handling."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from filas.catalog.ixc_state import CONTRACT_STATUS
from tests.integration.test_radius_coa import Env, drain, env, status_event, worker

__all__ = ["env"]  # the module-scoped fixture of the CoA tests, used by name

pytestmark = pytest.mark.integration

COMPONENT = "radius-coa"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_coa_worker_times_the_nas_and_counts_status_events(env: Env) -> None:
    nas = {"component": COMPONENT, "dependency": "nas"}
    handled = {"component": COMPONENT, "stage": "status_event"}
    topic = env.catalog.resolve(CONTRACT_STATUS).name
    before = (
        _sample("filas_dependency_seconds_count", **nas),
        _sample("filas_processing_seconds_count", **handled),
        _sample("filas_events_in_total", component=COMPONENT, topic=topic),
    )
    received = len(env.nas.received)
    env.producer.emit_sync(
        CONTRACT_STATUS, status_event("c-7", "BLOCKED", "ACTIVE", "NON_PAYMENT_BLOCK")
    )
    w = worker(env)
    try:
        assert drain(w, 1) == 1
    finally:
        w.close()
    assert len(env.nas.received) == received + 1
    assert _sample("filas_dependency_seconds_count", **nas) == before[0] + 1
    assert _sample("filas_dependency_seconds_sum", **nas) > 0
    assert _sample("filas_processing_seconds_count", **handled) == before[1] + 1
    assert _sample("filas_events_in_total", component=COMPONENT, topic=topic) == before[2] + 1
