"""``filas ping serve``: sweep the devices this instance owns, publish one PingResult per device
per round.

Pinger instances share one consumer group over the compacted ``ixc.devices`` topic: each owns
some partitions (so each device is probed by exactly one instance) and re-reads them from the
beginning when they are assigned (the topic is state, not a stream: offsets are never
committed). When an instance dies its partitions move to the others after the session timeout.
A record that is not a usable device goes to ``ixc.devices.dlq`` with the reason.

Everything runs on one asyncio loop: the consumer is polled without blocking (its rebalance
callbacks therefore run on the loop too), one task per ping class starts a round every
``interval_s``, and results are handed to the producer SDK without waiting for acks (delivery
failures are counted; the next round replaces a lost result).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog
from filas.catalog.ixc_state import DEVICES
from filas.catalog.network import PING_RESULTS
from filas.errors import FilasError
from filas.metrics import (
    DEAD_LETTERS,
    ERRORS,
    EVENTS_IN,
    EVENTS_OUT,
    PROCESSING_SECONDS,
    QUEUE_DEPTH,
)
from filas.settings import Settings
from producers.pinger.icmp import IcmpProber, ProbeOutcome
from producers.pinger.inventory import PING_CLASSES, Inventory, Target, target_of
from producers.pinger.sweeper import Prober, now_utc, ping_result, sweep
from producers.sdk import Delivery, DeliveryFailure, EventProducer
from schemas.dead_letter import SourceRecord, dead_letter

logger = logging.getLogger(__name__)

COMPONENT = "pinger"


@dataclass
class PingerStats:
    rounds: int = 0
    results: int = 0
    delivery_failures: int = 0
    devices_read: int = 0
    dead_letters: int = 0
    rebalances: int = 0
    overruns: int = 0
    by_device: dict[str, int] = field(default_factory=dict)


class PingerService:
    """One pinger instance. ``await run()`` until cancelled; ``stop()`` from the loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        serdes: Serdes | None = None,
        prober: Prober | None = None,
        producer: EventProducer | None = None,
        track_devices: bool = False,
    ) -> None:
        self.settings = settings
        self.ping = settings.ping
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        self._serdes = serdes or build_serdes(settings)
        self._devices = self.catalog.resolve(DEVICES)
        self._results = self.catalog.resolve(PING_RESULTS)
        self._dlq = self.catalog.dead_letter_for(DEVICES)
        self._decode = self._serdes(self._devices).deserialize
        self.instance = self.ping.pinger_instance or f"{socket.gethostname()}:{os.getpid()}"
        self._prober = prober
        self._own_prober: IcmpProber | None = None
        self._producer = producer or build_producer(
            settings, catalog=self.catalog, serdes=self._serdes
        )
        self.inventory = Inventory()
        self.stats = PingerStats()
        self._track = track_devices
        self._consumer: Any = None
        self._stopping = asyncio.Event()
        # Set when partitions newly assigned by a rebalance have been read: every class starts
        # a round at once instead of at its next slot, so a dead instance's devices are probed
        # within the session timeout plus one sweep.
        self._reassigned: list[asyncio.Event] = []
        self._reading_new = False

    # -- Kafka side --------------------------------------------------------------------------
    def _open_consumer(self) -> None:
        conf = dict(self.settings.kafka.client_config()) | {
            "group.id": self.settings.topics.prefix + self.ping.pinger_group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.ping.session_timeout_ms,
            "heartbeat.interval.ms": max(500, self.ping.session_timeout_ms // 5),
            "partition.assignment.strategy": "roundrobin",
        }
        self._consumer = Consumer(conf)
        self._consumer.subscribe(
            [self._devices.name], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # State topic: read every assigned partition from the beginning, whatever was committed.
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING
        consumer.assign(partitions)
        self.inventory.assign(tp.partition for tp in partitions)
        self.stats.rebalances += 1
        self._reading_new = True
        logger.info(
            "pinger %s assigned partitions %s",
            self.instance,
            sorted(tp.partition for tp in partitions),
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.inventory.revoke(tp.partition for tp in partitions)
        consumer.unassign()

    def _poll_devices(self) -> int:
        """Apply the device records waiting in the consumer; returns how many."""
        try:
            messages = self._consumer.consume(num_messages=1000, timeout=0)
        except KafkaException as exc:
            ERRORS.labels(COMPONENT, "consume").inc()
            logger.warning("pinger: consume failed: %s", exc)
            return 0
        applied = 0
        for msg in messages:
            if msg.error():
                continue
            applied += 1
            self._apply_device(msg)
        if applied:
            EVENTS_IN.labels(COMPONENT, self._devices.name).inc(applied)
            self.stats.devices_read += applied
            QUEUE_DEPTH.labels(COMPONENT, "devices").set(len(self.inventory))
        return applied

    def _apply_device(self, msg: Any) -> None:
        key = msg.key().decode(errors="replace") if msg.key() else ""
        partition = msg.partition()
        if partition not in self.inventory.partitions:
            return  # a record fetched just before its partition was revoked
        value = msg.value()
        if value is None:
            self.inventory.put(partition, key, None)
            return
        try:
            record = self._decode(value)
            target = target_of(record)
        except FilasError as exc:
            if exc.retriable:
                raise
            self._bury(msg, exc)
            self.inventory.put(partition, key, None)
            return
        self.inventory.put(partition, str(record["device_id"]), target)

    def _bury(self, msg: Any, error: FilasError) -> None:
        timestamp = msg.timestamp()[1]
        source = SourceRecord(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp_ms=timestamp if timestamp > 0 else None,
            key=msg.key(),
            value=msg.value(),
        )
        self._producer.emit(self._dlq, dead_letter(source, error, COMPONENT))
        self.stats.dead_letters += 1
        DEAD_LETTERS.labels(COMPONENT, self._devices.name).inc()
        logger.warning(
            "pinger: dead-lettered %s[%d]@%d: %s",
            source.topic,
            source.partition,
            source.offset,
            error,
            extra={"error_code": error.code},
        )

    async def _consume_loop(self) -> None:
        while not self._stopping.is_set():
            if self._poll_devices() == 0:
                if self._reading_new and len(self.inventory):
                    self._reading_new = False  # caught up with the new partitions
                    for event in self._reassigned:
                        event.set()
                await asyncio.sleep(0.05)
            else:
                await asyncio.sleep(0)

    # -- probing -----------------------------------------------------------------------------
    def _on_delivery(self, ok: Delivery | None, failure: DeliveryFailure | None) -> None:
        if failure is not None:
            self.stats.delivery_failures += 1
            ERRORS.labels(COMPONENT, "delivery").inc()

    def _publish(self, target: Target, outcome: ProbeOutcome, probed_at: datetime) -> None:
        record = ping_result(target, outcome, probed_at, self.instance)
        try:
            self._producer.emit(self._results, record, on_delivery=self._on_delivery)
        except FilasError as exc:
            ERRORS.labels(COMPONENT, exc.code).inc()
            logger.error("pinger: cannot publish %s: %s", target.device_id, exc)
            return
        if self._track:
            self.stats.by_device[target.device_id] = (
                self.stats.by_device.get(target.device_id, 0) + 1
            )

    async def _class_loop(self, ping_class: str, prober: Prober) -> None:
        settings = self.ping.for_class(ping_class)
        assert settings is not None
        loop = asyncio.get_running_loop()
        next_start = loop.time()
        wake = asyncio.Event()
        self._reassigned.append(wake)
        while not self._stopping.is_set():
            wake.clear()
            targets = self.inventory.of_class(ping_class)
            probed_at = now_utc()
            started = time.perf_counter()

            publish = functools.partial(self._publish, probed_at=probed_at)
            outcomes = await sweep(prober, targets, settings, self.ping.concurrency, publish)
            self._producer.poll(0)
            if outcomes:
                self.stats.rounds += 1
                self.stats.results += len(outcomes)
                EVENTS_OUT.labels(COMPONENT, self._results.name).inc(len(outcomes))
                PROCESSING_SECONDS.labels(COMPONENT, f"round_{ping_class.lower()}").observe(
                    time.perf_counter() - started
                )
            next_start += settings.interval_s
            delay = next_start - loop.time()
            if delay < 0:
                self.stats.overruns += 1
                next_start = loop.time()
                delay = 0
            waits = [asyncio.ensure_future(e.wait()) for e in (self._stopping, wake)]
            try:
                await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if wake.is_set():
                next_start = loop.time()  # a rebalance brought devices: sweep them now

    async def run(self) -> None:
        """Consume the inventory and sweep it until ``stop()``; closes everything on the way out."""
        prober = self._prober
        if prober is None:
            self._own_prober = IcmpProber()
            self._own_prober.open()
            prober = self._own_prober
        self._open_consumer()
        tasks = [asyncio.create_task(self._consume_loop(), name="pinger-devices")]
        tasks += [
            asyncio.create_task(self._class_loop(c, prober), name=f"pinger-{c.lower()}")
            for c in PING_CLASSES
            if self.ping.for_class(c) is not None
        ]
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self.close)

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(RuntimeError, KafkaException):
                self._consumer.close()
            self._consumer = None
        if self._own_prober is not None:
            self._own_prober.close()
            self._own_prober = None
        with contextlib.suppress(FilasError):
            self._producer.flush(10)
