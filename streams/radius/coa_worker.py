"""``filas radius coa``: the Kafka side of CoA / Disconnect (RFC 5176).

Reads ``ixc.contract-status`` in a consumer group (offsets committed by hand, only after every
result event of a status event has been acknowledged by the broker), keeps the replica and the
live-sessions table with a ``ReplicaFeeder`` like the gateway, and keeps the idempotency ledger
by tailing ``radius.coa-results`` for as long as it runs
(docs/decisions/0051-radius-coa-ledger-from-result-topic.md, 0100-radius-coa-ledger-tailed.md).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.ixc_state import CONTRACT_STATUS
from filas.catalog.radius import COA_RESULTS
from filas.errors import BrokerUnavailableError, FilasError
from filas.metrics import DEPENDENCY_SECONDS, ERRORS, EVENTS_IN, PROCESSING_SECONDS, timed
from filas.settings import Settings
from producers.radius.coa import CoaAction, CoaProcessor, CoaSender, Ledger, Sender, SendResult
from producers.radius.pyrad_adapter import AttributeValue
from streams.radius.replica import ReplicaFeeder, StateReplica
from streams.radius.sessions import SessionTable
from streams.topic_state import read_topic_once

logger = logging.getLogger(__name__)

COMPONENT = "radius-coa"


class _MeteredSender:
    """Time spent waiting on the NAS (retries included): filas_dependency_seconds{nas}."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    def send(
        self,
        action: CoaAction,
        address: tuple[str, int],
        secret: bytes,
        attributes: Mapping[str, AttributeValue],
    ) -> SendResult:
        with timed(DEPENDENCY_SECONDS, component=COMPONENT, dependency="nas"):
            return self._sender.send(action, address, secret, attributes)


def load_ledger(settings: Settings, catalog: Catalog, serdes: Serdes, timeout_s: float) -> Ledger:
    """Every (status_event_id, action) in ``radius.coa-results``, read up to the high
    watermarks seen now (the topic's retention bounds how far back a replay is recognised)."""
    spec = catalog.resolve(COA_RESULTS)
    serde = serdes(spec)
    ledger = Ledger()

    def handle(msg: Any) -> None:
        record = serde.deserialize(msg.value())
        ledger.add((str(record["status_event_id"]), str(record["action"])))

    read_topic_once(
        settings.kafka,
        spec,
        handle,
        timeout_s,
        label="coa ledger",
        code="radius_coa_ledger_not_ready",
    )
    return ledger


class LedgerTail:
    """Reads ``radius.coa-results`` from the beginning and then for as long as the worker runs
    (a thread, its own consumer with no group offsets), adding every (status event id, action)
    to the ledger. ``wait_caught_up`` blocks until every result on the broker *now* has been
    read: the worker calls it at start-up and whenever it is assigned partitions, so results a
    previous owner emitted (and died before committing) are in the ledger before its events are
    replayed (docs/decisions/0100-radius-coa-ledger-tailed.md)."""

    def __init__(self, settings: Settings, catalog: Catalog, serdes: Serdes, ledger: Ledger):
        self.ledger = ledger
        self._spec = catalog.resolve(COA_RESULTS)
        self._serde = serdes(self._spec)
        base = dict(settings.kafka.client_config()) | {
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._consumer = Consumer(
            base | {"group.id": f"filas-radius-coa-ledger-{uuid.uuid4().hex[:8]}"}
        )
        # Watermark queries come from the worker's thread: a second handle, never shared.
        self._probe = Consumer(
            base | {"group.id": f"filas-radius-coa-ledger-probe-{uuid.uuid4().hex[:8]}"}
        )
        self._partitions: list[int] = []
        self._next: dict[int, int] = {}  # partition -> next offset to read (position)
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.read = 0

    def start(self) -> None:
        name = self._spec.name
        try:
            topic = self._consumer.list_topics(name, timeout=10).topics.get(name)
        except KafkaException as exc:
            raise BrokerUnavailableError(f"coa ledger: no broker answered ({exc})") from exc
        if topic is None or topic.error is not None:
            raise FilasError(f"coa ledger: topic {name!r} missing; run 'filas topics apply'")
        self._partitions = sorted(topic.partitions)
        self._consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in self._partitions])
        self._thread = threading.Thread(target=self._run, name="coa-ledger-tail", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._consumer.consume(num_messages=500, timeout=0.2)
            except (KafkaException, RuntimeError) as exc:
                if self._stop.is_set():
                    return
                logger.warning("coa ledger: consume failed: %s", exc)
                time.sleep(0.5)
                continue
            if not messages:
                continue
            for msg in messages:
                if msg.error():
                    continue
                if msg.value() is not None:
                    try:
                        record = self._serde.deserialize(msg.value())
                    except FilasError as exc:
                        ERRORS.labels(COMPONENT, exc.code).inc()
                        continue
                    self.ledger.add((str(record["status_event_id"]), str(record["action"])))
                    self.read += 1
                with self._lock:
                    self._next[msg.partition()] = msg.offset() + 1
            with self._progress:
                self._progress.notify_all()

    def wait_caught_up(self, timeout_s: float) -> None:
        """Block until every result written before this call is in the ledger."""
        name = self._spec.name
        targets: dict[int, int] = {}
        for p in self._partitions:
            try:
                low, high = self._probe.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            except KafkaException as exc:
                raise BrokerUnavailableError(f"coa ledger: watermarks: {exc}") from exc
            if high > low:
                targets[p] = high
        deadline = time.monotonic() + timeout_s
        with self._progress:
            while any(self._next.get(p, 0) < high for p, high in targets.items()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FilasError(
                        f"coa ledger: {name} not read within {timeout_s:.0f}s",
                        code="radius_coa_ledger_not_ready",
                        retriable=True,
                    )
                self._progress.wait(min(remaining, 0.2))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for consumer in (self._consumer, self._probe):
            with contextlib.suppress(RuntimeError, KafkaException):
                consumer.close()


class CoaWorker:
    """Start: replica + sessions caught up -> ledger tail caught up -> consumer subscribed. Then
    ``run_once`` handles one status event at a time (poll, send, emit results and wait for their
    acks, commit the offset); after every partition assignment the ledger tail catches up
    first."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        serdes: Serdes | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        self._owns_serdes = serdes is None
        self._serdes = serdes or build_serdes(settings)
        radius = settings.radius
        self.replica = StateReplica()
        self.sessions = SessionTable(radius.session_stale_after_s)
        self.feeder = ReplicaFeeder(
            settings.kafka,
            self.catalog,
            self._serdes,
            self.replica,
            self.sessions,
            sessions_lookback_s=radius.session_stale_after_s,
        )
        self.producer = build_producer(settings, catalog=self.catalog, serdes=self._serdes)
        self.processor = CoaProcessor(
            radius,
            self.replica,
            self.sessions,
            _MeteredSender(
                sender
                or CoaSender(
                    radius.coa_timeout_s,
                    radius.coa_retries,
                    message_authenticator=radius.coa_message_authenticator,
                )
            ),
            self._emit,
        )
        self._status: TopicSpec = self.catalog.resolve(CONTRACT_STATUS)
        self._consumer: Any = None
        self._stop = threading.Event()
        self.last_results: list[dict[str, Any]] = []
        self.ledger_tail: LedgerTail | None = None
        self._catch_up = False

    def _emit(self, spec: TopicSpec, record: Mapping[str, Any]) -> None:
        self.producer.emit_sync(spec, record, timeout_s=30.0)

    def start(self) -> None:
        self.feeder.start()
        timeout = self.settings.radius.replica_ready_timeout_s
        if not self.feeder.wait_ready(timeout):
            self.feeder.stop()
            raise FilasError(
                f"radius replica did not catch up within {timeout:.0f}s",
                code="radius_replica_not_ready",
                retriable=True,
            )
        self.ledger_tail = LedgerTail(self.settings, self.catalog, self._serdes, Ledger())
        self.ledger_tail.start()
        self.ledger_tail.wait_caught_up(timeout)
        self.processor.ledger = self.ledger_tail.ledger
        logger.info("coa: ledger holds %d handled status events", len(self.processor.ledger))
        conf = dict(self.settings.kafka.client_config()) | {
            "group.id": self.settings.topics.prefix + self.settings.radius.coa_group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.settings.radius.coa_start_from,
        }
        self._consumer = Consumer(conf)
        self._consumer.subscribe([self._status.name], on_assign=self._assigned)

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Called inside poll(): the previous owner's results must reach the ledger before the
        # events it may not have committed are handled here.
        self._catch_up = True

    def run_once(self, timeout_s: float = 0.5) -> int:
        """Handle at most one status event; returns how many result events it emitted (also in
        ``last_results``, which is emptied first so a poll that returns nothing reports nothing)."""
        self.last_results = []
        msg = self._consumer.poll(timeout_s)
        if msg is None:
            return 0
        if msg.error():
            logger.warning("coa: consume error: %s", msg.error())
            return 0
        if self._catch_up and self.ledger_tail is not None:
            self.ledger_tail.wait_caught_up(self.settings.radius.replica_ready_timeout_s)
            self._catch_up = False
        EVENTS_IN.labels(COMPONENT, msg.topic()).inc()
        if msg.value() is not None:
            try:
                event = self._serdes(self._status).deserialize(msg.value())
            except FilasError as exc:
                ERRORS.labels(COMPONENT, exc.code).inc()
                logger.error("coa: skipped %s offset %s: %s", msg.topic(), msg.offset(), exc.code)
            else:
                with timed(PROCESSING_SECONDS, component=COMPONENT, stage="status_event"):
                    self.last_results = self.processor.handle(event)
        # Only now: the results are on the broker, so a replay finds them in the ledger.
        self._consumer.commit(message=msg, asynchronous=False)
        return len(self.last_results)

    def run(self) -> None:
        while not self._stop.is_set():
            self.run_once()

    def stop(self) -> None:
        """Ask ``run`` (on another thread) to return after the current event."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._consumer is not None:
            with contextlib.suppress(RuntimeError):
                self._consumer.close()
            self._consumer = None
        if self.ledger_tail is not None:
            self.ledger_tail.close()
        self.feeder.stop()
        self.producer.close(timeout_s=10)
        if self._owns_serdes:
            self._serdes.close()
