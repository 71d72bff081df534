"""Ingress without a network: request validation, token/HMAC guards, rate limits, the
idempotency rules and error bodies over aiohttp's in-process server, with a fake publisher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from consumers.ixc_requests.status_view import StatusView
from filas.errors import BrokerUnavailableError
from filas.settings import IngressSettings
from producers.ingress.app import Ingress, request_id_for
from producers.ingress.guards import AuthFailure, RateLimiter, WebhookVerifier, sign
from producers.ingress.openapi import SPEC_PATH, render
from producers.ingress.request_types import InvalidRequest, parse_submission

TOKEN = "tok-noc"
SECRET = "gw-secret"


class FakePublisher:
    def __init__(self) -> None:
        self.requests: list[Mapping[str, Any]] = []
        self.statuses: list[Mapping[str, Any]] = []
        self.delay = 0.0
        self.fail = False

    async def publish(self, status: Mapping[str, Any], request: Mapping[str, Any]) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise BrokerUnavailableError("down")
        self.statuses.append(status)
        self.requests.append(request)

    async def publish_status(self, status: Mapping[str, Any]) -> None:
        self.statuses.append(status)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def settings(**over: Any) -> IngressSettings:
    values: dict[str, Any] = {
        "tokens": {"noc": SecretStr(TOKEN)},
        "webhook_secrets": {"pix-gw": SecretStr(SECRET)},
        "rate_per_s": 1000.0,
        "rate_burst": 1000,
    }
    return IngressSettings(**(values | over))


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, FakePublisher, Clock]]:
    publisher, clock = FakePublisher(), Clock()
    ingress = Ingress(settings(client_rates={"slow": 1.0}), publisher, StatusView(), clock=clock)
    runner = web.AppRunner(ingress.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client, publisher, clock
    await runner.cleanup()


AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNBLOCK = {"type": "trust_unblock", "params": {"contract_id": "42"}}


def test_submission_validation_names_the_field() -> None:
    assert parse_submission(UNBLOCK).lane == "high"
    assert parse_submission({"type": "resend_invoice", "params": {"contract_id": "1"}}).lane == (
        "bulk"
    )
    cases = [
        ({"params": {}}, "missing", "type"),
        ({"type": "reboot", "params": {}}, "unknown_type", "type"),
        ({"type": "trust_unblock", "params": {}}, "missing", "params.contract_id"),
        ({"type": "trust_unblock", "params": {"contract_id": "0"}}, "invalid_id", None),
        ({"type": "trust_unblock", "params": {"contract_id": 7}}, "wrong_type", None),
        (
            {"type": "trust_unblock", "params": {"contract_id": "1", "x": "1"}},
            "unknown_field",
            None,
        ),
        (
            {
                "type": "payment_confirmation",
                "params": {"contract_id": "1", "amount": "0.00", "method": "pix"},
            },
            "invalid_amount",
            "params.amount",
        ),
        (
            {"type": "resend_invoice", "params": {"contract_id": "1"}, "lane": "high"},
            "lane_not_allowed",
            "lane",
        ),
        ({**UNBLOCK, "extra": 1}, "unknown_field", "extra"),
    ]
    for body, code, field in cases:
        with pytest.raises(InvalidRequest) as info:
            parse_submission(body)
        assert info.value.code == code, body
        if field is not None:
            assert info.value.field == field


def test_request_id_is_deterministic_per_client_and_key() -> None:
    assert request_id_for("a", "k1") == request_id_for("a", "k1")
    assert request_id_for("a", "k1") != request_id_for("b", "k1")
    assert request_id_for("a", None) != request_id_for("a", None)


def test_webhook_verifier_stale_bad_and_replayed() -> None:
    clock = Clock()
    verifier = WebhookVerifier({"gw": SecretStr(SECRET)}, 300, clock)
    body = b'{"x":1}'
    ts = str(int(clock.now))
    good = sign(SECRET, ts, body)
    assert verifier.verify("gw", ts, good, body) == "gw"
    for args, code in [
        (("gw", ts, good, body), "replayed_signature"),
        (("gw", ts, sign("other", ts, body), body), "bad_signature"),
        (("gw", ts, good, body + b" "), "bad_signature"),
        (("nope", ts, good, body), "unknown_gateway"),
        (("gw", None, good, body), "missing_signature"),
        (("gw", "abc", good, body), "bad_timestamp"),
    ]:
        with pytest.raises(AuthFailure) as info:
            verifier.verify(*args)
        assert info.value.code == code
    old = str(int(clock.now) - 301)
    with pytest.raises(AuthFailure) as info:
        verifier.verify("gw", old, sign(SECRET, old, body), body)
    assert info.value.code == "stale_timestamp"
    # Once the window has passed, the remembered signature is forgotten (and would be stale).
    clock.now += 400
    assert len(verifier._seen) == 1
    with pytest.raises(AuthFailure):
        verifier.verify("gw", ts, good, body)
    assert not verifier._seen


def test_rate_limiter_bucket_and_retry_after() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, {"vip": 100.0}, clock=lambda: now[0])
    assert limiter.take("a") == 0
    assert limiter.take("a") == 0
    wait = limiter.take("a")
    assert wait == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("a") == 0
    assert limiter.take("vip") == 0


def test_checked_in_openapi_matches_the_code() -> None:
    assert SPEC_PATH.read_text() == render(), "run: python -m producers.ingress.openapi"


async def test_submit_status_and_errors(
    api: tuple[httpx.AsyncClient, FakePublisher, Clock],
) -> None:
    client, publisher, _clock = api
    response = await client.post("/v1/requests", json=UNBLOCK, headers=AUTH)
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "queued"
    assert body["lane"] == "high"
    assert response.headers["Location"].endswith(f"/v1/requests/{body['request_id']}")
    assert publisher.requests[0]["request_type"] == "TRUST_UNBLOCK"
    assert publisher.statuses[0]["state"] == "QUEUED"
    status = await client.get(f"/v1/requests/{body['request_id']}", headers=AUTH)
    assert status.status_code == 200
    assert status.json()["type"] == "trust_unblock"

    assert (await client.post("/v1/requests", json=UNBLOCK)).json()["error"]["code"] == (
        "missing_token"
    )
    bad = await client.post("/v1/requests", json=UNBLOCK, headers={"Authorization": "Bearer x"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_token"
    invalid = await client.post(
        "/v1/requests", json={"type": "trust_unblock", "params": {}}, headers=AUTH
    )
    assert invalid.status_code == 400
    assert invalid.json()["error"] == {
        "code": "missing",
        "message": "params.contract_id is required",
        "field": "params.contract_id",
    }
    not_json = await client.post(
        "/v1/requests", content=b"{", headers=AUTH | {"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"
    text = await client.post("/v1/requests", content=b"x", headers=AUTH)
    assert text.status_code == 415
    huge = await client.post(
        "/v1/requests", content=b"x" * 20_000, headers=AUTH | {"Content-Type": "application/json"}
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "body_too_large"
    assert (await client.get("/v1/requests/nope", headers=AUTH)).status_code == 404
    assert len(publisher.requests) == 1, "nothing enqueued on bad input"


async def test_concurrent_duplicates_get_the_first_request(
    api: tuple[httpx.AsyncClient, FakePublisher, Clock],
) -> None:
    client, publisher, _clock = api
    publisher.delay = 0.05
    headers = AUTH | {"Idempotency-Key": "pay-123"}
    answers = await asyncio.gather(
        *(client.post("/v1/requests", json=UNBLOCK, headers=headers) for _ in range(10))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["request_id"] for a in answers}) == 1
    assert len(publisher.requests) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 9
    other = {"type": "trust_unblock", "params": {"contract_id": "43"}}
    reused = await client.post("/v1/requests", json=other, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


async def test_enqueue_failure_is_503_and_the_key_can_be_retried(
    api: tuple[httpx.AsyncClient, FakePublisher, Clock],
) -> None:
    client, publisher, _clock = api
    publisher.fail = True
    headers = AUTH | {"Idempotency-Key": "retry-me"}
    failed = await client.post("/v1/requests", json=UNBLOCK, headers=headers)
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "1"
    publisher.fail = False
    retried = await client.post("/v1/requests", json=UNBLOCK, headers=headers)
    assert retried.status_code == 202
    assert retried.json()["state"] == "queued"
    assert len(publisher.requests) == 1


async def test_rate_limit_answers_429_with_retry_after() -> None:
    publisher = FakePublisher()
    ingress = Ingress(settings(rate_per_s=2.0, rate_burst=5), publisher, StatusView())
    runner = web.AppRunner(ingress.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/requests"
    try:
        async with httpx.AsyncClient() as client:
            codes = [(await client.post(url, json=UNBLOCK, headers=AUTH)) for _ in range(3)]
    finally:
        await runner.cleanup()
    assert [c.status_code for c in codes] == [202, 202, 429]
    assert codes[2].headers["Retry-After"] == "1"
    assert codes[2].json()["error"]["code"] == "rate_limited"
    assert len(publisher.requests) == 2


async def test_payment_webhook_signed_and_idempotent_on_payment_id(
    api: tuple[httpx.AsyncClient, FakePublisher, Clock],
) -> None:
    client, publisher, clock = api
    payment = {"payment_id": "E123", "contract_id": "9", "amount": "89.90", "method": "pix"}
    raw = json.dumps(payment).encode()

    def headers(ts: int, body: bytes = raw) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Filas-Gateway": "pix-gw",
            "X-Filas-Timestamp": str(ts),
            "X-Filas-Signature": sign(SECRET, str(ts), body),
        }

    now = int(clock.now)
    first = await client.post("/v1/webhooks/payments", content=raw, headers=headers(now))
    assert first.status_code == 202
    assert first.json()["type"] == "payment_confirmation"
    replay = await client.post("/v1/webhooks/payments", content=raw, headers=headers(now))
    assert replay.json()["error"]["code"] == "replayed_signature"
    # The gateway retries the same payment later: new signature, same request.
    again = await client.post("/v1/webhooks/payments", content=raw, headers=headers(now + 1))
    assert again.status_code == 202
    assert again.json()["request_id"] == first.json()["request_id"]
    assert len(publisher.requests) == 1
    assert publisher.requests[0]["params"]["amount"] == "89.90"
    bad = json.dumps({**payment, "amount": "-1"}).encode()
    invalid = await client.post("/v1/webhooks/payments", content=bad, headers=headers(now, bad))
    assert invalid.status_code == 400
    assert invalid.json()["error"]["field"] == "amount"
