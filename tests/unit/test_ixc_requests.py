"""IXC request workers without a network: request -> IXC call mapping, retries/backoff,
refusals, dead letters, the ledger (duplicates, RUNNING re-run), offset tracking, and the
simulator's write forms with their per-request-id idempotency."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from consumers.ixc_requests.calls import IxcCall, IxcRefusal, IxcWriter, ixc_call
from consumers.ixc_requests.processor import CallRate, RequestProcessor, rate_share
from consumers.ixc_requests.status_view import StatusView
from consumers.ixc_requests.worker import OffsetTracker
from filas.errors import FilasError
from filas.settings import IngressSettings, IxcSettings
from producers.ixc.errors import IxcUnavailableError
from producers.ixc.poller import IxcPoller
from producers.ixc.simulator import IxcSimulator
from producers.ixc.simulator.dataset import SimulatedIsp
from producers.ixc.simulator.writes import WriteApi
from producers.ixc.watermark import WatermarkStore


def request(request_type: str = "TRUST_UNBLOCK", rid: str = "r-1", **params: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "client_id": "noc",
        "request_type": request_type,
        "lane": "high",
        "idempotency_key": None,
        "params": params or {"contract_id": "3"},
        "fingerprint": "f",
        "submitted_at": datetime.now(UTC),
    }


class FakeIxc:
    def __init__(self, script: list[Exception | dict[str, str]]) -> None:
        self.script = script
        self.calls: list[IxcCall] = []

    async def write_once(self, call: IxcCall) -> dict[str, str]:
        self.calls.append(call)
        step = self.script.pop(0) if self.script else {"type": "success", "id": "1"}
        if isinstance(step, Exception):
            raise step
        return step


class Harness:
    def __init__(self, script: list[Exception | dict[str, str]], **over: Any) -> None:
        self.ixc = FakeIxc(script)
        self.view = StatusView()
        self.statuses: list[Mapping[str, Any]] = []
        self.dead: list[FilasError] = []
        self.sleeps: list[float] = []
        settings = IngressSettings(**({"max_attempts": 3, "backoff_initial_s": 1.0} | over))
        self.processor = RequestProcessor(
            settings,
            self.ixc,
            self.view,
            self._emit,
            sleep=self._sleep,
            rng=random.Random(1),
            rate=CallRate(1e9),
        )

    async def _emit(self, status: Mapping[str, Any]) -> None:
        self.statuses.append(status)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def dlq(self, error: FilasError) -> None:
        self.dead.append(error)

    async def run(self, req: Mapping[str, Any]) -> str:
        return await self.processor.process(req, self.dlq)


def test_every_request_type_maps_to_an_ixc_form_with_the_request_id() -> None:
    cases = {
        "TRUST_UNBLOCK": ({"contract_id": "1"}, "desbloqueio_confianca"),
        "PAYMENT_CONFIRMATION": (
            {"contract_id": "1", "amount": "9.90", "method": "pix"},
            "fn_areceber_baixa",
        ),
        "OPEN_TICKET": (
            {"customer_id": "1", "subject": "s", "message": "m", "kind": "service_order"},
            "su_oss_chamado",
        ),
        "DISCONNECT_LOGIN": ({"login_id": "1"}, "desconectar_clientes"),
        "CHANGE_PLAN": ({"contract_id": "1", "plan_id": "2"}, "cliente_contrato_alterar_plano"),
        "RESEND_INVOICE": ({"contract_id": "1"}, "fn_areceber_reenviar"),
    }
    for kind, (params, form) in cases.items():
        call = ixc_call(request(kind, **params))
        assert call.form == form
        assert call.body["filas_request_id"] == "r-1"
        assert all(isinstance(v, str) for v in call.body.values())
    assert (
        ixc_call(request("OPEN_TICKET", customer_id="1", subject="s", message="m")).body["tipo"]
        == "C"
    )
    with pytest.raises(FilasError):
        ixc_call(request("CHANGE_PLAN", contract_id="1"))


async def test_retries_with_backoff_then_done() -> None:
    h = Harness([IxcUnavailableError("500"), IxcUnavailableError("timeout")])
    assert await h.run(request()) == "DONE"
    assert len(h.ixc.calls) == 3
    assert [s["state"] for s in h.statuses] == ["RUNNING", "RUNNING", "RUNNING", "DONE"]
    assert h.statuses[-1]["attempts"] == 3
    assert h.statuses[-1]["result"]["ixc_id"] == "1"
    assert 0.5 <= h.sleeps[0] <= 1.0 < h.sleeps[1] <= 2.0 + 1e-9


async def test_retries_exhausted_dead_letters() -> None:
    h = Harness([IxcUnavailableError("500")] * 3)
    assert await h.run(request()) == "DEAD_LETTERED"
    assert [e.code for e in h.dead] == ["ixc_unavailable"]
    assert h.statuses[-1]["error_code"] == "ixc_unavailable"


async def test_business_refusal_fails_at_once_with_ixc_code() -> None:
    h = Harness([IxcRefusal("CONTRATO_NAO_BLOQUEADO", "contrato não está bloqueado")])
    assert await h.run(request()) == "FAILED"
    assert len(h.ixc.calls) == 1
    assert not h.dead
    assert h.statuses[-1]["error_code"] == "CONTRATO_NAO_BLOQUEADO"


async def test_ledger_skips_final_and_reruns_running() -> None:
    h = Harness([])
    assert await h.run(request()) == "DONE"
    assert await h.run(request()) == "DONE"
    assert len(h.ixc.calls) == 1
    assert h.processor.stats.duplicates == 1
    # A worker died mid-call: RUNNING in the ledger -> called again (same request id).
    h.view.put({**request(rid="r-2"), "state": "RUNNING", "attempts": 1})
    assert await h.run(request(rid="r-2")) == "DONE"
    assert h.statuses[-1]["attempts"] == 2
    # A late QUEUED from a second ingress instance: the final state is emitted again.
    h.view.put({**request(), "state": "QUEUED", "attempts": 0})
    before = len(h.statuses)
    assert await h.run(request()) == "DONE"
    assert [s["state"] for s in h.statuses[before:]] == ["DONE"]
    assert h.view.last_raw_state("r-1") == "DONE"


def test_view_never_lets_queued_override_a_worker_state() -> None:
    view = StatusView()
    view.put({"request_id": "a", "state": "DONE"})
    view.put({"request_id": "a", "state": "QUEUED"})
    record = view.get("a")
    assert record is not None
    assert record["state"] == "DONE"
    assert view.last_raw_state("a") == "QUEUED"


def test_rate_share_splits_the_global_cap_by_partitions_held() -> None:
    assert rate_share(20.0, 12, 12) == 20.0
    assert rate_share(20.0, 4, 12) == pytest.approx(20.0 / 3)
    assert sum(rate_share(30.0, n, 12) for n in (5, 4, 3)) == pytest.approx(30.0)
    assert rate_share(12.0, 0, 12) == 1.0  # between rebalances: one partition's share
    rate = CallRate(2.0, clock=lambda: 100.0)
    assert [rate.reserve() for _ in range(3)] == [0.0, 0.5, 1.0]
    rate.set_rate(4.0)
    assert rate.reserve() == 1.5  # the slot already promised, then spaced at 1/4 s
    assert rate.reserve() == 1.75


def test_offset_tracker_commits_the_done_prefix_only() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.add("x", 0, o)
    assert t.done("x", 0, 11) is None
    assert t.done("x", 0, 10) == 12
    assert t.done("x", 0, 12) == 13
    assert t.pending() == 0


def test_simulator_writes_apply_once_per_request_id() -> None:
    isp = SimulatedIsp(seed=3, customers=5)
    isp.block_contract("2", "CA")
    api = WriteApi(isp)
    answer = api.apply("desbloqueio_confianca", {"id": "2", "filas_request_id": "a"})
    assert answer["type"] == "success"
    assert isp.get("cliente_contrato", "2")["status_internet"] == "A"
    stamp = isp.get("cliente_contrato", "2")["ultima_atualizacao"]
    assert api.apply("desbloqueio_confianca", {"id": "2", "filas_request_id": "a"}) == answer
    assert api.effects["a"] == 1
    assert api.calls["a"] == 2
    assert isp.get("cliente_contrato", "2")["ultima_atualizacao"] == stamp
    refused = api.apply("desbloqueio_confianca", {"id": "2", "filas_request_id": "b"})
    assert refused["code"] == "CONTRATO_NAO_BLOQUEADO"
    assert api.apply("desbloqueio_confianca", {"id": "99"})["code"] == "CONTRATO_NAO_ENCONTRADO"
    plan = "1" if isp.get("cliente_contrato", "3")["id_vd_contrato"] != "1" else "2"
    api.apply("cliente_contrato_alterar_plano", {"id_contrato": "3", "id_plano": plan})
    assert isp.get("radusuarios", "3")["id_grupo"] == plan
    ticket = api.apply(
        "su_oss_chamado", {"id_cliente": "1", "assunto": "sem sinal", "mensagem": "caiu"}
    )
    assert isp.get("su_oss_chamado", ticket["id"])["assunto"] == "sem sinal"
    isp.block_contract("4", "FA")
    api.apply("fn_areceber_baixa", {"id_contrato": "4", "valor": "89.90"})
    assert isp.get("cliente_contrato", "4")["status_internet"] == "A"


async def test_a_late_queued_is_reported_and_reasserted_once() -> None:
    h = Harness([])
    stale: list[dict[str, Any]] = []
    h.view.on_stale = stale.append
    assert await h.run(request()) == "DONE"
    h.view.put({**request(), "state": "QUEUED", "attempts": 0})
    assert [s["state"] for s in stale] == ["DONE"]
    await h.processor.reassert(stale[0])
    await h.processor.reassert(stale[0])
    assert [s["state"] for s in h.statuses].count("DONE") == 2
    # A stale RUNNING snapshot is never emitted over a later state.
    await h.processor.reassert({**stale[0], "state": "RUNNING"})
    h.view.put({**request(), "state": "QUEUED", "attempts": 0})
    await h.processor.reassert({**stale[0], "state": "RUNNING"})
    assert [s["state"] for s in h.statuses][-1] == "DONE"
    record = h.view.get("r-1")
    assert record is not None
    assert record["state"] == "DONE"


async def test_writes_through_the_real_client_reach_the_poller_as_status_events(
    tmp_path: Path,
) -> None:
    """IxcWriter -> simulator write forms -> the poller's next pass emits the status change
    the CoA worker acts on (payment -> PAYMENT_CONFIRMED, trust unblock, plan change)."""
    from tests.unit.test_ixc_poller import MemoryDeadLetters, MemorySink

    isp = SimulatedIsp(seed=6, customers=8, devices=0, nas=1)
    for contract in ("1", "2"):
        isp.block_contract(contract, "CA")
    sim = IxcSimulator(isp, token="t")
    await sim.start()
    settings = IxcSettings(base_url=sim.base_url, token=SecretStr("t"), min_request_interval_s=0)
    sink, dead = MemorySink(), MemoryDeadLetters()
    try:
        async with IxcWriter(settings) as ixc:
            poller = IxcPoller(
                ixc, sink, dead, WatermarkStore(tmp_path / "w.json"), tz=ZoneInfo("UTC")
            )
            await poller.poll_once()
            plan = "1" if isp.get("cliente_contrato", "3")["id_vd_contrato"] != "1" else "2"
            requests = [
                request("PAYMENT_CONFIRMATION", "p", contract_id="1", amount="9.90", method="pix"),
                request("TRUST_UNBLOCK", "u", contract_id="2"),
                request("CHANGE_PLAN", "c", contract_id="3", plan_id=plan),
            ]
            for req in requests:
                assert (await ixc.write_once(ixc_call(req)))["type"] == "success"
            with pytest.raises(IxcRefusal) as refusal:
                await ixc.write_once(ixc_call(request("TRUST_UNBLOCK", "x", contract_id="4")))
            assert refusal.value.ixc_code == "CONTRATO_NAO_BLOQUEADO"
            await poller.poll_once()
    finally:
        await sim.stop()
    changes = {
        e["contract_id"]: e["reason"] for name, e in sink.events if name == "ixc.contract-status"
    }
    assert changes == {"1": "PAYMENT_CONFIRMED", "2": "TRUST_UNBLOCK", "3": "PLAN_CHANGE"}
    assert not dead.letters
