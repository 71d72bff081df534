"""An in-memory view of ``requests.status``: the status URL's source and the workers' ledger.

A daemon thread reads every partition of the compacted status topic from the beginning and
keeps the latest record per request id, with one rule: ``QUEUED`` (written only by an ingress)
never replaces a state written by a worker. The ingress writes ``QUEUED`` and the request at
the same time, and two ingress instances accepting the same Idempotency-Key both write
``QUEUED``: either may land after a worker's state (docs/decisions/0081). ``last_raw_state``
keeps what the topic really ends with and ``on_stale`` tells a worker, which re-emits the true
state so compaction keeps it, not the stale ``QUEUED``.

Writers also ``put`` their own records as soon as the broker acknowledged them, so a client
reading its status from the instance that accepted the request never sees it missing.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from filas.catalog import TopicSpec
from filas.errors import BrokerUnavailableError, FilasError
from filas.settings import KafkaSettings

log = logging.getLogger(__name__)

QUEUED = "QUEUED"
RUNNING = "RUNNING"
DONE = "DONE"
FAILED = "FAILED"
DEAD_LETTERED = "DEAD_LETTERED"
# A worker never runs these again (DEAD_LETTERED is retried when its record is replayed).
FINAL = frozenset({DONE, FAILED})

Decoder = Callable[[bytes], Mapping[str, Any]]


class StatusView:
    """``get(request_id)`` -> latest status record (a dict) or None. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._raw_state: dict[str, str] = {}
        # Called (outside the lock) with the kept record when a QUEUED lands over a worker's
        # state: a worker re-emits it so the topic ends with the real state again.
        self.on_stale: Callable[[dict[str, Any]], None] | None = None

    def put(self, record: Mapping[str, Any]) -> None:
        request_id = str(record["request_id"])
        state = str(record["state"])
        stale = None
        with self._lock:
            self._raw_state[request_id] = state
            current = self._records.get(request_id)
            if state == QUEUED and current is not None and current["state"] != QUEUED:
                stale = dict(current)
            else:
                self._records[request_id] = dict(record)
        if stale is not None and self.on_stale is not None:
            self.on_stale(stale)

    def get(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(request_id)
            return None if record is None else dict(record)

    def last_raw_state(self, request_id: str) -> str | None:
        with self._lock:
            return self._raw_state.get(request_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


class StatusTail:
    """Feeds a ``StatusView`` from the status topic in a daemon thread (own throwaway group,
    partitions assigned, never committed). ``wait_ready`` returns once the start-up high
    watermarks are reached."""

    def __init__(
        self,
        kafka: KafkaSettings,
        spec: TopicSpec,
        decode: Decoder,
        view: StatusView | None = None,
        *,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.view = view or StatusView()
        self._spec = spec
        self._decode = decode
        self._conf = (
            dict(kafka.client_config())
            | {
                "group.id": f"filas-requests-view-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
            | dict(consumer_config or {})
        )
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def start(self) -> StatusTail:
        consumer = Consumer(self._conf)
        try:
            topic = consumer.list_topics(self._spec.name, timeout=10).topics.get(self._spec.name)
        except KafkaException as exc:
            consumer.close()
            raise BrokerUnavailableError(f"status view: no broker answered ({exc})") from exc
        if topic is None or topic.error is not None:
            consumer.close()
            raise FilasError(
                f"status view: topic {self._spec.name!r} missing; run 'filas topics apply'",
                code="requests_status_topic_missing",
            )
        pending: dict[int, int] = {}
        assignment = []
        for p in sorted(topic.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self._spec.name, p), timeout=10
            )
            if high > low:
                pending[p] = high
            assignment.append(TopicPartition(self._spec.name, p, OFFSET_BEGINNING))
        consumer.assign(assignment)
        if not pending:
            self._ready.set()
        self._thread = threading.Thread(
            target=self._run, args=(consumer, pending), name="filas-requests-view", daemon=True
        )
        self._thread.start()
        return self

    def _run(self, consumer: Consumer, pending: dict[int, int]) -> None:
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(num_messages=500, timeout=0.1):
                    if msg.error():
                        continue
                    value = msg.value()
                    if value is not None:
                        try:
                            self.view.put(self._decode(value))
                        except FilasError as exc:
                            self.errors.append(exc.code)
                            log.warning("status view: unreadable record skipped: %s", exc.code)
                    p = msg.partition()
                    if p in pending and msg.offset() + 1 >= pending[p]:
                        del pending[p]
                        if not pending:
                            self._ready.set()
        finally:
            consumer.close()

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


def wait_for(
    view: StatusView, request_id: str, states: frozenset[str], timeout_s: float
) -> dict[str, Any] | None:
    """Poll ``view`` until the request reaches one of ``states`` (tests and benches)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = view.get(request_id)
        if record is not None and record["state"] in states:
            return record
        time.sleep(0.02)
    return view.get(request_id)
