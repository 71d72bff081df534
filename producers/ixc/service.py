"""Composition root of the IXC adapter: real Kafka sink, dead-letter topics, IXC client,
watermark file, poller. The CLI calls ``run_poller``; tests build the pieces with fakes."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.settings import Settings
from producers.async_sdk import AsyncEventProducer
from producers.ixc.client import IxcClient
from producers.ixc.dead_letters import KafkaDeadLetters
from producers.ixc.poller import IxcPoller, PollReport
from producers.ixc.watermark import WatermarkStore


async def run_poller(settings: Settings, *, once: bool, tz: ZoneInfo) -> PollReport | None:
    """Poll IXC into Kafka: one pass (returns its report) or forever every poll_interval_s."""
    catalog = Catalog.build(settings.topics.prefix)
    async with (
        AsyncEventProducer(build_producer(settings, catalog=catalog)) as sink,
        IxcClient(settings.ixc) as ixc,
    ):
        poller = IxcPoller(
            ixc,
            sink,
            KafkaDeadLetters(sink, catalog),
            WatermarkStore(settings.ixc.watermark_path),
            tz=tz,
        )
        if once:
            return await poller.poll_once()
        await poller.run(settings.ixc.poll_interval_s)
        return None
