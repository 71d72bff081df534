"""Composition of the gateway: replica feeder + buffered publisher + UDP endpoints."""

from __future__ import annotations

import asyncio
import logging

from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog
from filas.errors import FilasError
from filas.settings import Settings
from producers.radius.events import BufferedPublisher
from producers.radius.gateway import RadiusGateway
from streams.radius.replica import ReplicaFeeder, StateReplica
from streams.radius.sessions import SessionTable

logger = logging.getLogger(__name__)


class GatewayService:
    """Start order: replica caught up -> publisher -> UDP. A gateway that answered from a
    half-read replica would reject subscribers it simply had not read yet."""

    def __init__(
        self, settings: Settings, *, catalog: Catalog | None = None, serdes: Serdes | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        serdes = serdes or build_serdes(settings)
        self.replica = StateReplica()
        radius = settings.radius
        self.sessions = (
            SessionTable(radius.session_stale_after_s) if radius.enforce_simultaneous_use else None
        )
        self.feeder = ReplicaFeeder(
            settings.kafka,
            self.catalog,
            serdes,
            self.replica,
            self.sessions,
            sessions_lookback_s=radius.session_stale_after_s,
        )
        self.publisher = BufferedPublisher(
            build_producer(settings, catalog=self.catalog, serdes=serdes),
            max_buffered=settings.radius.event_buffer_max,
        )
        self.gateway = RadiusGateway(
            settings.radius, self.replica, self.publisher, sessions=self.sessions
        )

    async def start(self) -> None:
        self.feeder.start()
        timeout = self.settings.radius.replica_ready_timeout_s
        if not await asyncio.to_thread(self.feeder.wait_ready, timeout):
            self.feeder.stop()
            raise FilasError(
                f"radius replica did not catch up with the state topics within {timeout:.0f}s",
                code="radius_replica_not_ready",
                retriable=True,
            )
        subscribers, nas = self.replica.sizes()
        logger.info("radius replica ready: %d logins, %d NAS", subscribers, nas)
        self.publisher.start()
        await self.gateway.start()

    async def stop(self) -> None:
        self.gateway.close()
        await self.publisher.aclose()
        await asyncio.to_thread(self.feeder.stop)
