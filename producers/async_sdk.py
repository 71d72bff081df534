"""asyncio face of the producer SDK: ``await emit(...)`` resolves when the broker acknowledges."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from filas.catalog import TopicSpec
from filas.errors import DeliveryError
from producers.sdk import Delivery, DeliveryFailure, EventProducer


def _settle(
    future: asyncio.Future[Delivery], ok: Delivery | None, failure: DeliveryFailure | None
) -> None:
    if future.done():
        return
    if ok is not None:
        future.set_result(ok)
    else:
        assert failure is not None
        future.set_exception(
            DeliveryError(
                f"{failure.topic} key {failure.key!r}: {failure.error}",
                retriable=failure.retriable,
            )
        )


class AsyncEventProducer:
    """Wraps an EventProducer; a background thread serves librdkafka's delivery reports so the
    event loop never blocks on them."""

    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="filas-producer-poll", daemon=True)
        self._poller.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    async def emit(self, topic: TopicSpec | str, record: Mapping[str, Any]) -> Delivery:
        """Emit one event and wait for its acknowledgement (acks=all)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()

        def on_delivery(ok: Delivery | None, failure: DeliveryFailure | None) -> None:
            loop.call_soon_threadsafe(_settle, future, ok, failure)

        name, key, value = self._producer.encode(topic, record)
        callback = self._producer.delivery_callback(key, on_delivery)
        deadline = loop.time() + self._producer.backpressure_timeout_s
        # Backpressure without blocking the loop: wait in small sleeps, then give up loudly.
        while not self._producer.try_produce(name, key, value, callback):
            if loop.time() >= deadline:
                raise self._producer.backpressure_error()
            await asyncio.sleep(0.05)
        return await future

    async def aclose(self, timeout_s: float = 30.0) -> None:
        try:
            await asyncio.to_thread(self._producer.flush, timeout_s)
        finally:
            self._closed.set()
            await asyncio.to_thread(self._poller.join)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
