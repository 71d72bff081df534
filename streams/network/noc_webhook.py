"""``filas alerts noc-webhook``: NOC_NOTIFY responses POSTed as JSON to the NOC's webhook.

A consumer group over ``net.responses``; each NOC_NOTIFY is POSTed (``Idempotency-Key`` = the
response id, so a replayed one is recognisable) with ``noc_webhook_retries`` retries on
connection errors, timeouts and 5xx/429; a 4xx other than 429, or retries exhausted, puts the
record on ``net.responses.dlq`` with the reason (``filas dlq replay`` re-drives it). The offset
is committed after the POST or the dead letter: at-least-once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException

from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog
from filas.catalog.network import RESPONSES
from filas.errors import ConfigurationError, FilasError
from filas.metrics import DEAD_LETTERS, DEPENDENCY_SECONDS, ERRORS, EVENTS_IN, EVENTS_OUT
from filas.settings import Settings
from producers.sdk import EventProducer
from schemas.dead_letter import SourceRecord, dead_letter

logger = logging.getLogger(__name__)

COMPONENT = "noc-webhook"
_FIELDS = (
    "response_id",
    "alert_id",
    "root_device_id",
    "root_device_name",
    "root_device_type",
    "pop_id",
    "affected_device_count",
    "affected_subscriber_count",
    "outage_started_at",
    "outage_ended_at",
    "summary",
)


class WebhookError(FilasError):
    code = "noc_webhook"


def payload(record: Mapping[str, Any]) -> bytes:
    body: dict[str, Any] = {}
    for name in _FIELDS:
        value = record.get(name)
        body[name] = value.isoformat() if isinstance(value, datetime) else value
    body["resolved"] = record.get("outage_ended_at") is not None
    return json.dumps(body, default=str).encode()


Post = Callable[[bytes, str], int]


def urllib_post(url: str, timeout_s: float) -> Post:
    def post(body: bytes, idempotency_key: str) -> int:
        request = urllib.request.Request(  # noqa: S310 - operator-configured http(s) URL
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise WebhookError(f"NOC webhook unreachable: {exc}", retriable=True) from exc

    return post


def deliver(post: Post, body: bytes, key: str, retries: int, backoff_s: float = 0.5) -> None:
    """POST with retries; raises WebhookError (retriable=False for a refusal)."""
    attempt = 0
    while True:
        try:
            status = post(body, key)
        except WebhookError:
            if attempt >= retries:
                raise
        else:
            if 200 <= status < 300:
                return
            if status != 429 and status < 500:
                raise WebhookError(f"NOC webhook refused the notification: HTTP {status}")
            if attempt >= retries:
                raise WebhookError(f"NOC webhook failing: HTTP {status}", retriable=True)
        attempt += 1
        time.sleep(backoff_s * 2 ** (attempt - 1))


class NocWebhook:
    def __init__(
        self,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        serdes: Serdes | None = None,
        producer: EventProducer | None = None,
        post: Post | None = None,
    ) -> None:
        ping = settings.ping
        if post is None:
            if ping.noc_webhook_url is None:
                raise ConfigurationError("FILAS_PING__NOC_WEBHOOK_URL is not set")
            post = urllib_post(ping.noc_webhook_url.get_secret_value(), ping.noc_webhook_timeout_s)
        self._post = post
        self.settings = settings
        self.catalog = catalog or Catalog.build(settings.topics.prefix)
        self._serdes = serdes or build_serdes(settings)
        self._spec = self.catalog.resolve(RESPONSES)
        self._dlq = self.catalog.dead_letter_for(RESPONSES)
        self._decode = self._serdes(self._spec).deserialize
        self._producer = producer or build_producer(
            settings, catalog=self.catalog, serdes=self._serdes
        )
        conf = dict(settings.kafka.client_config()) | {
            "group.id": settings.topics.prefix + ping.noc_webhook_group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._consumer = Consumer(conf)
        self._consumer.subscribe([self._spec.name])
        self.sent = 0
        self.dead_letters = 0
        self.run_id = uuid.uuid4().hex[:8]

    def run_once(self, timeout_s: float = 0.5) -> int:
        msg = self._consumer.poll(timeout_s)
        if msg is None or msg.error():
            return 0
        EVENTS_IN.labels(COMPONENT, self._spec.name).inc()
        try:
            record = self._decode(msg.value())
            if record["kind"] == "NOC_NOTIFY":
                start = time.perf_counter()
                try:
                    deliver(
                        self._post,
                        payload(record),
                        str(record["response_id"]),
                        self.settings.ping.noc_webhook_retries,
                    )
                finally:
                    DEPENDENCY_SECONDS.labels(COMPONENT, "noc_webhook").observe(
                        time.perf_counter() - start
                    )
                self.sent += 1
                EVENTS_OUT.labels(COMPONENT, "noc_webhook").inc()
        except FilasError as exc:
            ERRORS.labels(COMPONENT, exc.code).inc()
            timestamp = msg.timestamp()[1]
            source = SourceRecord(
                msg.topic(),
                msg.partition(),
                msg.offset(),
                timestamp if timestamp > 0 else None,
                msg.key(),
                msg.value(),
            )
            self._producer.emit_sync(self._dlq, dead_letter(source, exc, COMPONENT))
            self.dead_letters += 1
            DEAD_LETTERS.labels(COMPONENT, self._spec.name).inc()
            logger.error("noc webhook: dead-lettered %s@%d: %s", msg.topic(), msg.offset(), exc)
        self._consumer.commit(message=msg, asynchronous=False)
        return 1

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, KafkaException):
            self._consumer.close()
        with contextlib.suppress(FilasError):
            self._producer.flush(10)
