"""Keeps a ``SubscriberState`` current from Kafka, like the RADIUS replica (decision 0050).

A plain confluent-kafka consumer thread ``assign()``s every partition of the state topics at the
beginning (no committed group: every fan-out process holds the whole state) and sets ``ready``
once it has read up to the high watermarks seen at start-up. Topics read:
``ixc.customers``, ``ixc.contracts``, ``ixc.subscribers`` (login -> customer, never the
password), ``campaign.opt-outs`` and ``net.responses`` (outage holds; 30 days of retention, so
an outage still open is always seen).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import OPT_OUTS
from filas.catalog.ixc_state import CONTRACTS, CUSTOMERS, SUBSCRIBERS
from filas.catalog.network import RESPONSES
from filas.errors import BrokerUnavailableError, FilasError
from filas.metrics import ERRORS, EVENTS_IN
from filas.settings import KafkaSettings
from streams.campaigns.outage import apply_hold
from streams.campaigns.state import SubscriberState

logger = logging.getLogger(__name__)
COMPONENT = "campaign-fanout"

Apply = Callable[[str, Mapping[str, Any] | None], None]


def watermarks(consumer: Any, tp: TopicPartition, timeout_s: float = 15.0) -> tuple[int, int]:
    """(low, high) of one partition, retrying while a new topic's leader is being elected."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline or not exc.args[0].retriable():
                raise BrokerUnavailableError(
                    f"no watermarks for {tp.topic}[{tp.partition}]: {exc}"
                ) from exc
            time.sleep(0.2)


class StateFeeder:
    """Reads the state topics into ``state`` on a daemon thread; ``on_change`` after holds move."""

    def __init__(
        self,
        kafka: KafkaSettings,
        catalog: Catalog,
        serdes: Callable[[TopicSpec], Any],
        state: SubscriberState,
        *,
        on_holds_changed: Callable[[], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self.state = state
        self._on_holds_changed = on_holds_changed
        self._specs = [
            catalog.resolve(s) for s in (CUSTOMERS, CONTRACTS, SUBSCRIBERS, OPT_OUTS, RESPONSES)
        ]
        self._decoders = {spec.name: serdes(spec).deserialize for spec in self._specs}
        names = [s.name for s in self._specs]
        self._apply: dict[str, Apply] = {
            names[0]: state.put_customer,
            names[1]: state.put_contract,
            names[2]: state.put_login,
            names[3]: state.put_opt_out,
            names[4]: self._response,
        }
        self.ready = threading.Event()
        self.applied = 0
        self.decode_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._pending: dict[tuple[str, int], int] = {}

    def _response(self, _key: str, record: Mapping[str, Any] | None) -> None:
        if record is not None and apply_hold(self.state, record) and self._on_holds_changed:
            self._on_holds_changed()

    def start(self) -> None:
        conf = dict(self._kafka.client_config()) | {
            "group.id": f"filas-campaign-state-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
        consumer = Consumer(conf)
        try:
            metadata = consumer.list_topics(timeout=10)
        except KafkaException as exc:
            consumer.close()
            raise BrokerUnavailableError(f"campaign state: no broker answered ({exc})") from exc
        partitions: list[TopicPartition] = []
        for spec in self._specs:
            topic = metadata.topics.get(spec.name)
            if topic is None or topic.error is not None:
                consumer.close()
                raise FilasError(
                    f"campaign state: topic {spec.name!r} missing; run 'filas topics apply'"
                )
            for p in sorted(topic.partitions):
                partitions.append(TopicPartition(spec.name, p, OFFSET_BEGINNING))
                low, high = watermarks(consumer, TopicPartition(spec.name, p))
                if high > low:
                    self._pending[(spec.name, p)] = high
        consumer.assign(partitions)
        self._consumer = consumer
        if not self._pending:
            self.ready.set()
        self._thread = threading.Thread(target=self._run, name="filas-campaign-state", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = self._consumer
        while not self._stop.is_set():
            try:
                messages = consumer.consume(num_messages=1000, timeout=0.2)
            except KafkaException as exc:
                logger.warning("campaign state: consume failed: %s", exc)
                time.sleep(0.5)
                continue
            for msg in messages:
                if not msg.error():
                    self._apply_one(msg)
        consumer.close()

    def _apply_one(self, msg: Any) -> None:
        topic, key, value = msg.topic(), msg.key(), msg.value()
        record: Mapping[str, Any] | None = None
        if value is not None:
            try:
                record = self._decoders[topic](value)
            except FilasError as exc:
                # Never logs the value: ixc.subscribers carries passwords (decision 0020).
                self.decode_errors += 1
                ERRORS.labels(component=COMPONENT, kind="state_decode").inc()
                logger.error("campaign state: skipped %s offset %s: %s", topic, msg.offset(), exc)
                self._progress(topic, msg.partition(), msg.offset())
                return
        try:
            self._apply[topic](key.decode(errors="replace") if key else "", record)
        except (KeyError, TypeError, ValueError) as exc:
            ERRORS.labels(component=COMPONENT, kind="state_apply").inc()
            logger.error("campaign state: bad %s offset %s: %s", topic, msg.offset(), exc)
        self.applied += 1
        EVENTS_IN.labels(component=COMPONENT, topic=topic).inc()
        self._progress(topic, msg.partition(), msg.offset())

    def _progress(self, topic: str, partition: int, offset: int) -> None:
        if self.ready.is_set():
            return
        high = self._pending.get((topic, partition))
        if high is not None and offset + 1 >= high:
            del self._pending[(topic, partition)]
            if not self._pending:
                logger.info("campaign state: caught up (%d records)", self.applied)
                self.ready.set()

    def wait_ready(self, timeout_s: float) -> bool:
        return self.ready.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
