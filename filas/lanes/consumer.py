"""Consumer side of priority lanes: drain higher lanes first.

One librdkafka consumer per lane (group ``<group>.<lane>``), and a strict-priority scheduler:
``poll`` asks the lanes in priority order with no wait and returns the first lane that has
records; only when every lane is empty does it wait, on the highest lane, in short slices.

Why one consumer per lane and not one consumer paused by lane: librdkafka prefetches up to
``queued.max.messages.kbytes`` per partition into one shared queue, so a transactional record
fetched after 50,000 prefetched bulk records would be returned after them; with a consumer per
lane the bulk prefetch sits in its own queue and never stands in front of a higher lane
(docs/decisions/0075-priority-lanes-one-topic-per-lane.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from filas.catalog import TopicSpec
from filas.errors import ConfigurationError

logger = logging.getLogger(__name__)

ConsumerFactory = Callable[[dict[str, Any]], Any]


class LaneListener(Protocol):
    """Rebalance hooks, called from inside ``LaneConsumer.poll`` (the caller's thread)."""

    def on_assign(self, lane: int, spec: TopicSpec, partitions: list[int]) -> None: ...

    def on_revoke(self, lane: int, spec: TopicSpec, partitions: list[int]) -> None: ...


@dataclass(frozen=True, slots=True)
class LaneBatch:
    """Records of one lane (``lane`` 0 is the highest), in the order the consumer returned."""

    lane: int
    spec: TopicSpec
    messages: list[Message]


def lane_group_id(group_id: str, spec: TopicSpec) -> str:
    return f"{group_id}.{spec.lane}"


class LaneConsumer:
    """Strict-priority consumption of a lane family (``filas.catalog.lanes.lanes``).

    Offsets are never auto-committed: call ``commit`` after the batch's side effects are durable.
    ``max_records`` per lane bounds how much lower-lane work the caller holds while a higher
    lane may fill up (the worst-case wait of a higher-lane record is one lower batch).
    """

    def __init__(
        self,
        client_config: Mapping[str, Any],
        group_id: str,
        specs: Sequence[TopicSpec],
        *,
        listener: LaneListener | None = None,
        consumer_factory: ConsumerFactory = Consumer,
        extra_config: Mapping[str, Any] | None = None,
        idle_slice_s: float = 0.02,
    ) -> None:
        if not specs or any(s.lane is None for s in specs):
            raise ConfigurationError("LaneConsumer needs the specs filas.catalog.lanes.lanes made")
        self.specs = tuple(specs)
        self.listener = listener
        self.idle_slice_s = idle_slice_s
        self._consumers: list[Any] = []
        self._assigned: list[set[int]] = [set() for _ in self.specs]
        for spec in self.specs:
            conf = dict(client_config) | {
                "group.id": lane_group_id(group_id, spec),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
            }
            conf |= dict(extra_config or {})
            self._consumers.append(consumer_factory(conf))

    # -- subscription and rebalance ------------------------------------------------------------

    def subscribe(self) -> None:
        for index, (spec, consumer) in enumerate(zip(self.specs, self._consumers, strict=True)):
            consumer.subscribe(
                [spec.name],
                on_assign=self._assign_callback(index),
                on_revoke=self._revoke_callback(index),
                on_lost=self._revoke_callback(index),
            )

    def _assign_callback(self, index: int) -> Callable[[Any, list[TopicPartition]], None]:
        def on_assign(_consumer: Any, partitions: list[TopicPartition]) -> None:
            numbers = sorted(p.partition for p in partitions)
            self._assigned[index].update(numbers)
            if self.listener is not None and numbers:
                self.listener.on_assign(index, self.specs[index], numbers)

        return on_assign

    def _revoke_callback(self, index: int) -> Callable[[Any, list[TopicPartition]], None]:
        def on_revoke(_consumer: Any, partitions: list[TopicPartition]) -> None:
            numbers = sorted(p.partition for p in partitions)
            # Listener first: it may still commit what it finished on these partitions.
            if self.listener is not None and numbers:
                self.listener.on_revoke(index, self.specs[index], numbers)
            self._assigned[index].difference_update(numbers)

        return on_revoke

    def assignment(self, lane: int) -> frozenset[int]:
        return frozenset(self._assigned[lane])

    # -- consumption ----------------------------------------------------------------------------

    def _take(self, lane: int, limit: int, timeout_s: float) -> list[Message]:
        out = []
        for msg in self._consumers[lane].consume(num_messages=limit, timeout=timeout_s):
            if msg.error():
                logger.warning("lanes: %s: consume error: %s", self.specs[lane].name, msg.error())
                continue
            out.append(msg)
        return out

    def poll(self, max_records: Sequence[int] | int, timeout_s: float) -> LaneBatch | None:
        """The highest lane with records now (up to its ``max_records``), else wait up to
        ``timeout_s`` for any lane; None when nothing came."""
        limits = (
            [max_records] * len(self.specs) if isinstance(max_records, int) else list(max_records)
        )
        deadline = time.monotonic() + timeout_s
        while True:
            for lane in range(len(self.specs)):
                messages = self._take(lane, limits[lane], 0)
                if messages:
                    return LaneBatch(lane, self.specs[lane], messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # Idle: wait on the highest lane; lower lanes are asked again on the next pass.
            messages = self._take(0, limits[0], min(self.idle_slice_s, remaining))
            if messages:
                return LaneBatch(0, self.specs[0], messages)

    def seek(self, lane: int, partition: int, offset: int) -> None:
        """Put records back: the lane's next read of ``partition`` starts at ``offset``."""
        self._consumers[lane].seek(TopicPartition(self.specs[lane].name, partition, offset))

    def pause(self, lane: int, partitions: Sequence[int]) -> None:
        name = self.specs[lane].name
        self._consumers[lane].pause([TopicPartition(name, p) for p in partitions])

    def resume(self, lane: int, partitions: Sequence[int]) -> None:
        name = self.specs[lane].name
        self._consumers[lane].resume([TopicPartition(name, p) for p in partitions])

    def commit(
        self, lane: int, next_offsets: Mapping[int, int], *, asynchronous: bool = False
    ) -> None:
        """Commit ``partition -> next offset to read`` for one lane (synchronously unless told:
        an asynchronous commit lost in a crash only replays records the caller has already
        made idempotent)."""
        if not next_offsets:
            return
        name = self.specs[lane].name
        # Only partitions still assigned: a commit for a revoked one fails the whole request.
        offsets = [
            TopicPartition(name, p, o) for p, o in next_offsets.items() if p in self._assigned[lane]
        ]
        if not offsets:
            return
        try:
            self._consumers[lane].commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            # Partitions lost meanwhile (the group moved on): the next owner replays them.
            logger.warning("lanes: %s: commit failed: %s", name, exc)

    def close(self) -> None:
        for consumer in self._consumers:
            with contextlib.suppress(RuntimeError):
                consumer.close()
        self._consumers = []
