"""``AckWaiter`` (decision 0084): one future per request, resolved only when every record is
acknowledged; a failed record fails the request; reports are served by the loop's own polls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, cast

import pytest

from filas.catalog import TopicSpec
from filas.errors import BackpressureTimeoutError, DeliveryError
from producers.ingress.service import AckWaiter
from producers.sdk import EventProducer

SPEC = TopicSpec(name="t", value_schema="x.Y", key_field="id", partitions=1, description="test")


class Err:
    def str(self) -> str:
        return "Broker: not enough replicas"

    def retriable(self) -> bool:
        return True


class Msg:
    def topic(self) -> str:
        return "t"


class FakeProducer:
    """Queues delivery callbacks; ``outcomes`` says which produced record fails."""

    backpressure_timeout_s = 0.05

    def __init__(self, outcomes: list[bool] | None = None, full: bool = False) -> None:
        self.outcomes = outcomes or []
        self.full = full
        self.queued: list[Callable[[Any, Any], None]] = []
        self.produced = 0
        self.polls = 0

    def encode(self, spec: TopicSpec, record: Mapping[str, Any]) -> tuple[str, str, bytes]:
        return spec.name, str(record["id"]), b"v"

    def try_produce(self, name: str, key: str, value: bytes, cb: Callable[..., None]) -> bool:
        if self.full:
            return False
        self.queued.append(cb)
        self.produced += 1
        return True

    def poll(self, _timeout: float = 0) -> int:
        self.polls += 1
        served, self.queued = self.queued, []
        for cb in served:
            ok = self.outcomes.pop(0) if self.outcomes else True
            cb(None if ok else Err(), Msg())
        return len(served)

    def backpressure_error(self) -> BackpressureTimeoutError:
        return BackpressureTimeoutError("queue full")

    def flush(self, _timeout: float = 30) -> None:
        self.poll()


def waiter(fake: FakeProducer) -> AckWaiter:
    return AckWaiter(cast(EventProducer, fake))


async def test_one_request_waits_for_both_acks_served_by_the_loop() -> None:
    fake = FakeProducer()
    acks = waiter(fake)
    request = asyncio.create_task(acks.produce([(SPEC, {"id": 1}), (SPEC, {"id": 1})]))
    await asyncio.sleep(0)
    assert fake.produced == 2
    assert not request.done()  # produced, not yet acknowledged
    await asyncio.wait_for(request, 5)
    assert fake.polls >= 1
    # Idle: no timer keeps polling.
    polls = fake.polls
    await asyncio.sleep(0.01)
    assert fake.polls == polls
    await acks.aclose()


async def test_a_failed_record_fails_the_request() -> None:
    fake = FakeProducer(outcomes=[True, False])
    acks = waiter(fake)
    with pytest.raises(DeliveryError) as failed:
        await asyncio.wait_for(acks.produce([(SPEC, {"id": 1}), (SPEC, {"id": 1})]), 5)
    assert failed.value.retriable
    # The next request is not affected.
    await asyncio.wait_for(acks.produce([(SPEC, {"id": 2})]), 5)


async def test_concurrent_requests_each_resolve() -> None:
    fake = FakeProducer()
    acks = waiter(fake)
    await asyncio.wait_for(
        asyncio.gather(*(acks.produce([(SPEC, {"id": i}), (SPEC, {"id": i})]) for i in range(50))),
        5,
    )
    assert fake.produced == 100


async def test_a_full_queue_gives_up_loudly_without_blocking_the_loop() -> None:
    acks = waiter(FakeProducer(full=True))
    with pytest.raises(BackpressureTimeoutError):
        await asyncio.wait_for(acks.produce([(SPEC, {"id": 1})]), 5)
