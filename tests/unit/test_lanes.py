"""Priority lanes without a broker: lane specs, routing, and the strict-priority scheduler."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import MESSAGE_LANES, MESSAGES
from filas.catalog.lanes import lanes
from filas.errors import ConfigurationError, ValidationError
from filas.lanes import LaneConsumer, LaneRouter

BASE = TopicSpec(
    name="work.items", value_schema="x.Y", key_field="id", partitions=6, description="Work."
)


def test_lanes_make_one_topic_per_lane_in_priority_order() -> None:
    high, mid, low = lanes(BASE, ("high", "normal", "bulk"), partitions={"high": 2})
    assert [s.name for s in (high, mid, low)] == [
        "work.items.high",
        "work.items.normal",
        "work.items.bulk",
    ]
    assert [s.lane for s in (high, mid, low)] == ["high", "normal", "bulk"]
    assert (high.partitions, mid.partitions) == (2, 6)
    assert high.key_field == "id"
    assert high.value_schema == "x.Y"


@pytest.mark.parametrize("names", [(), ("a", "a"), ("a.b",), ("",)])
def test_bad_lane_names_are_refused(names: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError):
        lanes(BASE, names)


def test_campaign_messages_are_declared_as_lanes_in_the_catalog() -> None:
    catalog = Catalog.build("p-")
    names = {s.name for s in catalog}
    assert "p-campaign.messages.transactional" in names
    assert "p-campaign.messages.bulk" in names
    assert "p-" + MESSAGES.name not in names  # the template is not a topic
    assert "p-campaign.messages.bulk.dlq" in names


def test_router_picks_the_lane_topic_from_the_record() -> None:
    router = LaneRouter(Catalog.build("p-"), MESSAGE_LANES)
    assert router.route({"lane": "transactional"}).name == "p-campaign.messages.transactional"
    assert router.route({"lane": "bulk"}).name == "p-campaign.messages.bulk"
    assert router.route({}).name == "p-campaign.messages.bulk"  # default: lowest lane
    assert router.priority("transactional") == 0
    with pytest.raises(ValidationError):
        router.route({"lane": "urgent"})


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class FakeConsumer:
    """A consumer over an in-memory queue; records every consume call."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.queue: deque[FakeMessage] = deque()
        self.calls: list[float] = []
        self.committed: list[Any] = []

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.calls.append(timeout)
        out = []
        while self.queue and len(out) < num_messages:
            out.append(self.queue.popleft())
        return out

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.committed.append(offsets)

    def close(self) -> None:
        pass


def _lanes() -> tuple[LaneConsumer, list[FakeConsumer]]:
    made: list[FakeConsumer] = []

    def factory(conf: dict[str, Any]) -> FakeConsumer:
        made.append(FakeConsumer(conf))
        return made[-1]

    specs = lanes(BASE, ("high", "bulk"))
    consumer = LaneConsumer({"bootstrap.servers": "x"}, "g", specs, consumer_factory=factory)
    consumer.subscribe()
    return consumer, made


def test_one_group_per_lane_and_no_auto_commit() -> None:
    _, (high, bulk) = _lanes()
    assert (high.conf["group.id"], bulk.conf["group.id"]) == ("g.high", "g.bulk")
    assert high.conf["enable.auto.commit"] is False
    assert high.topics == ["work.items.high"]
    assert bulk.topics == ["work.items.bulk"]


def test_higher_lane_is_drained_before_a_lower_backlog() -> None:
    consumer, (high, bulk) = _lanes()
    bulk.queue.extend(FakeMessage("work.items.bulk", 0, i) for i in range(1000))
    first = consumer.poll(100, timeout_s=0)
    assert first is not None
    assert first.lane == 1
    assert len(first.messages) == 100
    high.queue.extend(FakeMessage("work.items.high", 0, i) for i in range(3))
    second = consumer.poll([10, 100], timeout_s=0)
    assert second is not None
    assert second.lane == 0
    assert [m.offset() for m in second.messages] == [0, 1, 2]
    third = consumer.poll(100, timeout_s=0)
    assert third is not None
    assert third.lane == 1
    assert third.messages[0].offset() == 100


def test_idle_poll_waits_on_the_highest_lane_and_returns_none() -> None:
    consumer, (high, bulk) = _lanes()
    assert consumer.poll(10, timeout_s=0.05) is None
    assert any(t > 0 for t in high.calls)
    assert all(t == 0 for t in bulk.calls)


def test_rebalance_callbacks_reach_the_listener_and_bound_commits() -> None:
    events: list[tuple[str, int, list[int]]] = []

    class Listener:
        def on_assign(self, lane: int, spec: TopicSpec, partitions: list[int]) -> None:
            events.append(("assign", lane, partitions))

        def on_revoke(self, lane: int, spec: TopicSpec, partitions: list[int]) -> None:
            events.append(("revoke", lane, partitions))

    consumer, (_high, bulk) = _lanes()
    consumer.listener = Listener()

    class TP:
        def __init__(self, p: int) -> None:
            self.partition = p

    bulk.callbacks["on_assign"](bulk, [TP(0), TP(3)])
    bulk.callbacks["on_revoke"](bulk, [TP(0)])
    assert events == [("assign", 1, [0, 3]), ("revoke", 1, [0])]
    assert consumer.assignment(1) == frozenset({3})
    consumer.commit(1, {0: 10, 3: 7})
    (offsets,) = bulk.committed
    assert [(o.partition, o.offset) for o in offsets] == [(3, 7)]
