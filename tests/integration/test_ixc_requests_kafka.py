"""Service requests end to end against real Kafka + registry: ``filas ingress serve`` and
``filas requests work`` as subprocesses, the IXC homologation simulator on a thread.

Covers: auth failures (token, HMAC, stale timestamp, replayed signature), concurrent duplicate
submits on two ingress instances -> one request and one effect, 429, every request type through
to the simulator, IXC 500 / timeout / business refusal / dead letter, and a worker killed -9
mid-request -> exactly one effect."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog
from filas.catalog.campaigns import TRANSACTIONAL_MESSAGES
from filas.catalog.ixc_state import CONTRACTS, CUSTOMERS
from filas.catalog.logs import LOGS
from filas.catalog.requests import REQUEST_STATUS, REQUESTS_BULK, REQUESTS_HIGH
from filas.settings import Settings
from producers.ingress.guards import sign
from producers.ixc.simulator import FaultPlan, SimulatedIsp
from tests.integration.ixc_requests_support import (
    API_TOKEN,
    GATEWAY_SECRET,
    LIMITED_TOKEN,
    Service,
    SimThread,
    service_env,
    wait_state,
)

pytestmark = pytest.mark.integration

FINAL = {"done", "failed", "dead_lettered"}


@dataclass
class Env:
    settings: Settings
    catalog: Catalog
    sim: SimThread
    env: dict[str, str]
    tmp: Path
    ingress_url: str
    worker: Service
    services: list[Service]

    def api(self, token: str = API_TOKEN, url: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=url or self.ingress_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def start_ingress(self, name: str) -> tuple[Service, str]:
        service = Service(
            ["ingress", "serve"],
            self.env | {"FILAS_INGRESS__PORT": "0"},
            self.tmp / f"{name}.log",
        )
        self.services.append(service)
        service.wait_for_log("ingress up: ")
        match = re.search(r"ingress up: (http://\S+)", service.log_path.read_text())
        assert match is not None
        return service, match.group(1)

    def start_worker(self, name: str) -> Service:
        service = Service(["requests", "work"], self.env, self.tmp / f"{name}.log")
        self.services.append(service)
        service.wait_for_log("ixc requests worker up")
        return service


@pytest.fixture(scope="module")
def env(platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    catalog = Catalog.build(prefix)
    specs = [catalog.resolve(s) for s in (REQUESTS_HIGH, REQUESTS_BULK, REQUEST_STATUS, LOGS)]
    # The payment notices' recipients and lane (empty here: payments get notice=no_recipient).
    specs += [catalog.resolve(s) for s in (CUSTOMERS, CONTRACTS, TRANSACTIONAL_MESSAGES)]
    specs += [catalog.dead_letter_for(s) for s in (REQUESTS_HIGH, REQUESTS_BULK)]
    TopicAdmin(platform.kafka).apply(catalog.only(*specs))
    isp = SimulatedIsp(seed=8, customers=40, devices=0, nas=1)
    for contract in ("1", "2", "3", "4", "5", "6", "7"):
        isp.block_contract(contract, "CA")
    sim = SimThread(isp)
    tmp = tmp_path_factory.mktemp("requests")
    variables = service_env(platform, prefix, sim.base_url)
    e = Env(platform, catalog, sim, variables, tmp, "", None, [])  # type: ignore[arg-type]
    try:
        _, e.ingress_url = e.start_ingress("ingress-a")
        e.worker = e.start_worker("worker-1")
        yield e
    finally:
        for service in e.services:
            service.stop()
        sim.stop()


def submit(client: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/requests", json=body, headers=headers)


def signed(body: bytes, ts: int | None = None, secret: str = GATEWAY_SECRET) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Filas-Gateway": "pix-gw",
        "X-Filas-Timestamp": stamp,
        "X-Filas-Signature": sign(secret, stamp, body),
    }


def test_auth_failures(env: Env) -> None:
    body = {"type": "trust_unblock", "params": {"contract_id": "30"}}
    with httpx.Client(base_url=env.ingress_url) as anon:
        assert anon.post("/v1/requests", json=body).json()["error"]["code"] == "missing_token"
        wrong = anon.post("/v1/requests", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_token"
        payment = json.dumps(
            {"payment_id": "P-auth", "contract_id": "30", "amount": "10.00", "method": "pix"}
        ).encode()
        url = "/v1/webhooks/payments"
        cases = [
            ({"Content-Type": "application/json"}, "missing_signature"),
            (signed(payment, secret="not-the-secret"), "bad_signature"),
            (signed(payment, ts=int(time.time()) - 3600), "stale_timestamp"),
        ]
        for headers, code in cases:
            response = anon.post(url, content=payment, headers=headers)
            assert response.status_code == 401, code
            assert response.json()["error"]["code"] == code
        good = signed(payment)
        assert anon.post(url, content=payment, headers=good).status_code == 202
        replay = anon.post(url, content=payment, headers=good)
        assert replay.status_code == 401
        assert replay.json()["error"]["code"] == "replayed_signature"


def test_concurrent_duplicates_on_two_instances_make_one_request_and_one_effect(
    env: Env,
) -> None:
    _, second_url = env.start_ingress("ingress-b")
    body = {"type": "trust_unblock", "params": {"contract_id": "1"}}
    clients = [env.api(), env.api(url=second_url)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: submit(clients[i % 2], body, key="unblock-1"), range(16)))
    assert {a.status_code for a in answers} == {202}
    ids = {a.json()["request_id"] for a in answers}
    assert len(ids) == 1
    (request_id,) = ids
    final = wait_state(clients[0], request_id, FINAL)
    assert final["state"] == "done"
    # Both instances converge on the final state (status topic view).
    assert wait_state(clients[1], request_id, {"done"})["state"] == "done"
    assert env.sim.sim.writes.effects[request_id] == 1
    assert env.sim.sim.isp.get("cliente_contrato", "1")["status_internet"] == "A"
    # Retrying later still returns the first request, now done.
    again = submit(clients[1], body, key="unblock-1")
    assert again.json()["request_id"] == request_id
    assert again.json()["state"] == "done"
    for c in clients:
        c.close()


def test_rate_limit_429_with_retry_after(env: Env) -> None:
    body = {"type": "resend_invoice", "params": {"contract_id": "20"}}
    with env.api(LIMITED_TOKEN) as client:
        codes = [submit(client, body) for _ in range(3)]
    assert [c.status_code for c in codes][:1] == [202]
    limited = [c for c in codes if c.status_code == 429]
    assert limited, [c.status_code for c in codes]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"


def test_every_request_type_reaches_the_simulator(env: Env) -> None:
    isp = env.sim.sim.isp
    plan = "1" if isp.get("cliente_contrato", "10")["id_vd_contrato"] != "1" else "2"
    bodies = [
        {"type": "trust_unblock", "params": {"contract_id": "2"}},
        {
            "type": "payment_confirmation",
            "params": {"contract_id": "3", "amount": "99.90", "method": "boleto"},
        },
        {
            "type": "open_ticket",
            "params": {"customer_id": "4", "subject": "Sem sinal", "message": "LOS vermelho"},
        },
        {"type": "disconnect_login", "params": {"login_id": "5"}},
        {"type": "change_plan", "params": {"contract_id": "10", "plan_id": plan}},
        {"type": "resend_invoice", "params": {"contract_id": "11", "channel": "sms"}},
    ]
    with env.api() as client:
        accepted = [submit(client, b) for b in bodies]
        assert [a.status_code for a in accepted] == [202] * 6
        assert accepted[-1].json()["lane"] == "bulk"
        finals = [wait_state(client, a.json()["request_id"], FINAL) for a in accepted]
    assert [f["state"] for f in finals] == ["done"] * 6, finals
    assert isp.get("cliente_contrato", "2")["desbloqueio_confianca_ativo"] == "S"
    assert isp.get("cliente_contrato", "3")["status_internet"] == "A"
    ticket = isp.get("su_oss_chamado", finals[2]["result"]["ixc_id"])
    assert ticket["assunto"] == "Sem sinal"
    assert isp.get("radusuarios", "5")["online"] == "N"
    assert isp.get("cliente_contrato", "10")["id_vd_contrato"] == plan
    resend = isp.get("fn_areceber_envios", finals[5]["result"]["ixc_id"])
    assert resend["canal"] == "sms"


def test_high_lane_is_drained_before_bulk(env: Env) -> None:
    sim = env.sim
    # Hold the worker's only slot with a slow call (2.5 s, under the 3 s client timeout), then
    # queue 5 bulk and 1 high request while it is held.
    sim.call(setattr, sim.sim, "faults", FaultPlan(script=["slow"], slow_s=2.5))
    before = sim.sim.requests["desbloqueio_confianca"]
    with env.api() as client:
        first = submit(client, {"type": "trust_unblock", "params": {"contract_id": "27"}})
        deadline = time.monotonic() + 20
        while sim.sim.requests["desbloqueio_confianca"] == before:
            assert time.monotonic() < deadline, "the first request never reached IXC"
            time.sleep(0.01)
        bodies = [
            {"type": "resend_invoice", "params": {"contract_id": str(30 + i)}} for i in range(5)
        ] + [{"type": "disconnect_login", "params": {"login_id": "31"}}]
        with ThreadPoolExecutor(6) as pool:
            later = list(pool.map(lambda b: submit(client, b), bodies))
        ids = [r.json()["request_id"] for r in (first, *later)]
        for request_id in ids:
            assert wait_state(client, request_id, FINAL)["state"] in ("done", "failed")
    order = [rid for rid in sim.sim.writes.answers if rid in ids]
    assert order.index(ids[-1]) <= 1, order  # right after the call that held the slot
    assert all(order.index(ids[-1]) < order.index(b) for b in ids[1:-1])


def test_ixc_500_timeout_refusal_and_dead_letter(env: Env) -> None:
    sim = env.sim
    with env.api() as client:
        # Two 500s, then success: attempt 3 wins (max_attempts=3).
        sim.call(setattr, sim.sim, "faults", FaultPlan(script=["500", "500"]))
        r = submit(client, {"type": "trust_unblock", "params": {"contract_id": "6"}})
        done = wait_state(client, r.json()["request_id"], FINAL)
        assert done["state"] == "done"
        assert done["attempts"] == 3
        # A timeout (slow answer past the 3 s client timeout), then the retry: one effect.
        sim.call(setattr, sim.sim, "faults", FaultPlan(script=["slow"], slow_s=3.5))
        r = submit(client, {"type": "trust_unblock", "params": {"contract_id": "7"}})
        request_id = r.json()["request_id"]
        done = wait_state(client, request_id, FINAL)
        assert done["state"] == "done"
        assert done["attempts"] == 2
        time.sleep(1.0)  # let the slow first call finish on the simulator (3.5 s after it came)
        assert sim.sim.writes.calls[request_id] == 2
        assert sim.sim.writes.effects[request_id] == 1
        # A business refusal: FAILED at once with IXC's code.
        r = submit(client, {"type": "trust_unblock", "params": {"contract_id": "25"}})
        failed = wait_state(client, r.json()["request_id"], FINAL)
        assert failed["state"] == "failed"
        assert failed["attempts"] == 1
        assert failed["error"]["code"] == "CONTRATO_NAO_BLOQUEADO"
        # IXC down for every attempt: dead-lettered, raw record on requests.high.dlq.
        sim.call(setattr, sim.sim, "faults", FaultPlan(script=["500"] * 3))
        r = submit(client, {"type": "trust_unblock", "params": {"contract_id": "26"}})
        request_id = r.json()["request_id"]
        dead = wait_state(client, request_id, FINAL)
        sim.call(setattr, sim.sim, "faults", FaultPlan())
    assert dead["state"] == "dead_lettered"
    assert dead["error"]["code"] == "ixc_unavailable"
    assert request_id.encode() in dlq_keys_and_values(env)


def dlq_keys_and_values(env: Env, wanted: bytes | None = None) -> bytes:
    """Every DeadLetter value on requests.high.dlq so far (until ``wanted`` shows up)."""
    spec = env.catalog.dead_letter_for(REQUESTS_HIGH)
    consumer = Consumer(
        dict(env.settings.kafka.client_config())
        | {"group.id": f"dlq-check-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(spec.name, 0, 0)])
        seen = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen += msg.value() or b""
                if wanted is None or wanted in seen:
                    return seen
        return seen
    finally:
        consumer.close()


def test_unreadable_request_record_is_dead_lettered_not_a_crash(env: Env) -> None:
    garbage = b"not avro at all " + uuid.uuid4().hex.encode()
    producer = Producer(dict(env.settings.kafka.client_config()))
    producer.produce(env.catalog.resolve(REQUESTS_HIGH).name, key=b"junk", value=garbage)
    assert producer.flush(10) == 0
    seen = dlq_keys_and_values(env, wanted=garbage)
    assert garbage in seen
    assert b"decode" in seen
    # The worker carried on: a request queued after the garbage still completes.
    with env.api() as client:
        r = submit(client, {"type": "resend_invoice", "params": {"contract_id": "15"}})
        assert wait_state(client, r.json()["request_id"], FINAL)["state"] == "done"


def test_worker_killed_mid_request_gives_exactly_one_effect(env: Env) -> None:
    sim = env.sim
    # Every IXC call hangs 8 s (past the 3 s client timeout) and is applied when it wakes;
    # the worker is killed -9 while it waits, then a new worker takes over the request.
    sim.call(setattr, sim.sim, "faults", FaultPlan(script=["slow"] * 3, slow_s=8.0))
    before = sim.sim.requests["fn_areceber_baixa"]
    with env.api() as client:
        r = submit(client, {"type": "payment_confirmation", "params": {
            "contract_id": "12", "amount": "89.90", "method": "pix"}})  # fmt: skip
        request_id = r.json()["request_id"]
        # The simulator counts a call when it arrives (writes.calls counts it once answered).
        deadline = time.monotonic() + 20
        while sim.sim.requests["fn_areceber_baixa"] == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.sim.requests["fn_areceber_baixa"] == before + 1
        env.worker.kill()
        sim.call(setattr, sim.sim, "faults", FaultPlan())
        assert wait_state(client, request_id, {"running"})["attempts"] >= 1
        env.worker = env.start_worker("worker-2")
        done = wait_state(client, request_id, FINAL, timeout_s=60)
    assert done["state"] == "done"
    deadline = time.monotonic() + 15
    while sim.sim.writes.calls[request_id] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert sim.sim.writes.calls[request_id] >= 2
    assert sim.sim.writes.effects[request_id] == 1
    payments = [
        p for p in sim.sim.isp.records("fn_areceber_pagamentos") if p["id_contrato"] == "12"
    ]
    assert len(payments) == 1


def test_openapi_fuzzing_finds_no_server_error(env: Env) -> None:
    """schemathesis generates requests from the served spec (valid and edge-case bodies, odd
    path ids); every answer must be a documented non-5xx with a body matching the spec."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.result import Ok

    schema = schemathesis.openapi.from_url(f"{env.ingress_url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    statuses: list[int] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            response = case.call(base_url=env.ingress_url, headers=headers, timeout=10)
            statuses.append(response.status_code)
            case.validate_response(response, checks=checks)

        fuzz()
    assert len(statuses) >= 30
    assert 202 in statuses, "the fuzzer never got a valid submission through"
