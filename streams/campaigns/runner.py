"""``filas campaigns fanout``: the Kafka side of the campaign fan-out (a thin shell on the engine).

One thread, a plain confluent-kafka loop
(docs/decisions/0070-campaign-fanout-plain-consumer-loop.md):

1. ``StateFeeder`` reads the subscriber state topics, opt-outs and outage holds (until caught up).
2. ``load_history`` reads the last ``frequency_lookback_s`` of the message topics (frequency caps).
3. A consumer group on ``campaign.definitions`` gives this process some partitions; on every
   assignment the engine is rebuilt: latest ``campaign.progress`` per campaign, then the assigned
   partitions replayed from the beginning; only when they are read up to their end does the
   engine go live and publish. Offsets are never committed (the log is the state).
4. Each loop turn: apply new commands, one engine ``step`` (plan, or publish one batch and wait
   for the broker's acks, then a progress event), one batch of outage notices.

Messages go to the topic of their lane (``campaign.messages.transactional`` / ``.bulk``) through
``filas.lanes.LaneRouter``: delivery drains transactional first (docs/queues-lanes.md).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import CAMPAIGNS, MESSAGE_LANES, PROGRESS
from filas.catalog.network import RESPONSES
from filas.errors import ConfigurationError, FilasError
from filas.lanes import LaneRouter
from filas.metrics import (
    BATCH_SIZE,
    DEAD_LETTERS,
    ERRORS,
    EVENTS_IN,
    EVENTS_OUT,
    PROCESSING_SECONDS,
    timed,
)
from filas.settings import CampaignsSettings, Settings
from producers.sdk import EventProducer
from schemas.dead_letter import SourceRecord, dead_letter
from streams.campaigns.engine import FanoutEngine, message_record
from streams.campaigns.outage import SUBSCRIBER_NOTICE, notice_messages
from streams.campaigns.plan import (
    CampaignError,
    CampaignSpec,
    FrequencyHistory,
    PlannedMessage,
    compile_template,
    to_ms,
)
from streams.campaigns.replica import COMPONENT, StateFeeder
from streams.campaigns.state import SubscriberState
from streams.topic_state import read_topic_once, watermarks

logger = logging.getLogger(__name__)


def message_router(catalog: Catalog) -> LaneRouter:
    """Routes a CampaignMessage to ``campaign.messages.<lane>`` by its ``lane`` field."""
    return LaneRouter(catalog, MESSAGE_LANES)


def message_topics(catalog: Catalog) -> dict[str, TopicSpec]:
    """Lane name -> the (prefixed) lane topic its messages go to."""
    router = message_router(catalog)
    return {lane: router.spec_for(lane) for lane in router.lanes}


def load_progress(
    settings: Settings, catalog: Catalog, serdes: Serdes, timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Latest ``campaign.progress`` event per campaign id."""
    spec = catalog.resolve(PROGRESS)
    serde = serdes(spec)
    latest: dict[str, dict[str, Any]] = {}

    def handle(msg: Any) -> None:
        try:
            record = serde.deserialize(msg.value())
        except FilasError as exc:
            logger.error("campaigns: skipped %s offset %s: %s", spec.name, msg.offset(), exc)
            return
        latest[str(record["campaign_id"])] = record

    read_topic_once(
        settings.kafka, spec, handle, timeout_s, label="campaigns", code="campaign_not_ready"
    )
    return latest


def load_history(
    settings: Settings, catalog: Catalog, serdes: Serdes, timeout_s: float
) -> FrequencyHistory:
    """Messages queued in the last ``campaigns.frequency_lookback_s`` (for frequency caps)."""
    history = FrequencyHistory()
    since = int((time.time() - settings.campaigns.frequency_lookback_s) * 1000)
    for spec in dict.fromkeys(message_topics(catalog).values()):
        serde = serdes(spec)

        def handle(msg: Any, serde: Any = serde) -> None:
            try:
                r = serde.deserialize(msg.value())
            except FilasError:
                return
            history.add(
                str(r["campaign_id"]),
                str(r["recipient_id"]),
                str(r["channel"]),
                str(r["lane"]),
                to_ms(r["not_before"]) or 0,
            )

        read_topic_once(
            settings.kafka,
            spec,
            handle,
            timeout_s,
            label="campaigns",
            code="campaign_not_ready",
            since_ms=since,
        )
    return history


class FanoutService:
    """Start: state caught up -> history loaded -> subscribed. Then ``run_once`` per turn."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        serdes: Serdes | None = None,
        producer: EventProducer | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self.config: CampaignsSettings = settings.campaigns
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        self._serdes = serdes or build_serdes(settings)
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self.state = SubscriberState()
        self.history = FrequencyHistory()
        self.feeder = StateFeeder(settings.kafka, self.catalog, self._serdes, self.state)
        self.producer = producer or build_producer(
            settings, catalog=self.catalog, serdes=self._serdes
        )
        self.router = message_router(self.catalog)
        self._definitions = self.catalog.resolve(CAMPAIGNS)
        self._progress_spec = self.catalog.resolve(PROGRESS)
        self._responses = self.catalog.resolve(RESPONSES)
        self.engine: FanoutEngine | None = None
        self._catchup: dict[int, int] = {}
        self._consumer: Any = None
        self._notices: Any = None
        self._stop = threading.Event()
        self.notices_sent = 0
        self._check_notice_template()

    def _check_notice_template(self) -> None:
        try:
            compile_template(self.config.outage_notice_subject, "outage notice subject")
            compile_template(self.config.outage_notice_body, "outage notice body")
        except CampaignError as exc:
            raise ConfigurationError(f"FILAS_CAMPAIGNS__OUTAGE_NOTICE_*: {exc}") from exc

    # --- ports of the engine ----------------------------------------------------------------

    def publish(self, campaign: CampaignSpec, messages: Sequence[PlannedMessage]) -> None:
        """Produce ``messages`` to their lane topic and wait for every ack (raises otherwise)."""
        topic = self.router.spec_for(campaign.lane)
        now = self.clock()
        with timed(PROCESSING_SECONDS, component=COMPONENT, stage="publish"):
            for m in messages:
                self.producer.emit(topic, message_record(campaign, m, now))
            self.producer.flush(self.settings.kafka.delivery_timeout_ms / 1000)
        EVENTS_OUT.labels(component=COMPONENT, topic=topic.name).inc(len(messages))
        BATCH_SIZE.labels(component=COMPONENT).observe(len(messages))

    def emit_progress(self, record: Mapping[str, Any]) -> None:
        self.producer.emit_sync(self._progress_spec, record)
        EVENTS_OUT.labels(component=COMPONENT, topic=self._progress_spec.name).inc()

    def build_engine(self) -> FanoutEngine:
        return FanoutEngine(
            self.state,
            self.history,
            self.publish,
            self.emit_progress,
            self.clock,
            batch_size=self.config.batch_size,
            hold_purposes=self.config.outage_hold_purposes,
        )

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        timeout = self.config.ready_timeout_s
        self.feeder.start()
        if not self.feeder.wait_ready(timeout):
            self.feeder.stop()
            raise FilasError(
                f"campaign state did not catch up within {timeout:.0f}s",
                code="campaign_not_ready",
                retriable=True,
            )
        self.history.entries.update(
            load_history(self.settings, self.catalog, self._serdes, timeout).entries
        )
        prefix = self.settings.topics.prefix
        base = dict(self.settings.kafka.client_config()) | {
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        self._consumer = Consumer(
            base | {"group.id": prefix + self.config.group_id, "auto.offset.reset": "earliest"}
        )
        self._consumer.subscribe(
            [self._definitions.name], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self._notices = Consumer(
            base
            | {
                "group.id": prefix + self.config.group_id + "-outage-notices",
                "auto.offset.reset": self.config.outage_notices_start_from,
            }
        )
        self._notices.subscribe([self._responses.name])

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._replay(consumer, partitions)
        for tp in partitions:
            tp.offset = OFFSET_BEGINNING
        consumer.assign(partitions)

    def _replay(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """A fresh engine: progress restored, definitions to replay up to these watermarks."""
        engine = self.build_engine()
        for record in load_progress(
            self.settings, self.catalog, self._serdes, self.config.ready_timeout_s
        ).values():
            engine.restore_progress(record)
        self._catchup = {}
        for tp in partitions:
            low, high = watermarks(consumer, TopicPartition(tp.topic, tp.partition))
            if high > low:
                self._catchup[tp.partition] = high
        self.engine = engine
        logger.info(
            "campaigns: partitions %s, replaying definitions",
            sorted(p.partition for p in partitions),
        )
        if not self._catchup:
            engine.go_live()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        logger.info("campaigns: revoked %s", sorted(p.partition for p in partitions))
        self.engine = None
        self._catchup = {}

    @property
    def partitions(self) -> list[int]:
        """``campaign.definitions`` partitions this instance owns now."""
        if self._consumer is None:
            return []
        return sorted(tp.partition for tp in self._consumer.assignment())

    @property
    def live(self) -> bool:
        return self.engine is not None and self.engine.live

    def run_once(self, timeout_s: float = 0.2) -> bool:
        """One loop turn; True when it did some work."""
        busy = self.engine is not None and self.engine.pending()
        messages = self._consumer.consume(num_messages=200, timeout=0.0 if busy else timeout_s)
        for msg in messages:
            if msg.error():
                logger.warning("campaigns: consume error: %s", msg.error())
                continue
            self._command(msg)
        engine = self.engine
        worked = bool(messages)
        if engine is not None:
            try:
                worked = engine.step() or worked
            except FilasError as exc:  # broker trouble mid-batch: the cursor replays it later
                ERRORS.labels(component=COMPONENT, kind=exc.code).inc()
                logger.error("campaigns: step failed, retrying: %s", exc)
                self.engine = None
                self._rebuild()
                return False
        return self._outage_notices() or worked

    def _rebuild(self) -> None:
        """Replay the assignment into a fresh engine (after a failed publish)."""
        assignment = self._consumer.assignment()
        if assignment:
            self._replay(self._consumer, assignment)
            for tp in assignment:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))

    def _command(self, msg: Any) -> None:
        engine = self.engine
        if engine is None:
            return
        EVENTS_IN.labels(component=COMPONENT, topic=self._definitions.name).inc()
        if msg.value() is not None:
            try:
                record = self._serdes(self._definitions).deserialize(msg.value())
            except FilasError as exc:
                self._dead_letter(msg, exc)
            else:
                engine.apply(record)
        p = msg.partition()
        if p in self._catchup and msg.offset() + 1 >= self._catchup[p]:
            del self._catchup[p]
            if not self._catchup and not engine.live:
                logger.info("campaigns: definitions replayed, %d campaigns", len(engine.runs))
                engine.go_live()

    def _dead_letter(self, msg: Any, exc: FilasError) -> None:
        source = SourceRecord(
            msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), msg.value()
        )
        spec = self.catalog.dead_letter_for(self._definitions)
        self.producer.emit_sync(spec, dead_letter(source, exc, COMPONENT))
        DEAD_LETTERS.labels(component=COMPONENT, topic=self._definitions.name).inc()
        logger.error("campaigns: %s offset %s to the DLQ: %s", msg.topic(), msg.offset(), exc)

    def _outage_notices(self) -> bool:
        msgs = self._notices.consume(num_messages=200, timeout=0.0)
        if not msgs:
            return False
        serde = self._serdes(self._responses)
        done: dict[int, int] = {}
        for msg in msgs:
            if msg.error():
                continue
            done[msg.partition()] = msg.offset() + 1
            EVENTS_IN.labels(component=COMPONENT, topic=self._responses.name).inc()
            if msg.value() is None:
                continue
            try:
                response = serde.deserialize(msg.value())
            except FilasError as exc:
                ERRORS.labels(component=COMPONENT, kind=exc.code).inc()
                logger.error("campaigns: skipped %s offset %s: %s", msg.topic(), msg.offset(), exc)
                continue
            if str(response["kind"]) != SUBSCRIBER_NOTICE:
                continue
            self._notice(response)
        if done:
            # After the acks: a crash before this re-sends notices with the same message ids.
            name = self._responses.name
            self._notices.commit(
                offsets=[TopicPartition(name, p, o) for p, o in done.items()], asynchronous=False
            )
        return True

    def _notice(self, response: Mapping[str, Any]) -> None:
        login_id = response.get("login_id")
        if login_id is not None and str(login_id) not in self.state.logins:
            ERRORS.labels(component=COMPONENT, kind="outage_notice_unknown_login").inc()
            logger.warning("campaigns: outage notice for unknown login id %s", login_id)
            return
        cfg = self.config
        try:
            campaign, messages = notice_messages(
                response,
                self.state,
                self.clock(),
                channels=cfg.outage_notice_channels,
                subject=cfg.outage_notice_subject,
                body=cfg.outage_notice_body,
                window=cfg.outage_notice_window,
                timezone=self.settings.ixc.timezone,
            )
        except CampaignError as exc:  # a recipient the template cannot render: no notice
            ERRORS.labels(component=COMPONENT, kind=exc.code).inc()
            logger.error("campaigns: outage notice not rendered: %s", exc)
            return
        if messages:
            self.publish(campaign, messages)
            self.notices_sent += len(messages)

    def run(self) -> None:
        while not self._stop.is_set():
            self.run_once()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        for consumer in (self._consumer, self._notices):
            if consumer is not None:
                with contextlib.suppress(RuntimeError, KafkaException):
                    consumer.close()
        self._consumer = self._notices = None
        self.feeder.stop()
        with contextlib.suppress(FilasError):
            self.producer.close(timeout_s=10)
