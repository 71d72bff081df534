"""``filas requests work``: the Kafka side of the IXC service workers.

Start: status view caught up (the ledger) -> one consumer per lane (group
``<prefix><worker_group_id>.<lane>``, offsets committed by hand). Loop: while fewer than
``worker_concurrency`` requests are in flight, take from the highest lane that has records
(a bulk record is taken only when the high lane has nothing waiting); each record is a task;
a partition's offset is committed only up to its oldest unfinished record, so a crash replays
unfinished requests (the ledger and IXC's per-request-id idempotency make that harmless).
IXC calls are paced to ``ixc_rate_per_s`` x (lane partitions held / lane partitions), recomputed
at every rebalance, so the whole group stays under the global cap whatever its size.
A record whose status or dead letter cannot be written (Kafka down) stays uncommitted: its
partition's commit point stops there until the worker restarts and replays from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from consumers.ixc_requests.calls import IxcWriter
from consumers.ixc_requests.notices import (
    NoticeState,
    PaymentNotifier,
    count_out,
    transactional_lane,
)
from consumers.ixc_requests.processor import COMPONENT, RequestProcessor, rate_share
from consumers.ixc_requests.status_view import StatusTail
from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.requests import LANES, REQUEST_STATUS
from filas.errors import FilasError
from filas.metrics import DEAD_LETTERS, EVENTS_IN, EVENTS_OUT, PROCESSING_SECONDS, QUEUE_DEPTH
from filas.settings import Settings
from producers.async_sdk import AsyncEventProducer
from schemas.dead_letter import SourceRecord, dead_letter

log = logging.getLogger(__name__)


class OffsetTracker:
    """Commit point per partition = one past the longest done prefix of received offsets."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], deque[list[Any]]] = {}

    def add(self, topic: str, partition: int, offset: int) -> None:
        self._parts.setdefault((topic, partition), deque()).append([offset, False])

    def done(self, topic: str, partition: int, offset: int) -> int | None:
        """Mark done; returns the offset to commit when the done prefix grew, else None."""
        queue = self._parts.get((topic, partition))
        if queue is None:
            return None
        for entry in queue:
            if entry[0] == offset:
                entry[1] = True
                break
        commit = None
        while queue and queue[0][1]:
            commit = queue.popleft()[0] + 1
        return commit

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Revoked partitions: their unfinished offsets are the next owner's to replay."""
        for tp in partitions:
            self._parts.pop((tp.topic, tp.partition), None)

    def pending(self) -> int:
        return sum(len(q) for q in self._parts.values())


class RequestWorker:
    def __init__(self, settings: Settings, *, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        self._serdes: Serdes = build_serdes(settings)
        self._status_spec = self.catalog.resolve(REQUEST_STATUS)
        self._lanes: list[TopicSpec] = [self.catalog.resolve(s) for s in LANES]
        status_serde = self._serdes(self._status_spec)
        self.tail = StatusTail(settings.kafka, self._status_spec, status_serde.deserialize)
        self._producer: AsyncEventProducer | None = None
        self._ixc = IxcWriter(settings.ixc)
        self._notice_lane = transactional_lane(self.catalog)
        self.notice_state: NoticeState | None = None
        self.notifier: PaymentNotifier | None = None
        if settings.ingress.payment_notice_channels:
            self.notice_state = NoticeState(settings.kafka, self.catalog, self._serdes)
            self.notifier = PaymentNotifier(
                settings.ingress,
                self.notice_state.state,
                self._emit_notice,
                timezone=settings.ixc.timezone,
            )
        self.processor = RequestProcessor(
            settings.ingress,
            self._ixc,
            self.tail.view,
            self._emit_status,
            notify=self.notifier.notify if self.notifier is not None else None,
        )
        self._consumers: list[tuple[TopicSpec, Any]] = []
        self._tracker = OffsetTracker()
        self._assigned: dict[str, set[int]] = {}
        self._total_partitions = 0
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    def _reassert(self, record: dict[str, Any]) -> None:
        task = asyncio.create_task(self.processor.reassert(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _emit_status(self, status: Mapping[str, Any]) -> None:
        assert self._producer is not None
        await self._producer.emit(self._status_spec, status)
        EVENTS_OUT.labels(component=COMPONENT, topic=self._status_spec.name).inc()

    async def _emit_notice(self, record: Mapping[str, Any]) -> None:
        assert self._producer is not None
        await self._producer.emit(self._notice_lane, record)
        count_out(self._notice_lane)

    async def start(self) -> None:
        ingress = self.settings.ingress
        self._producer = AsyncEventProducer(
            build_producer(self.settings, catalog=self.catalog, serdes=self._serdes)
        )
        await asyncio.to_thread(self.tail.start)
        if self.notice_state is not None:
            await asyncio.to_thread(self.notice_state.start)
        ready = await asyncio.to_thread(self.tail.wait_ready, ingress.view_ready_timeout_s)
        if ready and self.notice_state is not None:
            ready = await asyncio.to_thread(
                self.notice_state.wait_ready, ingress.view_ready_timeout_s
            )
        if not ready:
            raise FilasError(
                f"requests.status / customers / contracts not read within "
                f"{ingress.view_ready_timeout_s:.0f}s",
                code="requests_view_not_ready",
                retriable=True,
            )
        log.info("ixc requests: ledger holds %d requests", len(self.tail.view))
        loop = asyncio.get_running_loop()

        def reassert(record: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self._reassert, record)

        self.tail.view.on_stale = reassert
        for spec in self._lanes:
            conf = dict(self.settings.kafka.client_config()) | {
                "group.id": f"{self.settings.topics.prefix}{ingress.worker_group_id}.{spec.lane}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # Requests queued before the first worker ever started must still run.
                "auto.offset.reset": "earliest",
                "session.timeout.ms": int(ingress.worker_session_timeout_s * 1000),
                "heartbeat.interval.ms": 1000,
            }
            consumer = Consumer(conf)
            metadata = consumer.list_topics(spec.name, timeout=10).topics.get(spec.name)
            self._total_partitions += len(metadata.partitions) if metadata is not None else 0
            consumer.subscribe(
                [spec.name],
                on_assign=self._on_assign(str(spec.lane)),
                on_revoke=self._on_revoke(str(spec.lane)),
            )
            self._consumers.append((spec, consumer))

    def _on_assign(self, lane: str) -> Callable[[Any, list[TopicPartition]], None]:
        def on_assign(_consumer: Any, partitions: list[TopicPartition]) -> None:
            self._tracker.forget(partitions)
            self._assigned[lane] = {tp.partition for tp in partitions}
            self._reshare()

        return on_assign

    def _on_revoke(self, lane: str) -> Callable[[Any, list[TopicPartition]], None]:
        def on_revoke(_consumer: Any, partitions: list[TopicPartition]) -> None:
            self._tracker.forget(partitions)
            self._assigned[lane] = set()
            self._reshare()

        return on_revoke

    def _reshare(self) -> None:
        """The global IXC rate cap, split by the share of lane partitions this worker holds."""
        assigned = sum(len(p) for p in self._assigned.values())
        rate = rate_share(self.settings.ingress.ixc_rate_per_s, assigned, self._total_partitions)
        self.processor.rate.set_rate(rate)
        log.info(
            "ixc requests: %d/%d lane partitions: %.1f IXC calls/s",
            assigned,
            self._total_partitions,
            rate,
        )

    async def run(self) -> None:
        limit = self.settings.ingress.worker_concurrency
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                QUEUE_DEPTH.labels(component=COMPONENT, queue="inflight").set(len(inflight))
                free = limit - len(inflight)
                if free <= 0:
                    await asyncio.wait(inflight, timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
                    continue
                taken = self._take(free)
                if not taken:
                    await asyncio.sleep(0.01)
                    continue
                for spec, consumer, msg in taken:
                    self._tracker.add(msg.topic(), msg.partition(), msg.offset())
                    task = asyncio.create_task(self._handle(spec, consumer, msg))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
        finally:
            if inflight:
                await asyncio.wait(inflight, timeout=30)

    def _take(self, free: int) -> list[tuple[TopicSpec, Any, Message]]:
        """Up to ``free`` records from the highest lane that has any (never blocks)."""
        for spec, consumer in self._consumers:
            batch = [m for m in consumer.consume(num_messages=free, timeout=0) if not self._bad(m)]
            if batch:
                return [(spec, consumer, m) for m in batch]
        return []

    @staticmethod
    def _bad(msg: Message) -> bool:
        if msg.error():
            log.warning("ixc requests: consume error: %s", msg.error())
            return True
        return False

    async def _handle(self, spec: TopicSpec, consumer: Any, msg: Message) -> None:
        started = time.perf_counter()
        EVENTS_IN.labels(component=COMPONENT, topic=spec.name).inc()
        raw = msg.value()
        source = SourceRecord(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp_ms=msg.timestamp()[1] if msg.timestamp()[1] > 0 else None,
            key=msg.key(),
            value=raw,
        )

        async def to_dlq(error: FilasError) -> None:
            assert self._producer is not None
            record = dead_letter(source, error, COMPONENT)
            await self._producer.emit(self.catalog.dead_letter_for(spec), record)
            DEAD_LETTERS.labels(component=COMPONENT, topic=spec.name).inc()

        try:
            if raw is None:
                pass
            else:
                try:
                    request = self._serdes(spec).deserialize(raw)
                except FilasError as exc:
                    log.error("ixc requests: unreadable record on %s: %s", spec.name, exc.code)
                    await to_dlq(exc)
                else:
                    await self.processor.process(request, to_dlq)
        except FilasError as exc:
            # Kafka unavailable for the status/DLQ write: leave the offset uncommitted; the
            # record is replayed after a restart (the ledger keeps it at most once).
            log.error(
                "ixc requests: %s at offset %d not finished: %s", spec.name, msg.offset(), exc
            )
            return
        finally:
            PROCESSING_SECONDS.labels(component=COMPONENT, stage="request").observe(
                time.perf_counter() - started
            )
        commit = self._tracker.done(msg.topic(), msg.partition(), msg.offset())
        if commit is not None:
            with contextlib.suppress(Exception):
                consumer.commit(
                    offsets=[TopicPartition(msg.topic(), msg.partition(), commit)],
                    asynchronous=True,
                )

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        self._stop.set()
        for _spec, consumer in self._consumers:
            with contextlib.suppress(RuntimeError):
                consumer.close()
        self._consumers = []
        self.tail.stop()
        if self.notice_state is not None:
            self.notice_state.stop()
        await self._ixc.aclose()
        if self._producer is not None:
            await self._producer.aclose()
            self._producer = None
        self._serdes.close()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    worker = RequestWorker(settings)
    await worker.start()
    try:
        if stop is not None:
            waiter = asyncio.create_task(stop.wait())
            waiter.add_done_callback(lambda _: worker.stop())
        await worker.run()
    finally:
        await worker.close()
