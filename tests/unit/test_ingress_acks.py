"""``AckWaiter`` (decision 0084): one future per request, resolved only when every record is
acknowledged; a failed record fails the request; reports are served by the loop's own polls."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import pytest

from filas.catalog import TopicSpec
from filas.errors import BackpressureTimeoutError, DeliveryError
from producers.ingress.service import AckWaiter
from producers.sdk import EventProducer

SPEC = TopicSpec(name="t", value_schema="x.Y", key_field="id", partitions=1, description="test")


class Err:
    def str(self) -> str:
        return "Broker: not enough replicas"

    def retriable(self) -> bool:
        return True


class Msg:
    def topic(self) -> str:
        return "t"


class FakeProducer:
    """Queues delivery callbacks; ``outcomes`` says which produced record fails."""

    backpressure_timeout_s = 0.05

    def __init__(self, outcomes: list[bool] | None = None, full: bool = False) -> None:
        self.outcomes = outcomes or []
        self.full = full
        self.queued: list[Callable[[Any, Any], None]] = []
        self.produced = 0
        self.polls = 0

    def encode(self, spec: TopicSpec, record: Mapping[str, Any]) -> tuple[str, str, bytes]:
        return spec.name, str(record["id"]), b"v"

    def try_produce(self, name: str, key: str, value: bytes, cb: Callable[..., None]) -> bool:
        if self.full:
            return False
        self.queued.append(cb)
        self.produced += 1
        return True

    def poll(self, _timeout: float = 0) -> int:
        self.polls += 1
        served, self.queued = self.queued, []
        for cb in served:
            ok = self.outcomes.pop(0) if self.outcomes else True
            cb(None if ok else Err(), Msg())
        return len(served)

    def backpressure_error(self) -> BackpressureTimeoutError:
        return BackpressureTimeoutError("queue full")

    def flush(self, _timeout: float = 30) -> None:
        self.poll()


def waiter(fake: FakeProducer) -> AckWaiter:
    return AckWaiter(cast(EventProducer, fake))


async def test_one_request_waits_for_both_acks_served_by_the_loop() -> None:
    fake = FakeProducer()
    acks = waiter(fake)
    request = asyncio.create_task(acks.produce([(SPEC, {"id": 1}), (SPEC, {"id": 1})]))
    await asyncio.sleep(0)
    assert fake.produced == 2
    assert not request.done()  # produced, not yet acknowledged
    await asyncio.wait_for(request, 5)
    assert fake.polls >= 1
    # Idle: no timer keeps polling.
    polls = fake.polls
    await asyncio.sleep(0.01)
    assert fake.polls == polls
    await acks.aclose()


async def test_a_failed_record_fails_the_request() -> None:
    fake = FakeProducer(outcomes=[True, False])
    acks = waiter(fake)
    with pytest.raises(DeliveryError) as failed:
        await asyncio.wait_for(acks.produce([(SPEC, {"id": 1}), (SPEC, {"id": 1})]), 5)
    assert failed.value.retriable
    # The next request is not affected.
    await asyncio.wait_for(acks.produce([(SPEC, {"id": 2})]), 5)


async def test_concurrent_requests_each_resolve() -> None:
    fake = FakeProducer()
    acks = waiter(fake)
    await asyncio.wait_for(
        asyncio.gather(*(acks.produce([(SPEC, {"id": i}), (SPEC, {"id": i})]) for i in range(50))),
        5,
    )
    assert fake.produced == 100


async def test_a_request_produced_while_others_wait_serves_their_reports() -> None:
    """Decision 0127: under load the tick runs late; each new request first serves the reports
    already in, so an earlier request is answered without waiting for the tick."""
    fake = FakeProducer()
    acks = AckWaiter(cast(EventProducer, fake), interval_s=3600.0)  # the tick never comes
    first = asyncio.create_task(acks.produce([(SPEC, {"id": 1}), (SPEC, {"id": 1})]))
    await asyncio.sleep(0)
    assert fake.polls == 0
    assert not first.done()
    second = asyncio.create_task(acks.produce([(SPEC, {"id": 2})]))
    await asyncio.wait_for(first, 5)
    assert fake.polls == 1
    assert not second.done()
    await acks.aclose()  # flush serves the rest
    await asyncio.wait_for(second, 5)


async def test_a_full_queue_gives_up_loudly_without_blocking_the_loop() -> None:
    acks = waiter(FakeProducer(full=True))
    with pytest.raises(BackpressureTimeoutError):
        await asyncio.wait_for(acks.produce([(SPEC, {"id": 1})]), 5)


def test_own_echo_is_returned_without_decoding_and_equals_the_decoded_record() -> None:
    """The status view's tail gets this instance's QUEUED back without an Avro decode, and
    what it gets is exactly what decoding would have given (so the status URL is the same)."""
    from fastavro import schemaless_reader

    from consumers.ixc_requests.status_view import StatusView
    from filas.settings import IngressSettings
    from producers.ingress.app import Ingress, status_body
    from producers.ingress.request_types import parse_submission
    from producers.ingress.service import OwnEchoes
    from schemas.catalog import SchemaCatalog
    from schemas.fast_writer import compile_encoder

    schema = SchemaCatalog.load().get("ixc.filas.request.RequestStatus")
    encode = compile_encoder(schema.parsed, schema.named_types)

    def avro_decode(value: bytes) -> Mapping[str, Any]:
        import io

        record: Mapping[str, Any] = schemaless_reader(io.BytesIO(value), schema.parsed, None)
        return record

    decoded: list[bytes] = []

    def decode(value: bytes) -> Mapping[str, Any]:
        decoded.append(value)
        return avro_decode(value)

    ingress = Ingress(
        IngressSettings(), cast(Any, None), StatusView(), clock=lambda: 1.7e9 + 0.1234567
    )
    valid = parse_submission({"type": "trust_unblock", "params": {"contract_id": "42"}})
    ids = [str(uuid.uuid4()) for _ in range(3)]
    status, _request = ingress._records(ids[0], "noc", valid, "k", ids[1:])
    value = encode(status)
    back = avro_decode(value)
    # What the ingress reads from a record (the status URL's body, the idempotency checks) is
    # the same for the echo and the decoded record: timestamps are whole milliseconds.
    assert status_body(back, "http://x") == status_body(status, "http://x")
    for field in ("client_id", "fingerprint", "state", "error_code", "submitted_at"):
        assert back[field] == status[field]

    echoes = OwnEchoes(decode, limit=1)
    echoes.expect(value, status)
    echoes.expect(b"other", status)  # past the limit: not remembered
    assert len(echoes) == 1
    assert echoes(value) is status
    assert decoded == []
    assert echoes(value) == back  # a second read decodes
    assert decoded == [value]
    echoes.expect(value, status)
    echoes.forget(value)  # a failed produce
    assert len(echoes) == 0


@pytest.mark.parametrize("key", [None, "k-1"])
@pytest.mark.parametrize(
    "body",
    [
        {"type": "resend_invoice", "params": {"contract_id": "12345", "channel": "email"}},
        {"type": "open_ticket", "params": {"customer_id": "7", "subject": "Sem sinal ção",
                                           "message": "caiu às 10h", "kind": "service_order"}},
        {"type": "payment_confirmation", "lane": "bulk",
         "params": {"contract_id": "9", "amount": "89.90", "method": "pix"}},
    ],
)  # fmt: skip
def test_accept_fast_paths_give_the_same_bytes_and_body(
    body: dict[str, Any], key: str | None
) -> None:
    """Decision 0126: the request record's timestamps are epoch ms (not datetimes), the 202 body
    is built without ``status_body``, the fingerprint is computed once with a prebuilt encoder.
    Same Avro bytes, same answer and same fingerprint as the general paths."""
    import hashlib
    import json
    from datetime import UTC, datetime

    from aiohttp import web

    from consumers.ixc_requests.status_view import StatusView
    from filas.settings import IngressSettings
    from producers.ingress.app import Ingress, status_body
    from producers.ingress.request_types import parse_submission
    from schemas.catalog import SchemaCatalog
    from schemas.fast_writer import compile_encoder

    catalog = SchemaCatalog.load()
    schema = catalog.get("ixc.filas.request.ServiceRequest")
    encode = compile_encoder(schema.parsed, schema.named_types)
    ingress = Ingress(
        IngressSettings(), cast(Any, None), StatusView(), clock=lambda: 1.7e9 + 0.1234567
    )
    valid = parse_submission(body)
    canonical = json.dumps(
        {"type": valid.kind.name, "lane": valid.lane, "params": valid.params},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert valid.fingerprint == hashlib.sha256(canonical.encode()).hexdigest()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    status, request = ingress._records(ids[0], "noc", valid, key, ids[1:])
    now = datetime.fromtimestamp(1_700_000_000, UTC).replace(microsecond=123_000)
    assert status["submitted_at"] == status["updated_at"] == now
    as_datetimes = dict(
        request, submitted_at=now, envelope=dict(request["envelope"], occurred_at=now)
    )
    assert encode(request) == encode(as_datetimes)

    async def accept(base: str) -> dict[str, Any]:
        published: list[Mapping[str, Any]] = []

        class Publisher:
            async def publish(self, status: Mapping[str, Any], _r: Mapping[str, Any]) -> None:
                published.append(status)

        ingress._publisher = cast(Any, Publisher())
        answer = await ingress._enqueue(ids[0], "noc", valid, key, ids[1:], base, None)
        assert answer.status == 202
        assert answer.text is not None
        assert answer.headers["Location"] == f"{base}/v1/requests/{ids[0]}"
        assert published[0]["fingerprint"] == valid.fingerprint
        # Decision 0129: the text and headers web.json_response(status_body(...)) would give.
        general = web.json_response(status_body(status, base), status=202)
        assert answer.text == general.text
        assert answer.content_type == general.content_type
        assert answer.charset == general.charset
        result: dict[str, Any] = json.loads(answer.text)
        return result

    # A Host header as sent (aiohttp does not escape it): quotes, backslash, non-ASCII.
    for base in ("http://x", 'http://h"o\\st\u00e9:8480'):
        assert asyncio.run(accept(base)) == status_body(status, base)
