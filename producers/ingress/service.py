"""Composition root of the ingress: Kafka publisher, status view, aiohttp server."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

from aiohttp import web

from consumers.ixc_requests.status_view import StatusTail
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.requests import LANES, REQUEST_STATUS
from filas.collector import fewer_collections
from filas.errors import DeliveryError, FilasError
from filas.lanes import LaneRouter
from filas.metrics import DEPENDENCY_SECONDS, EVENTS_OUT
from filas.settings import Settings
from producers.ingress.app import COMPONENT, Ingress
from producers.sdk import EventProducer

log = logging.getLogger(__name__)

Encoded = tuple[str, str, bytes]  # topic name, key, value bytes

# The ingress's status view fetches in batches (decision 0125): a fetch answers when 1 MiB is
# there or after 20 ms, instead of as soon as one record is (librdkafka's defaults, 1 byte /
# 500 ms). With the defaults every acknowledged QUEUED record woke a fetch of the view's own
# echo: half the broker's CPU per accept. Other instances' and workers' records reach the
# status URL up to 20 ms later; this instance's own are put in its view at the ack.
VIEW_FETCH = {"fetch.wait.max.ms": 20, "fetch.min.bytes": 1 << 20}


class OwnEchoes:
    """The status view's decoder, minus the decoding of this instance's own QUEUED records.

    The view's tail reads back every status record, including the QUEUED ones this ingress has
    just produced and already ``put`` in the view itself. The publisher registers each one by its
    exact value bytes before producing it; when the tail reads those bytes back it gets the same
    record (timestamps are whole milliseconds, as Avro keeps them) without an Avro decode. Other
    instances' and workers' records are decoded as before. Bounded: past ``limit`` unread echoes
    (a stalled tail), new ones are simply decoded."""

    def __init__(self, decode: Callable[[bytes], Mapping[str, Any]], limit: int = 50_000) -> None:
        self._decode = decode
        self._limit = limit
        self._lock = threading.Lock()
        self._pending: dict[bytes, Mapping[str, Any]] = {}

    def expect(self, value: bytes, record: Mapping[str, Any]) -> None:
        with self._lock:
            if len(self._pending) < self._limit:
                self._pending[value] = record

    def forget(self, value: bytes) -> None:
        with self._lock:
            self._pending.pop(value, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def __call__(self, value: bytes) -> Mapping[str, Any]:
        with self._lock:
            record = self._pending.pop(value, None)
        return self._decode(value) if record is None else record


class AckWaiter:
    """Delivery reports -> asyncio futures, served on the event loop itself (decision 0084).

    A request is two records; ``produce`` hands both to librdkafka and awaits ONE future,
    resolved when both are acknowledged (acks=all) or failed with the first failure. While any
    request waits, the loop serves librdkafka's reports every ``interval_s`` with a
    non-blocking ``poll(0)``: the callbacks run on the loop's thread and settle futures
    directly. No helper thread, so no GIL hand-offs and no ``call_soon_threadsafe`` wake-up
    per record (what a per-record ``AsyncEventProducer.emit`` cost); idle, it costs nothing.
    A request produced while others wait first serves the reports already in (decision 0127)."""

    def __init__(self, producer: EventProducer, *, interval_s: float = 0.001) -> None:
        self._producer = producer
        self._interval_s = interval_s
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def _tick(self) -> None:
        self._timer = None
        if self._waiting:
            self._producer.poll(0)
        if self._waiting and self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self._interval_s, self._tick)

    @staticmethod
    def _count(future: asyncio.Future[None], left: list[int], failure: Exception | None) -> None:
        if future.done():
            return
        if failure is not None:
            future.set_exception(failure)
            return
        left[0] -= 1
        if not left[0]:
            future.set_result(None)

    async def produce(self, records: list[tuple[TopicSpec | str, Mapping[str, Any]]]) -> None:
        """Produce every record now; returns when all are acknowledged. Raises DeliveryError /
        ValidationError (nothing produced when encoding fails: every record is encoded first)."""
        await self.produce_encoded(self.encode(records))

    def encode(self, records: list[tuple[TopicSpec | str, Mapping[str, Any]]]) -> list[Encoded]:
        """(topic, key, value bytes) of each record; raises ValidationError."""
        return [self._producer.encode(spec, record) for spec, record in records]

    async def produce_encoded(self, encoded: list[Encoded]) -> None:
        """Hand already-encoded records to librdkafka; returns when all are acknowledged."""
        loop = self._loop = asyncio.get_running_loop()
        self._thread = thread = threading.get_ident()
        future: asyncio.Future[None] = loop.create_future()
        left = [len(encoded)]

        def on_delivery(err: Any, msg: Any) -> None:
            failure = None
            if err is not None:
                failure = DeliveryError(f"{msg.topic()}: {err.str()}", retriable=err.retriable())
            if threading.get_ident() == thread:
                self._count(future, left, failure)
            else:  # served by flush() at shutdown
                loop.call_soon_threadsafe(self._count, future, left, failure)

        if self._waiting:
            # Others wait: serve the reports already in now rather than at the next tick (under
            # load the tick is late: the loop's iterations are longer than interval_s).
            self._producer.poll(0)
        self._waiting += 1
        try:
            produce = self._producer.try_produce
            for name, key, value in encoded:
                if not produce(name, key, value, on_delivery):
                    await self._backpressure(loop, name, key, value, on_delivery)
            if self._timer is None:
                self._timer = loop.call_later(self._interval_s, self._tick)
            await future
        finally:
            self._waiting -= 1

    async def _backpressure(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str,
        key: str,
        value: bytes,
        on_delivery: Callable[[Any, Any], None],
    ) -> None:
        """librdkafka's queue is full: retry in small sleeps without blocking the loop, then
        give up loudly."""
        deadline = loop.time() + self._producer.backpressure_timeout_s
        while True:
            if loop.time() >= deadline:
                raise self._producer.backpressure_error()
            self._producer.poll(0)
            await asyncio.sleep(0.01)
            if self._producer.try_produce(name, key, value, on_delivery):
                return

    async def aclose(self, timeout_s: float = 30.0) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.to_thread(self._producer.flush, timeout_s)


class KafkaPublisher:
    """The QUEUED status and the request on its lane, produced together and awaited until both
    are acknowledged (acks=all): the 202 is a durability promise."""

    def __init__(self, acks: AckWaiter, catalog: Catalog, echoes: OwnEchoes | None = None) -> None:
        self._acks = acks
        self._echoes = echoes
        self._status = catalog.resolve(REQUEST_STATUS)
        self._lanes = LaneRouter(catalog, LANES)
        self._timer = DEPENDENCY_SECONDS.labels(component=COMPONENT, dependency="kafka")
        self._out = {
            spec.name: EVENTS_OUT.labels(component=COMPONENT, topic=spec.name)
            for spec in self._lanes.specs
        }

    async def publish(self, status: Mapping[str, Any], request: Mapping[str, Any]) -> None:
        lane = self._lanes.route(request)
        started = time.perf_counter()
        # Both at once: one round trip. A QUEUED landing after a worker's state is harmless
        # (docs/decisions/0081: views rank it lowest, workers re-assert over it).
        # By name: the specs are this catalog's already (no catalog look-up per record).
        encoded = self._acks.encode([(self._status.name, status), (lane.name, request)])
        echo = encoded[0][2]
        if self._echoes is not None:
            self._echoes.expect(echo, status)
        try:
            await self._acks.produce_encoded(encoded)
        except BaseException:
            if self._echoes is not None:
                self._echoes.forget(echo)
            raise
        finally:
            self._timer.observe(time.perf_counter() - started)
        self._out[lane.name].inc()

    async def publish_status(self, status: Mapping[str, Any]) -> None:
        await self._acks.produce([(self._status, status)])


class IngressService:
    """``await start()`` -> listening; ``port`` is the bound port (settings port 0 = free)."""

    def __init__(self, settings: Settings, *, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        serdes = self._serdes = build_serdes(settings)
        # The ingress's own linger (decision 0130): every accept waits for its acks, so the
        # trade between batching (broker CPU) and accept latency is the ingress's to make.
        ingress_kafka = {"linger_ms": settings.ingress.producer_linger_ms}
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update=ingress_kafka)}
        )
        status_spec = self.catalog.resolve(REQUEST_STATUS)
        self.echoes = OwnEchoes(serdes(status_spec).deserialize)
        self.tail = StatusTail(settings.kafka, status_spec, self.echoes, consumer_config=VIEW_FETCH)
        self.producer = AckWaiter(build_producer(settings, catalog=self.catalog, serdes=serdes))
        publisher = KafkaPublisher(self.producer, self.catalog, self.echoes)
        self.ingress = Ingress(settings.ingress, publisher, self.tail.view)
        self.ingress.ready = lambda: self.tail.ready
        self._runner: web.AppRunner | None = None
        self._collector = ExitStack()
        self.port = 0

    def app(self) -> web.Application:
        return self.ingress.app()

    async def start(self, app: web.Application | None = None) -> None:
        await asyncio.to_thread(self.tail.start)
        timeout = self.settings.ingress.view_ready_timeout_s
        if not await asyncio.to_thread(self.tail.wait_ready, timeout):
            raise FilasError(
                f"requests.status not read within {timeout:.0f}s",
                code="requests_view_not_ready",
                retriable=True,
            )
        # The view is loaded: freeze it and what start built, collect the young less often
        # (decision 0131: the event loop's CPU per accept -15-20%).
        self._collector.enter_context(fewer_collections())
        self._runner = web.AppRunner(app or self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.ingress.host, self.settings.ingress.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("ingress listening on %s:%d", self.settings.ingress.host, self.port)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.ingress.host}:{self.port}"

    async def stop(self) -> None:
        self._collector.close()  # first: whatever below fails, the thresholds come back
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.tail.stop()
        await self.producer.aclose()
        self._serdes.close()
