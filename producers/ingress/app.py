"""The ingress API (aiohttp): submit service requests, read their status.

Routes (spec: ``GET /openapi.json``, kept in the repo as ``producers/ingress/openapi.json``):

- ``POST /v1/requests``            Bearer token; ``{"type", "params", "lane"?}`` -> 202
- ``POST /v1/webhooks/payments``   HMAC-signed payment webhook -> 202 (payment_confirmation)
- ``GET  /v1/requests/{id}``       Bearer token; the request's state, only for its own client
- ``GET  /healthz``, ``GET /metrics``

Accepting a request = ``QUEUED`` on ``requests.status`` and the request on its lane, both
acknowledged by the broker, then 202 (docs/decisions/0081). A bad request gets a 4xx JSON error body
``{"error": {"code", "message", "field"?}}`` and nothing is enqueued.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from consumers.ixc_requests.status_view import QUEUED, StatusView
from filas.errors import FilasError
from filas.metrics import ERRORS, EVENTS_IN, PROCESSING_SECONDS, RATE_LIMIT_TOKENS
from filas.settings import IngressSettings
from producers.ingress.guards import (
    AuthFailure,
    RateLimiter,
    TokenAuth,
    WebhookVerifier,
    retry_after_header,
)
from producers.ingress.openapi import build_spec
from producers.ingress.request_types import (
    BY_SYMBOL,
    LANE_NAMES,
    InvalidRequest,
    ValidRequest,
    parse_payment_webhook,
    parse_submission,
)

log = logging.getLogger(__name__)

COMPONENT = "ingress"
SOURCE_SYSTEM = "filas-ingress"
# uuid5 namespace of request ids derived from (client, Idempotency-Key): fixed forever.
REQUEST_ID_NAMESPACE = uuid.UUID("6f1d2c8e-4b7a-5e39-9a51-2f0c7d1e8b34")
ENQUEUE_FAILED = "enqueue_failed"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_KEY_LENGTH = 255

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Publisher(Protocol):
    """Puts the QUEUED status and the request on the broker; returns after both acks."""

    async def publish(self, status: Mapping[str, Any], request: Mapping[str, Any]) -> None: ...

    async def publish_status(self, status: Mapping[str, Any]) -> None: ...


def _uuid4_text(h: str) -> str:
    """32 random hex digits -> a version 4 UUID as text (the version and variant bits set)."""
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


# The variant's two top bits are 10: the first hex digit of the fourth group is 8, 9, a or b.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def random_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs as text from one ``os.urandom`` call."""
    h = os.urandom(16 * n).hex()
    return [_uuid4_text(h[i : i + 32]) for i in range(0, 32 * n, 32)]


class IdPool:
    """Random (version 4) UUIDs as text, ``os.urandom`` read 4 KiB at a time: the request id
    and both event ids of every accept come from here (a syscall and a formatting pass per
    accept were a visible share of it). One event loop's; not thread-safe."""

    def __init__(self, batch: int = 256) -> None:
        self._batch = batch
        self._ids: list[str] = []

    def take(self, n: int) -> list[str]:
        ids = self._ids
        if len(ids) < n:
            ids.extend(random_ids(self._batch))
        out = ids[-n:]
        del ids[-n:]
        return out


def request_id_for(client: str, idempotency_key: str | None) -> str:
    """Deterministic from (client, key) so every ingress instance derives the same id."""
    if idempotency_key is None:
        return random_ids(1)[0]
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, f"{client}\n{idempotency_key}"))


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=status, headers=headers)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC).isoformat().replace("+00:00", "Z")
    return str(value)


@functools.cache
def _json_str(value: str) -> str:
    """A request type's or lane's name as JSON text (a handful of names: computed once each)."""
    return json.dumps(value)


def status_body(record: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    kind = BY_SYMBOL[str(record["request_type"])]
    code = record.get("error_code")
    return {
        "request_id": str(record["request_id"]),
        "type": kind.name,
        "lane": str(record["lane"]),
        "state": str(record["state"]).lower(),
        "attempts": int(record.get("attempts") or 0),
        "error": None
        if code is None
        else {"code": str(code), "message": str(record.get("error_message") or "")},
        "result": dict(record.get("result") or {}),
        "submitted_at": _iso(record["submitted_at"]),
        "updated_at": _iso(record["updated_at"]),
        "status_url": f"{base_url}/v1/requests/{record['request_id']}",
    }


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is the same JSON shape, including aiohttp's own 404/405/413."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status, "http_error"
        )
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("ingress: unexpected error on %s %s", request.method, request.path)
        ERRORS.labels(component=COMPONENT, kind="unexpected").inc()
        return error_response(500, "internal", "unexpected error; nothing was enqueued")


class Ingress:
    """The API. ``publisher`` and ``view`` are ports: Kafka in production, fakes in unit tests."""

    def __init__(
        self,
        settings: IngressSettings,
        publisher: Publisher,
        view: StatusView,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._publisher = publisher
        self._view = view
        self._clock = clock
        self._tokens = TokenAuth(settings.tokens)
        self._webhooks = WebhookVerifier(settings.webhook_secrets, settings.replay_window_s, clock)
        self._limiter = RateLimiter(
            settings.rate_per_s, settings.rate_burst, settings.client_rates, monotonic
        )
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = IdPool()
        self.ready: Callable[[], bool] = lambda: True
        # Metric children looked up once, not per request.
        self._accept_seconds = PROCESSING_SECONDS.labels(component=COMPONENT, stage="accept")
        self._webhook_seconds = PROCESSING_SECONDS.labels(component=COMPONENT, stage="webhook")
        self._accepted = {
            lane: EVENTS_IN.labels(component=COMPONENT, topic=lane) for lane in LANE_NAMES
        }
        self._tokens_gauges: dict[str, Any] = {}
        self.spec = build_spec()

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body_bytes, middlewares=[json_errors]
        )
        app.router.add_post("/v1/requests", self._submit)
        app.router.add_get("/v1/requests/{request_id}", self._status)
        app.router.add_post("/v1/webhooks/payments", self._payment_webhook)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    # -- routes ----------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            client = self._tokens.client(request.headers.get("Authorization"))
        except AuthFailure as exc:
            return self._unauthorized(exc)
        refused = self._rate_limited(client)
        if refused is not None:
            return refused
        key = request.headers.get("Idempotency-Key")
        try:
            self._check_key(key)
            body = await self._json_body(request)
            valid = parse_submission(body)
        except InvalidRequest as exc:
            return self._invalid(exc)
        response = await self._accept(request, client, valid, key)
        self._accept_seconds.observe(time.perf_counter() - started)
        return response

    async def _payment_webhook(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        raw = await request.read()
        try:
            client = self._webhooks.verify(
                request.headers.get("X-Filas-Gateway"),
                request.headers.get("X-Filas-Timestamp"),
                request.headers.get("X-Filas-Signature"),
                raw,
            )
        except AuthFailure as exc:
            return self._unauthorized(exc)
        refused = self._rate_limited(client)
        if refused is not None:
            return refused
        try:
            body = self._parse_json(raw, request.content_type)
            valid = parse_payment_webhook(body)
        except InvalidRequest as exc:
            return self._invalid(exc)
        # The gateway's payment id is the idempotency key: a gateway retry (new timestamp, new
        # signature) of the same payment returns the first request.
        key = request.headers.get("Idempotency-Key") or f"payment:{valid.params['payment_id']}"
        try:
            self._check_key(key)
        except InvalidRequest as exc:
            return self._invalid(exc)
        response = await self._accept(request, client, valid, key)
        self._webhook_seconds.observe(time.perf_counter() - started)
        return response

    async def _status(self, request: web.Request) -> web.Response:
        try:
            client = self._tokens.client(request.headers.get("Authorization"))
        except AuthFailure as exc:
            return self._unauthorized(exc)
        request_id = request.match_info["request_id"]
        record = self._view.get(request_id)
        if record is None or record["client_id"] != client:
            return error_response(
                404, "unknown_request", f"no request {request_id[:64]!r} for this client"
            )
        return web.json_response(status_body(record, self._base_url(request)))

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.spec)

    async def _health(self, request: web.Request) -> web.Response:
        ready = self.ready()
        return web.json_response({"ok": ready}, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- accepting -------------------------------------------------------------------------

    async def _accept(
        self, request: web.Request, client: str, valid: ValidRequest, key: str | None
    ) -> web.Response:
        base = self._base_url(request)
        if key is None:
            # A random id: no earlier request and no concurrent duplicate can have it.
            request_id, *event_ids = self._ids.take(3)
            return await self._enqueue(request_id, client, valid, None, event_ids, base, None)
        request_id, event_ids = request_id_for(client, key), self._ids.take(2)
        existing = self._view.get(request_id)
        if existing is not None and existing.get("error_code") != ENQUEUE_FAILED:
            return self._replayed(existing, valid, base)
        pending = self._inflight.get(request_id)
        if pending is not None:
            # A concurrent duplicate on this instance: wait for the first and answer the same.
            try:
                first = await asyncio.shield(pending)
            except FilasError as exc:
                return self._unavailable(exc)
            return self._replayed(first, valid, base)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[request_id] = future
        try:
            return await self._enqueue(request_id, client, valid, key, event_ids, base, future)
        finally:
            del self._inflight[request_id]

    async def _enqueue(
        self,
        request_id: str,
        client: str,
        valid: ValidRequest,
        key: str | None,
        event_ids: list[str],
        base: str,
        future: asyncio.Future[dict[str, Any]] | None,
    ) -> web.Response:
        status, record = self._records(request_id, client, valid, key, event_ids)
        try:
            await self._publisher.publish(status, record)
        except FilasError as exc:
            await self._mark_enqueue_failed(status, exc)
            if future is not None:
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise their own copy
            return self._unavailable(exc)
        self._view.put(status)
        if future is not None:
            future.set_result(status)
        self._accepted[valid.lane].inc()
        # The same text as ``json.dumps(status_body(status, base))`` (decision 0129), without
        # reading the record back nor encoding a dict: the id (a UUID) and the time (ISO 8601)
        # need no escaping, the rest is escaped by json.dumps.
        url = f"{base}/v1/requests/{request_id}"
        at = _iso(status["submitted_at"])
        text = (
            f'{{"request_id": "{request_id}", "type": {_json_str(valid.kind.name)}, '
            f'"lane": {_json_str(valid.lane)}, "state": "queued", "attempts": 0, '
            f'"error": null, "result": {{}}, "submitted_at": "{at}", "updated_at": "{at}", '
            f'"status_url": {json.dumps(url)}}}'
        )
        return web.Response(
            text=text, status=202, headers={"Location": url}, content_type="application/json"
        )

    def _records(
        self,
        request_id: str,
        client: str,
        valid: ValidRequest,
        key: str | None,
        event_ids: list[str],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The QUEUED status (kept in the view, so with the datetimes decoding would give) and
        the request (only encoded: its timestamps are the epoch milliseconds Avro keeps)."""
        # Whole milliseconds, as Avro's timestamp-millis keeps them: the record put in the view
        # now is the one read back from the topic later (and the status URL shows the same).
        ms = int(self._clock() * 1000)
        now = _EPOCH + timedelta(milliseconds=ms)
        status_event, request_event = event_ids
        kind, lane, fingerprint = valid.kind.symbol, valid.lane, valid.fingerprint
        request = {
            "envelope": {
                "event_id": request_event,
                "occurred_at": ms,
                "source_system": SOURCE_SYSTEM,
                "correlation_id": request_id,
            },
            "params": valid.params,
            "request_id": request_id,
            "client_id": client,
            "request_type": kind,
            "lane": lane,
            "idempotency_key": key,
            "fingerprint": fingerprint,
            "submitted_at": ms,
        }
        status = {
            "envelope": {
                "event_id": status_event,
                "occurred_at": now,
                "source_system": SOURCE_SYSTEM,
                "correlation_id": request_id,
            },
            "state": QUEUED,
            "attempts": 0,
            "error_code": None,
            "error_message": None,
            "result": {},
            "updated_at": now,
            "request_id": request_id,
            "client_id": client,
            "request_type": kind,
            "lane": lane,
            "idempotency_key": key,
            "fingerprint": fingerprint,
            "submitted_at": now,
        }
        return status, request

    async def _mark_enqueue_failed(self, status: dict[str, Any], exc: FilasError) -> None:
        """The QUEUED status may be on the broker without its request: say so, so a retry with
        the same Idempotency-Key enqueues again instead of returning a request never queued."""
        failed = dict(status, state="FAILED", error_code=ENQUEUE_FAILED, error_message=str(exc))
        try:
            await self._publisher.publish_status(failed)
            self._view.put(failed)
        except FilasError:
            log.warning("ingress: could not record enqueue failure of %s", status["request_id"])

    def _replayed(self, first: Mapping[str, Any], valid: ValidRequest, base: str) -> web.Response:
        if first["fingerprint"] != valid.fingerprint:
            return error_response(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
                field="Idempotency-Key",
            )
        body = status_body(first, base)
        return web.json_response(
            body,
            status=202,
            headers={"Location": body["status_url"], "Idempotent-Replayed": "true"},
        )

    # -- helpers ---------------------------------------------------------------------------

    def _base_url(self, request: web.Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return f"{request.scheme}://{request.host}"

    def _rate_limited(self, client: str) -> web.Response | None:
        wait = self._limiter.take(client)
        if client not in self._tokens_gauges:
            # Read when scraped, not set on every request (a locked write per accept).
            gauge = RATE_LIMIT_TOKENS.labels(component=COMPONENT, limiter=client)
            gauge.set_function(functools.partial(self._limiter.tokens, client))
            self._tokens_gauges[client] = gauge
        if wait <= 0:
            return None
        ERRORS.labels(component=COMPONENT, kind="rate_limited").inc()
        return error_response(
            429,
            "rate_limited",
            f"more than {self._limiter.rate_of(client):g} requests/s; retry later",
            headers={"Retry-After": retry_after_header(wait)},
        )

    @staticmethod
    def _check_key(key: str | None) -> None:
        if key is None:
            return
        if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise InvalidRequest(
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                field="Idempotency-Key",
            )

    async def _json_body(self, request: web.Request) -> object:
        return self._parse_json(await request.read(), request.content_type)

    @staticmethod
    def _parse_json(raw: bytes, content_type: str) -> object:
        if content_type != "application/json":
            raise InvalidRequest("unsupported_media_type", "Content-Type must be application/json")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest("invalid_json", f"the body is not JSON: {exc}") from None

    @staticmethod
    def _unauthorized(exc: AuthFailure) -> web.Response:
        ERRORS.labels(component=COMPONENT, kind=exc.code).inc()
        return error_response(401, exc.code, exc.message, headers={"WWW-Authenticate": "Bearer"})

    @staticmethod
    def _invalid(exc: InvalidRequest) -> web.Response:
        ERRORS.labels(component=COMPONENT, kind="invalid_request").inc()
        status = 415 if exc.code == "unsupported_media_type" else 400
        return error_response(status, exc.code, exc.message, field=exc.field)

    @staticmethod
    def _unavailable(exc: FilasError) -> web.Response:
        ERRORS.labels(component=COMPONENT, kind=exc.code).inc()
        return error_response(
            503,
            "queue_unavailable",
            f"the request could not be queued ({exc.code}); retry with the same Idempotency-Key",
            headers={"Retry-After": "1"},
        )
