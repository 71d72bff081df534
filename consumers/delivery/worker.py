"""``filas delivery serve --channel email|sms|whatsapp``: campaign messages out to a provider.

Per batch (one lane, highest first, filas.lanes): decode (undecodable -> lane DLQ), keep this
channel's messages, hold partitions whose next message is not due yet, then per message:
ledger check -> rate slot + concurrency slot -> ``sending`` entry (acked) -> provider ->
retries with backoff for temporary failures -> DeliveryResult + ``done`` entry (acked) -> DLQ
for failures; the lane's offsets are committed after the whole batch.
(docs/campaigns.md "Delivery", decisions 0075-0077.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
import weakref
from asyncio import FIRST_COMPLETED
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import Message

from consumers.delivery.channels import Channel, Outcome, OutgoingMessage, SendResult
from consumers.delivery.guard import (
    DELIVERY_SKIPPED,
    PAUSED,
    SKIPPED_FREQUENCY_CAP,
    SendGuard,
    Verdict,
)
from consumers.delivery.http_gateway import HttpChannel
from consumers.delivery.ledger import DONE, SENDING, Ledger, LedgerReader, entry_of
from consumers.delivery.limits import ConcurrencyLimit, RateLimiter, backoff_delay, share
from consumers.delivery.smtp import SmtpChannel
from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import DELIVERY_LEDGER, DELIVERY_RESULTS, MESSAGE_LANES
from filas.errors import ConfigurationError, FilasError
from filas.lanes import LaneBatch, LaneConsumer
from filas.metrics import (
    DEAD_LETTERS,
    DEPENDENCY_SECONDS,
    ERRORS,
    EVENTS_IN,
    EVENTS_OUT,
    PROCESSING_SECONDS,
    QUEUE_DEPTH,
    RATE_LIMIT_RATE,
    RATE_LIMIT_TOKENS,
)
from filas.settings import HttpChannelSettings, Settings, SmtpChannelSettings
from producers.async_sdk import AsyncEventProducer
from producers.envelope import envelope
from schemas.dead_letter import SourceRecord, dead_letter

logger = logging.getLogger(__name__)

COMPONENT = "campaign-delivery"
COMMIT_EVERY_S = 0.2
MAX_IN_FLIGHT_BATCHES = 4
# A partition held on a paused campaign's message is looked at again this often.
PAUSED_RECHECK_S = 1.0
# Paced sends wake on boundaries this far apart (several per event-loop turn at high rates).
PACING_TICK_S = 0.005
ChannelName = Literal["email", "sms", "whatsapp"]
CHANNELS: tuple[ChannelName, ...] = ("email", "sms", "whatsapp")


def build_channel(settings: Settings, name: ChannelName) -> Channel:
    config = channel_settings(settings, name)
    if isinstance(config, SmtpChannelSettings):
        return SmtpChannel(config)
    return HttpChannel(config, dependency=name)


def channel_settings(
    settings: Settings, name: ChannelName
) -> SmtpChannelSettings | HttpChannelSettings:
    config: SmtpChannelSettings | HttpChannelSettings = getattr(settings.delivery, name)
    return config


def _ms(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


async def _wait_all(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.wait(tasks)


class PartitionOffsets:
    """Offsets handed to tasks per (lane, partition), in order; ``ready`` gives the next offset
    to commit after the contiguous finished prefix (a slow message holds back the ones after it,
    never the other way round)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[int, int], OrderedDict[int, bool]] = {}

    def add(self, key: tuple[int, int], offset: int) -> None:
        self._pending.setdefault(key, OrderedDict())[offset] = False

    def done(self, key: tuple[int, int], offset: int) -> None:
        pending = self._pending.get(key)
        if pending is not None and offset in pending:
            pending[offset] = True

    def ready(self) -> dict[tuple[int, int], int]:
        out = {}
        for key, pending in self._pending.items():
            while pending:
                offset, finished = next(iter(pending.items()))
                if not finished:
                    break
                pending.popitem(last=False)
                out[key] = offset + 1
        return out

    def forget(self, key: tuple[int, int]) -> None:
        self._pending.pop(key, None)

    def __len__(self) -> int:
        return sum(len(p) for p in self._pending.values())


@dataclass
class DeliveryStats:
    sent: int = 0
    permanent: int = 0
    exhausted: int = 0
    retries: int = 0
    expired: int = 0
    already_done: int = 0
    ambiguous_resent: int = 0
    ambiguous_skipped: int = 0
    other_channel: int = 0
    undecodable: int = 0
    held: int = 0
    held_paused: int = 0
    skipped_opt_out: int = 0
    skipped_frequency_cap: int = 0
    cancelled: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class DeliveryWorker:
    """One instance of a channel's delivery group: ``await start()``, then ``run``."""

    def __init__(
        self,
        settings: Settings,
        channel_name: ChannelName,
        *,
        catalog: Catalog | None = None,
        serdes: Serdes | None = None,
        channel: Channel | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if channel_name not in CHANNELS:
            raise ConfigurationError(f"unknown channel {channel_name!r}; one of {CHANNELS}")
        self.settings = settings
        self.config = settings.delivery
        self.channel_name = channel_name
        self.channel_config = channel_settings(settings, channel_name)
        self.channel = channel or build_channel(settings, channel_name)
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        self._own_serdes = serdes is None
        self._serdes = serdes or build_serdes(settings)
        self._rng = rng
        self.lane_specs: tuple[TopicSpec, ...] = tuple(
            self.catalog.resolve(s) for s in MESSAGE_LANES
        )
        self.results_spec = self.catalog.resolve(DELIVERY_RESULTS)
        self.ledger_spec = self.catalog.resolve(DELIVERY_LEDGER)
        # Labelled metric children looked up once (labels() per message showed in profiles).
        self._events_in = {s.name: EVENTS_IN.labels(COMPONENT, s.name) for s in self.lane_specs}
        self._results_out = EVENTS_OUT.labels(COMPONENT, self.results_spec.name)
        self._message_seconds = PROCESSING_SECONDS.labels(COMPONENT, "message")
        self._provider_seconds = DEPENDENCY_SECONDS.labels(COMPONENT, self.channel.dependency)
        self.instance = self.config.instance or f"{socket.gethostname()}:{os.getpid()}"
        self.group_id = f"{settings.topics.prefix}{self.config.group_id}-{channel_name}"
        limit = self.channel_config.rate_per_s
        self.limiter = RateLimiter(
            None if limit is None else 0.0,
            burst_s=self.config.rate_burst_s,
            tick_s=PACING_TICK_S,
        )
        self.concurrency = ConcurrencyLimit(0)
        self.unacked = ConcurrencyLimit(self.config.max_unacked)
        self.ledger = Ledger()
        # Opt-outs and pause/cancel as they are now, checked again just before each send.
        self.guard = SendGuard(settings.kafka, self.catalog, self._serdes)
        self.stats = DeliveryStats()
        self._held: dict[tuple[int, int], float] = {}
        self._share_dirty = True
        self._partitions_total = 0
        self._producer: AsyncEventProducer | None = None
        self._reader: LedgerReader | None = None
        self.lanes: LaneConsumer | None = None
        self._tasks: dict[asyncio.Task[None], tuple[tuple[int, int], int]] = {}
        self._offsets = PartitionOffsets()
        self._to_commit: dict[tuple[int, int], int] = {}
        self._last_commit = 0.0
        self._failure: BaseException | None = None
        self._unsent = 0
        self._released: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- start / stop -----------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.guard.start)
        if not await asyncio.to_thread(self.guard.wait_ready, self.config.ledger_ready_timeout_s):
            self.guard.stop()
            raise FilasError(
                "delivery: campaign.opt-outs / campaign.definitions not read within "
                f"{self.config.ledger_ready_timeout_s:.0f}s",
                code="delivery_guard_not_ready",
                retriable=True,
            )
        self._producer = AsyncEventProducer(
            build_producer(self.settings, catalog=self.catalog, serdes=self._serdes)
        )
        self._reader = LedgerReader(
            self.settings.kafka,
            self.ledger_spec,
            self._serdes(self.ledger_spec),
            self.config.ledger_ready_timeout_s,
        )
        ledger_partitions = await asyncio.to_thread(self._reader.partition_count)
        for spec in self.lane_specs:
            if spec.partitions != ledger_partitions:
                raise ConfigurationError(
                    f"{spec.name} has {spec.partitions} partitions in the catalog but the ledger "
                    f"{self.ledger_spec.name} has {ledger_partitions}: they must match "
                    "(docs/decisions/0077)"
                )
        self._partitions_total = sum(s.partitions for s in self.lane_specs)
        self.lanes = LaneConsumer(
            self.settings.kafka.client_config(),
            self.group_id,
            self.lane_specs,
            listener=self,
            extra_config={"session.timeout.ms": self.config.session_timeout_ms},
        )
        self._loop = asyncio.get_running_loop()
        self.lanes.subscribe()
        self._apply_share()

    async def close(self) -> None:
        with contextlib.suppress(FilasError):
            await self.drain()
        if self.lanes is not None:
            await asyncio.to_thread(self.lanes.close)
            self.lanes = None
        if self._producer is not None:
            await self._producer.aclose()
            self._producer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await asyncio.to_thread(self.guard.stop)
        await self.channel.close()
        if self._own_serdes:
            self._serdes.close()

    # -- rebalance (called from inside LaneConsumer.poll, on the poll thread) --------------------

    def _assigned_anywhere(self, excluding: tuple[int, set[int]] | None = None) -> set[int]:
        assert self.lanes is not None
        out: set[int] = set()
        for lane in range(len(self.lane_specs)):
            assigned = set(self.lanes.assignment(lane))
            if excluding is not None and excluding[0] == lane:
                assigned -= excluding[1]
            out |= assigned
        return out

    def on_assign(self, lane: int, spec: TopicSpec, partitions: list[int]) -> None:
        assert self._reader is not None
        # Entries written by the partitions' previous owner, up to now, before any message.
        read = self._reader.catch_up(self.ledger, partitions)
        logger.info("delivery: %s assigned %s; ledger read %d entries", spec.name, partitions, read)
        self._share_dirty = True

    def on_revoke(self, lane: int, spec: TopicSpec, partitions: list[int]) -> None:
        assert self.lanes is not None
        assert self._loop is not None
        keys = {(lane, p) for p in partitions}
        tasks = [t for t, (key, _offset) in self._tasks.items() if key in keys]
        if tasks:
            # The loop is free (it awaits this poll): let these sends finish, then commit them.
            asyncio.run_coroutine_threadsafe(_wait_all(tasks), self._loop).result()
        for key, next_offset in self._offsets.ready().items():
            self._to_commit[key] = next_offset
        finished = {
            p: o for (ln, p), o in self._to_commit.items() if ln == lane and p in partitions
        }
        self.lanes.commit(lane, finished)
        for key in keys:
            self._to_commit.pop(key, None)
            self._offsets.forget(key)
            self._held.pop(key, None)
        # Called before the lane forgets these partitions: keep the ledger partitions another
        # lane still owns (the ledger is shared by the lanes' equal partition numbers).
        kept = self._assigned_anywhere(excluding=(lane, set(partitions)))
        self.ledger.drop(set(partitions) - kept)
        logger.info("delivery: %s revoked %s", spec.name, partitions)
        self._share_dirty = True

    def _apply_share(self) -> None:
        """Rate and concurrency = configured x assigned partitions / all lane partitions."""
        if not self._share_dirty or self.lanes is None:
            return
        self._share_dirty = False
        assigned = sum(len(self.lanes.assignment(i)) for i in range(len(self.lane_specs)))
        total = self._partitions_total
        limit = self.channel_config.rate_per_s
        if limit is not None:
            self.limiter.set_rate(share(limit, assigned, total))
        concurrency = share(self.channel_config.concurrency, assigned, total)
        self.concurrency.resize(max(1, math.ceil(concurrency)) if assigned else 0)
        rate = self.limiter.rate
        RATE_LIMIT_RATE.labels(COMPONENT, self.channel_name).set(-1 if rate is None else rate)
        logger.info(
            "delivery: %s share %d/%d partitions: rate %s/s, concurrency %d",
            self.channel_name,
            assigned,
            total,
            "unlimited" if rate is None else f"{rate:.2f}",
            self.concurrency.size,
        )

    # -- the loop ---------------------------------------------------------------------------------

    def _limits(self) -> list[int]:
        return [self.config.max_batch] + [self._window()] * (len(self.lane_specs) - 1)

    def _window(self) -> int:
        """Messages in flight at most: about ``lower_lane_batch_s`` of work at this instance's
        rate (a higher-lane message waits for no more than that), at least the concurrency."""
        rate = self.limiter.rate
        if rate is None:
            window = self.concurrency.size * 4
        else:
            window = max(self.concurrency.size, math.ceil(rate * self.config.lower_lane_batch_s))
        return max(1, min(self.config.max_batch, window))

    def _resume_due(self) -> None:
        if not self._held or self.lanes is None:
            return
        now_ms = time.time() * 1000
        for (lane, p), at in list(self._held.items()):
            if at <= now_ms:
                del self._held[(lane, p)]
                if p in self.lanes.assignment(lane):
                    self.lanes.resume(lane, [p])

    async def run_once(self, timeout_s: float = 0.5) -> int:
        """Top up the in-flight window from the highest lane with records, then commit what
        finished; returns how many messages were taken."""
        assert self.lanes is not None
        self._raise_failure()
        self._resume_due()
        # The window counts messages not yet handed to the provider (what a higher-lane message
        # would queue behind); messages waiting only for Kafka acks count towards a hard cap.
        free = min(
            self._window() - self._unsent,
            self.config.max_batch * MAX_IN_FLIGHT_BATCHES - len(self._tasks),
        )
        taken = 0
        if free > 0:
            limits = [max(1, min(limit, free)) for limit in self._limits()]
            # With sends in flight, only look (no wait): the loop must keep feeding them.
            wait = 0.0 if self._tasks else timeout_s
            batch = await asyncio.to_thread(self.lanes.poll, limits, wait)
            self._apply_share()
            if batch is not None:
                taken = self._dispatch(batch)
            elif self._tasks:
                await asyncio.wait(set(self._tasks), timeout=0.01, return_when=FIRST_COMPLETED)
        else:
            await asyncio.wait(set(self._tasks), timeout=0.05, return_when=FIRST_COMPLETED)
        await asyncio.sleep(0)
        self._raise_failure()
        await self._commit_ready()
        RATE_LIMIT_TOKENS.labels(COMPONENT, self.channel_name).set(min(self.limiter.tokens(), 1e9))
        QUEUE_DEPTH.labels(COMPONENT, "in_flight").set(len(self._tasks))
        return taken

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.run_once()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _dispatch(self, batch: LaneBatch) -> int:
        """Start a task per message of this channel; hold partitions whose message is not due."""
        assert self.lanes is not None
        spec = batch.spec
        serde = self._serdes(spec)
        held: set[int] = set()
        now_ms = time.time() * 1000
        taken = 0
        events_in = self._events_in[spec.name]
        for msg in batch.messages:
            p, offset = msg.partition(), msg.offset()
            if p in held:
                continue
            events_in.inc()
            key = (batch.lane, p)
            try:
                record = serde.deserialize(msg.value())
            except FilasError as exc:
                self.stats.undecodable += 1
                self._start(key, offset, self._dead_letter(spec, msg, exc))
                continue
            if str(record["channel"]) != self.channel_name:
                self.stats.other_channel += 1
                self._offsets.add(key, offset)
                self._offsets.done(key, offset)
                continue
            not_before = _ms(record.get("not_before"))
            if not_before - now_ms > self.config.hold_ahead_s * 1000:
                # Not due: put it (and the rest of its partition) back and hold the partition.
                self.stats.held += 1
                held.add(p)
                self._hold(batch.lane, p, offset, not_before)
                continue
            verdict = self.guard.rules.verdict(record, self.channel_name)
            if verdict is not None and verdict.status == PAUSED:
                # Paused campaign: held, not dropped; looked at again until resumed or
                # cancelled (the partition's later messages wait behind it: decision 0078).
                self.stats.held_paused += 1
                held.add(p)
                self._hold(batch.lane, p, offset, now_ms + PAUSED_RECHECK_S * 1000)
                continue
            self._unsent += 1
            self._start(key, offset, self._deliver_once(spec, msg, record))
            taken += 1
        return taken

    def _hold(self, lane: int, partition: int, offset: int, until_ms: float) -> None:
        assert self.lanes is not None
        self.lanes.seek(lane, partition, offset)
        self.lanes.pause(lane, [partition])
        self._held[(lane, partition)] = until_ms

    def _start(self, key: tuple[int, int], offset: int, work: Coroutine[Any, Any, None]) -> None:
        self._offsets.add(key, offset)
        task = asyncio.create_task(work)
        self._tasks[task] = (key, offset)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        key, offset = self._tasks.pop(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # Not marked done: its offset is never committed; the worker stops and a replay
            # goes through the ledger.
            logger.error("delivery: message at %s offset %d failed: %r", key, offset, exc)
            if self._failure is None:
                self._failure = exc
            return
        self._offsets.done(key, offset)

    async def _commit_ready(self, force: bool = False) -> None:
        assert self.lanes is not None
        for key, next_offset in self._offsets.ready().items():
            self._to_commit[key] = next_offset
        now = time.monotonic()
        if not self._to_commit or (not force and now - self._last_commit < COMMIT_EVERY_S):
            return
        self._last_commit = now
        pending, self._to_commit = self._to_commit, {}
        by_lane: dict[int, dict[int, int]] = {}
        for (lane, p), next_offset in pending.items():
            by_lane.setdefault(lane, {})[p] = next_offset
        for lane, offsets in by_lane.items():
            if force:
                await asyncio.to_thread(self.lanes.commit, lane, offsets)
            else:
                # Asynchronous: a lost commit replays only messages the ledger marks done.
                self.lanes.commit(lane, offsets, asynchronous=True)

    async def drain(self) -> None:
        """Wait for every message in flight and commit."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        await asyncio.sleep(0)
        if self.lanes is not None:
            await self._commit_ready(force=True)

    # -- one message ------------------------------------------------------------------------------

    async def _deliver_once(self, spec: TopicSpec, msg: Message, record: Mapping[str, Any]) -> None:
        try:
            await self._deliver(spec, msg, record)
        finally:
            self._release_unsent()

    def _release_unsent(self) -> None:
        task = asyncio.current_task()
        if task is not None and task not in self._released:
            self._released.add(task)
            self._unsent -= 1

    async def _deliver(self, spec: TopicSpec, msg: Message, record: Mapping[str, Any]) -> None:
        started = time.perf_counter()
        p = msg.partition()
        message_id = str(record["message_id"])
        entry = self.ledger.get(p, message_id)
        if entry is not None and entry.state == DONE:
            self.stats.already_done += 1
            return
        if entry is not None and entry.state == SENDING:
            if self.config.on_ambiguous == "skip":
                self.stats.ambiguous_skipped += 1
                result = SendResult(
                    Outcome.PERMANENT,
                    None,
                    "ambiguous: a worker stopped between 'sending' and the outcome; "
                    "not resent (delivery.on_ambiguous=skip)",
                )
                await self._finish(spec, msg, record, "unknown", result, entry.attempt)
                return
            self.stats.ambiguous_resent += 1
        out = OutgoingMessage(
            message_id=message_id,
            campaign_id=str(record["campaign_id"]),
            recipient_id=str(record["recipient_id"]),
            address=str(record["address"]),
            subject=record.get("subject"),
            body=str(record["body"]),
        )
        expires = record.get("expires_at")
        if expires is not None and _ms(expires) <= time.time() * 1000:
            self.stats.expired += 1
            await self._finish(spec, msg, record, "expired", SendResult(Outcome.PERMANENT), 0)
            return
        wait_s = (_ms(record.get("not_before")) - time.time() * 1000) / 1000
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        await self._send_with_retries(spec, msg, record, out, started)

    async def _send_with_retries(
        self,
        spec: TopicSpec,
        msg: Message,
        record: Mapping[str, Any],
        out: OutgoingMessage,
        started: float,
    ) -> None:
        attempts = 0
        first_try = time.monotonic()
        marker: asyncio.Future[None] | None = None
        holds_unacked = False
        try:
            while True:
                verdict = self.guard.rules.verdict(record, self.channel_name)
                if verdict is not None and verdict.status != PAUSED:
                    # Opted out / cancelled since fan-out (or since the last attempt).
                    if marker is not None:
                        await marker
                    await self._skip(spec, msg, record, verdict, attempts)
                    return
                if attempts == 0:
                    capped = self._frequency_cap(msg.partition(), record)
                    if capped is not None:
                        await self._skip(spec, msg, record, capped, attempts)
                        return
                attempts += 1
                async with self.concurrency:
                    await self.limiter.acquire()
                    if not holds_unacked:
                        # Sent-but-not-recorded messages are what a kill -9 can make ambiguous:
                        # at most max_unacked of them per instance.
                        await self.unacked.acquire()
                        holds_unacked = True
                    result, started_marker = await self._attempt(record, out, attempts)
                    marker = marker or started_marker
                if result.outcome is not Outcome.TEMPORARY:
                    break
                ERRORS.labels(COMPONENT, f"{self.channel_name}_temporary").inc()
                elapsed = time.monotonic() - first_try
                if attempts >= self.config.max_attempts or elapsed >= self.config.retry_budget_s:
                    break
                self.stats.retries += 1
                delay = backoff_delay(
                    attempts,
                    self.config.backoff_initial_s,
                    self.config.backoff_max_s,
                    self._rng,
                    result.retry_after_s,
                )
                await asyncio.sleep(min(delay, max(0.0, self.config.retry_budget_s - elapsed)))
            if marker is not None:
                await marker
            if result.outcome is Outcome.SENT:
                self.stats.sent += 1
                status = "sent"
            elif result.outcome is Outcome.PERMANENT:
                self.stats.permanent += 1
                status = "permanent_failure"
            else:
                self.stats.exhausted += 1
                status = "temporary_failure"
            await self._finish(spec, msg, record, status, result, attempts)
            self._message_seconds.observe(time.perf_counter() - started)
        finally:
            if holds_unacked:
                await self.unacked.release()

    async def _attempt(
        self,
        record: Mapping[str, Any],
        out: OutgoingMessage,
        attempts: int,
    ) -> tuple[SendResult, asyncio.Future[None] | None]:
        """One call to the provider (inside a concurrency slot, with a rate token); the first
        attempt also starts the ledger's ``sending`` entry (returned to be awaited later)."""
        marker = None
        if attempts == 1 and self.config.on_ambiguous == "skip":
            # At-most-once needs to know a send may have happened: 'sending' is acknowledged
            # before the provider is called. Under resend it is not written at all: a message
            # without a 'done' entry is sent (again) whether or not it has one.
            marker = asyncio.ensure_future(self._ledger_write(record, SENDING, None, attempts))
            await marker
        dep_start = time.perf_counter()
        result = await self.channel.send(out)
        self._release_unsent()
        self._provider_seconds.observe(time.perf_counter() - dep_start)
        return result, marker

    def _frequency_cap(self, partition: int, record: Mapping[str, Any]) -> Verdict | None:
        """The campaign's per-recipient cap, checked against what this partition's recipients
        were sent in the last 24 h (decision 0074); not capped: the send is counted now, before
        any await, so two messages of one recipient in flight together are counted exactly."""
        key = (str(record["recipient_id"]), self.channel_name, str(record["lane"]))
        campaign = str(record["campaign_id"])
        now_ms = int(time.time() * 1000)
        cap = record.get("frequency_cap_per_day")
        if cap is not None:
            sent = self.ledger.sends.count(partition, key, now_ms, campaign)
            if sent >= int(cap):
                return Verdict(
                    SKIPPED_FREQUENCY_CAP,
                    f"frequency cap: {sent} message(s) of other campaigns in the last 24 h "
                    f"(cap {cap})",
                )
        self.ledger.sends.add(partition, key, str(record["message_id"]), campaign, now_ms)
        return None

    async def _skip(
        self,
        spec: TopicSpec,
        msg: Message,
        record: Mapping[str, Any],
        verdict: Verdict,
        attempts: int,
    ) -> None:
        """A final 'not sent' outcome: result event + ``done`` entry, so it is never retried."""
        if verdict.status == "cancelled":
            self.stats.cancelled += 1
        elif verdict.status == SKIPPED_FREQUENCY_CAP:
            self.stats.skipped_frequency_cap += 1
        else:
            self.stats.skipped_opt_out += 1
        DELIVERY_SKIPPED.labels(COMPONENT, self.channel_name, verdict.status).inc()
        await self._finish(
            spec,
            msg,
            record,
            verdict.status,
            SendResult(Outcome.PERMANENT, None, verdict.reason),
            attempts,
        )

    async def _finish(
        self,
        spec: TopicSpec,
        msg: Message,
        record: Mapping[str, Any],
        status: str,
        result: SendResult,
        attempts: int,
    ) -> None:
        """DeliveryResult and the ``done`` ledger entry (both acknowledged); DLQ on failure."""
        assert self._producer is not None
        now = datetime.now(UTC)
        latency = max(0, int(now.timestamp() * 1000) - _ms(record.get("not_before")))
        event = {
            "envelope": envelope(COMPONENT, correlation_id=str(record["campaign_id"])),
            "message_id": str(record["message_id"]),
            "campaign_id": str(record["campaign_id"]),
            "recipient_id": str(record["recipient_id"]),
            "channel": self.channel_name,
            "status": status,
            "provider": self.channel.provider,
            "provider_message_id": result.provider_message_id,
            "provider_response_code": result.code,
            "provider_response_text": result.text,
            "attempts": attempts,
            "latency_ms": latency,
            "cost": None,
            "finished_at": now,
        }
        writes = [
            self._producer.emit(self.results_spec, event),
            self._ledger_write(record, DONE, status, attempts),
        ]
        failed = status in ("permanent_failure", "temporary_failure", "unknown")
        if failed:
            code = (
                "delivery_retries_exhausted"
                if status == "temporary_failure"
                else "delivery_ambiguous_skipped"
                if status == "unknown"
                else "delivery_permanent_failure"
            )
            reason = f"{self.channel.provider}: {result.code or '-'} {result.text or ''}".strip()
            writes.append(self._dead_letter(spec, msg, FilasError(reason, code=code)))
        await asyncio.gather(*writes)
        self._results_out.inc()

    async def _ledger_write(
        self, record: Mapping[str, Any], state: str, status: str | None, attempt: int
    ) -> None:
        assert self._producer is not None
        entry = {
            "envelope": envelope(COMPONENT, correlation_id=str(record["campaign_id"])),
            "message_id": str(record["message_id"]),
            "recipient_id": str(record["recipient_id"]),
            "channel": self.channel_name,
            "state": state,
            "status": status,
            "attempt": attempt,
            "worker": self.instance,
            "written_at": datetime.now(UTC),
            "campaign_id": str(record["campaign_id"]),
            "lane": str(record["lane"]),
        }
        delivery = await self._producer.emit(self.ledger_spec, entry)
        self.ledger.record(delivery.partition, str(record["message_id"]), entry_of(entry))

    async def _dead_letter(self, spec: TopicSpec, msg: Message, error: FilasError) -> None:
        assert self._producer is not None
        _kind, stamp = msg.timestamp()
        source = SourceRecord(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp_ms=stamp if stamp and stamp > 0 else None,
            key=msg.key(),
            value=msg.value(),
        )
        await self._producer.emit(
            self.catalog.dead_letter_for(spec), dead_letter(source, error, COMPONENT)
        )
        DEAD_LETTERS.labels(COMPONENT, spec.name).inc()
