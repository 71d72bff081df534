"""Reconnect-storm admission: per-NAS fairness, bounds and queue age, with a fake clock."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from filas.settings import RadiusSettings
from producers.radius.admission import FairQueue
from producers.radius.events import ListSink
from producers.radius.gateway import RadiusGateway, _Listener
from streams.radius.replica import StateReplica


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def queue(clock: FakeClock, **bounds: float) -> FairQueue[tuple[str, int]]:
    return FairQueue(
        max_queued=int(bounds.get("max_queued", 100_000)),
        max_queued_per_nas=int(bounds.get("max_queued_per_nas", 100_000)),
        max_age_s=bounds.get("max_age_s", 3.0),
        clock=clock,
    )


def test_a_storm_from_one_nas_does_not_delay_another_beyond_a_slot() -> None:
    clock = FakeClock()
    fair = queue(clock)
    for i in range(10_000):
        assert fair.offer("A", ("A", i))
    assert fair.offer("B", ("B", 0))
    slot = 0.0002  # 200 us per answered request
    served: list[tuple[str, int]] = []
    answered_at: dict[tuple[str, int], float] = {}
    while (item := fair.pop()) is not None:
        clock.now += slot
        served.append(item)
        answered_at[item] = clock.now
    assert len(served) == 10_001
    assert served.index(("B", 0)) <= 1  # behind at most the one A request already in turn
    assert answered_at[("B", 0)] <= 2 * slot
    # A is still served in its own order.
    assert [i for nas, i in served if nas == "A"] == list(range(10_000))


def test_round_robin_across_many_backlogged_nas() -> None:
    clock = FakeClock()
    fair = queue(clock)
    for nas in ("A", "B", "C"):
        for i in range(3):
            fair.offer(nas, (nas, i))
    fair.offer("D", ("D", 0))
    order = list(iter(fair.pop, None))
    assert order[:4] == [("A", 0), ("B", 0), ("C", 0), ("D", 0)]
    assert order[4:] == [("A", 1), ("B", 1), ("C", 1), ("A", 2), ("B", 2), ("C", 2)]


def test_per_nas_bound_leaves_room_for_other_nas() -> None:
    clock = FakeClock()
    fair = queue(clock, max_queued=10, max_queued_per_nas=4)
    admitted = [fair.offer("A", ("A", i)) for i in range(6)]
    assert admitted == [True] * 4 + [False] * 2
    assert fair.stats.dropped_nas_full == 2
    assert all(fair.offer("B", ("B", i)) for i in range(4))
    assert fair.offer("C", ("C", 0))
    assert fair.offer("C", ("C", 1))
    assert not fair.offer("D", ("D", 0))  # the global in-flight bound
    assert fair.stats.dropped_queue_full == 1
    assert len(fair) == 10
    assert fair.stats.max_depth == 10


def test_requests_older_than_the_nas_timeout_are_dropped_not_answered_late() -> None:
    clock = FakeClock()
    fair = queue(clock, max_age_s=2.0)
    fair.offer("A", ("A", 0))
    fair.offer("A", ("A", 1))
    clock.now = 1.0
    fair.offer("B", ("B", 0))
    clock.now = 2.5
    assert fair.pop() == ("B", 0)
    assert fair.pop() is None
    assert fair.stats.dropped_expired == 2
    assert fair.stats.served == 1
    assert len(fair) == 0


def test_a_retransmission_of_a_queued_request_is_not_queued_twice() -> None:
    clock = FakeClock()
    fair = queue(clock)
    key = ("10.0.0.1", 4000, 7, b"x" * 16)
    assert fair.offer("A", ("A", 0), dedupe=key)
    assert not fair.offer("A", ("A", 0), dedupe=key)
    assert fair.stats.dropped_queued_duplicate == 1
    assert fair.pop() == ("A", 0)
    assert fair.offer("A", ("A", 0), dedupe=key)  # once answered, the cache takes over


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FairQueue(max_queued=0, max_queued_per_nas=1, max_age_s=1.0, clock=FakeClock())


def test_listener_reads_a_storm_in_before_answering_it() -> None:
    """Through a real socket: 3,000 datagrams from 127.0.0.2, then one from 127.0.0.3. The
    reader classifies the kernel backlog faster than the handler answers, so the quiet NAS is
    answered after a small fraction of the flood, not after all of it."""

    async def run() -> tuple[list[str], dict[str, int], int]:
        settings = RadiusSettings(
            bind_host="127.0.0.1", auth_port=0, acct_port=0, admission_max_queued_per_nas=5000
        )
        gateway = RadiusGateway(settings, StateReplica(), ListSink())
        order: list[str] = []

        def handler(data: bytes, addr: tuple[str, int]) -> bytes | None:
            order.append(addr[0])
            return None

        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        port = server.getsockname()[1]
        loop = asyncio.get_running_loop()
        listener = _Listener(server, handler, gateway, loop)
        storm = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        storm.bind(("127.0.0.2", 0))
        quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        quiet.bind(("127.0.0.3", 0))
        try:
            for _ in range(3000):
                storm.sendto(b"\x01" + os.urandom(3) + os.urandom(16), ("127.0.0.1", port))
            quiet.sendto(b"\x01" + os.urandom(3) + os.urandom(16), ("127.0.0.1", port))
            loop.add_reader(server.fileno(), listener.readable)
            for _ in range(2000):
                await asyncio.sleep(0)
                if len(order) >= 3001:
                    break
            return order, listener.queue.stats.as_dict(), len(listener.queue)
        finally:
            listener.close()
            storm.close()
            quiet.close()

    order, stats, left = asyncio.run(run())
    assert "127.0.0.3" in order
    received = order.count("127.0.0.2") + 1
    assert order.index("127.0.0.3") < received // 3
    assert left == 0
    assert stats["served"] == len(order)
