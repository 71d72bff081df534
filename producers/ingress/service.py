"""Composition root of the ingress: Kafka publisher, status view, aiohttp server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from consumers.ixc_requests.status_view import StatusTail
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog
from filas.catalog.requests import LANES, REQUEST_STATUS
from filas.errors import FilasError
from filas.lanes import LaneRouter
from filas.metrics import DEPENDENCY_SECONDS, EVENTS_OUT
from filas.settings import Settings
from producers.async_sdk import AsyncEventProducer
from producers.ingress.app import COMPONENT, Ingress

log = logging.getLogger(__name__)


class KafkaPublisher:
    """The QUEUED status and the request on its lane, both awaited until acks=all."""

    def __init__(self, producer: AsyncEventProducer, catalog: Catalog) -> None:
        self._producer = producer
        self._status = catalog.resolve(REQUEST_STATUS)
        self._lanes = LaneRouter(catalog, LANES)

    async def publish(self, status: Mapping[str, Any], request: Mapping[str, Any]) -> None:
        lane = self._lanes.route(request)
        with_timer = DEPENDENCY_SECONDS.labels(component=COMPONENT, dependency="kafka")
        with with_timer.time():
            # Both at once: one round trip. A QUEUED landing after a worker's state is harmless
            # (docs/decisions/0081: views rank it lowest, workers re-assert over it).
            await asyncio.gather(
                self._producer.emit(self._status, status), self._producer.emit(lane, request)
            )
        EVENTS_OUT.labels(component=COMPONENT, topic=lane.name).inc()

    async def publish_status(self, status: Mapping[str, Any]) -> None:
        await self._producer.emit(self._status, status)


class IngressService:
    """``await start()`` -> listening; ``port`` is the bound port (settings port 0 = free)."""

    def __init__(self, settings: Settings, *, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        serdes = self._serdes = build_serdes(settings)
        # Accept latency is two acks: the ingress's producer lingers less than the default.
        fast = settings.kafka.model_copy(update={"linger_ms": settings.ingress.producer_linger_ms})
        settings = settings.model_copy(update={"kafka": fast})
        status_spec = self.catalog.resolve(REQUEST_STATUS)
        self.tail = StatusTail(settings.kafka, status_spec, serdes(status_spec).deserialize)
        self.producer = AsyncEventProducer(
            build_producer(settings, catalog=self.catalog, serdes=serdes)
        )
        self.ingress = Ingress(
            settings.ingress, KafkaPublisher(self.producer, self.catalog), self.tail.view
        )
        self.ingress.ready = lambda: self.tail.ready
        self._runner: web.AppRunner | None = None
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
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.tail.stop()
        await self.producer.aclose()
        self._serdes.close()
