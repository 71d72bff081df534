"""Frequency caps re-checked at send (decision 0074), against real Kafka + registry and a real
SMTP server (aiosmtpd): campaigns fanned out by different instances (each unaware of the other's
messages) reach a recipient at most ``cap`` times, also after a worker restart (the ledger)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from consumers.delivery.peers import SmtpSink
from consumers.delivery.worker import DeliveryWorker
from filas.catalog.campaigns import DELIVERY_RESULTS
from tests.integration.test_delivery_guard import (  # noqa: F401 - fixture
    Env,
    address,
    drive,
    env,
    messages,
    publish,
    read_all,
    received_by_address,
    with_sink,
)

pytestmark = pytest.mark.integration


def capped(n: int, campaign: str, first: int, cap: int | None) -> Iterator[dict[str, Any]]:
    for record in messages(n, campaign, first=first):
        yield record | {"frequency_cap_per_day": cap}


def test_cap_holds_across_campaigns_fanned_out_apart_and_a_worker_restart(env: Env) -> None:  # noqa: F811
    a, b, c, d, e = (str(uuid.uuid4()) for _ in range(5))
    n = 10
    publish(env, capped(n, a, first=0, cap=1))
    with SmtpSink() as sink:

        async def run(until: int) -> DeliveryWorker:
            worker = DeliveryWorker(with_sink(env, sink), "email", catalog=env.catalog)
            await worker.start()
            s = worker.stats
            try:
                await drive(worker, lambda: s.sent + s.skipped_frequency_cap >= until)
            finally:
                await worker.close()
            return worker

        first = asyncio.run(run(n))
        # Later, other instances' campaigns: B (cap 1) to the same recipients, C (no cap) to
        # half of them, and D and E (cap 1 each) to new recipients, queued side by side.
        publish(env, capped(n, b, first=0, cap=1))
        publish(env, capped(n // 2, c, first=0, cap=None))
        publish(env, (r for pair in zip(capped(n, d, 20, 1), capped(n, e, 20, 1), strict=True)
                      for r in pair))  # fmt: skip
        # A new worker: what A sent is known from the ledger only.
        second = asyncio.run(run(n + n // 2 + 2 * n))
        got = received_by_address(sink)

    assert first.stats.sent == n
    assert second.stats.sent == n // 2 + n  # C, and one of D/E per recipient
    assert second.stats.skipped_frequency_cap == n + n  # all of B, the other of D/E
    assert {address(i): got[address(i)] for i in range(n)} == {
        address(i): 2 if i < n // 2 else 1 for i in range(n)
    }  # A, plus C where it went (no cap of its own)
    assert all(got[address(20 + i)] == 1 for i in range(n))

    results = read_all(env, DELIVERY_RESULTS, 4 * n + n // 2)
    assert len(results) == 4 * n + n // 2
    by_campaign: dict[str, Counter[str]] = {}
    for r in results:
        by_campaign.setdefault(str(r["campaign_id"]), Counter())[r["status"]] += 1
    assert by_campaign[a] == Counter({"sent": n})
    assert by_campaign[b] == Counter({"skipped_frequency_cap": n})
    assert by_campaign[c] == Counter({"sent": n // 2})
    assert by_campaign[d] + by_campaign[e] == Counter({"sent": n, "skipped_frequency_cap": n})
    skipped = [r for r in results if r["status"] == "skipped_frequency_cap"]
    assert all("frequency cap" in r["provider_response_text"] for r in skipped)
