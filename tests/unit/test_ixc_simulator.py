"""The IXC homologation simulator: deterministic data, IXC listing semantics, Basic auth, and
its /_sim admin API (mutations and faults) over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from producers.ixc.simulator import IxcSimulator, SimulatedIsp
from producers.ixc.simulator.listing import ListingError, list_records

TOKEN = "sim-test-token"
AUTH = "Basic " + base64.b64encode(f"1:{TOKEN}".encode()).decode()
LISTAR = {"Authorization": AUTH, "ixcsoft": "listar"}


@pytest.fixture
async def sim() -> AsyncIterator[IxcSimulator]:
    simulator = IxcSimulator(SimulatedIsp(seed=2, customers=10, devices=12, nas=2), token=TOKEN)
    await simulator.start(port=0)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http(sim: IxcSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        yield client


def test_same_seed_same_isp_different_seed_different_isp() -> None:
    a, b = SimulatedIsp(seed=4, customers=20), SimulatedIsp(seed=4, customers=20)
    assert a.forms == b.forms
    assert SimulatedIsp(seed=5, customers=20).forms != a.forms


def test_topology_pop_olt_onu() -> None:
    isp = SimulatedIsp(seed=1, customers=5, devices=20, nas=1)
    pops, olts = isp.forms["radpop"], isp.forms["radpop_radio"]
    onus = isp.forms["radpop_radio_cliente_fibra"]
    assert len(pops) + len(olts) + len(onus) == 20
    assert all(o["id_pop"] in pops for o in olts.values())
    assert all(u["id_transmissor"] in olts for u in onus.values())


def test_mutations_bump_ultima_atualizacao() -> None:
    isp = SimulatedIsp(seed=1, customers=3)
    before = isp.get("cliente_contrato", "2")["ultima_atualizacao"]
    contract = isp.block_contract("2", "CA")
    assert contract["status_internet"] == "CA"
    assert contract["ultima_atualizacao"] > before
    assert isp.get("radusuarios", "2")["ativo"] == "N"
    assert isp.get("radusuarios", "2")["ultima_atualizacao"] > contract["ultima_atualizacao"]


def test_listing_filters_sorts_and_pages() -> None:
    records = [{"id": str(i), "d": f"2024-01-0{1 + i % 3} 00:00:00"} for i in range(1, 10)]
    total, page = list_records(
        "f", records, {"qtype": "f.d", "query": "2024-01-02 00:00:00", "oper": ">=",
                       "sortname": "f.d", "sortorder": "asc", "page": "2", "rp": "2"}
    )  # fmt: skip
    assert total == 6
    # Sorted by date, ties by id: 02 -> 1, 4, 7; 03 -> 2, 5, 8.
    assert [r["id"] for r in page] == ["7", "2"]
    with pytest.raises(ListingError):
        list_records("f", records, {"qtype": "outra.id", "query": "1", "oper": "="})


async def test_listing_over_http_has_ixc_shape(http: httpx.AsyncClient) -> None:
    body = {"qtype": "cliente.id", "query": "3", "oper": ">", "page": "1", "rp": "4",
            "sortname": "cliente.id", "sortorder": "desc"}  # fmt: skip
    response = await http.post("/webservice/v1/cliente", json=body, headers=LISTAR)
    payload = response.json()
    assert payload["total"] == "7"
    assert payload["page"] == "1"
    assert [r["id"] for r in payload["registros"]] == ["10", "9", "8", "7"]


async def test_wrong_credentials_get_401(http: httpx.AsyncClient) -> None:
    bad = "Basic " + base64.b64encode(b"1:nope").decode()
    response = await http.post(
        "/webservice/v1/cliente", json={}, headers={"Authorization": bad, "ixcsoft": "listar"}
    )
    assert response.status_code == 401
    assert response.json()["type"] == "error"


async def test_write_actions_are_not_implemented_yet(http: httpx.AsyncClient) -> None:
    response = await http.post("/webservice/v1/cliente", json={}, headers={"Authorization": AUTH})
    assert response.status_code == 501


async def test_admin_block_unblock_and_faults(sim: IxcSimulator, http: httpx.AsyncClient) -> None:
    assert (await http.get("/_sim/health")).json()["simulator"] is True
    blocked = (await http.post("/_sim/contracts/3/block", json={"code": "CM"})).json()
    assert blocked["status_internet"] == "CM"
    unblocked = (await http.post("/_sim/contracts/3/unblock", json={"trust": True})).json()
    assert unblocked["desbloqueio_confianca_ativo"] == "S"
    edited = (await http.post("/_sim/records/cliente/4", json={"email": "x@y.z"})).json()
    assert sim.isp.get("cliente", "4")["email"] == edited["email"] == "x@y.z"
    assert (await http.get("/_sim/records/cliente/999")).status_code == 404

    await http.put("/_sim/faults", json={"script": ["500", "malformed"]})
    listing = {"qtype": "cliente.id", "query": "1", "oper": ">=", "page": "1", "rp": "1"}
    first = await http.post("/webservice/v1/cliente", json=listing, headers=LISTAR)
    second = await http.post("/webservice/v1/cliente", json=listing, headers=LISTAR)
    third = await http.post("/webservice/v1/cliente", json=listing, headers=LISTAR)
    assert first.status_code == 500
    assert second.status_code == 200
    with pytest.raises(ValueError, match="Expecting value"):
        second.json()
    assert third.json()["total"] == "10"
    stats = (await http.get("/_sim/stats")).json()
    assert stats == {"requests": {"cliente": 3}, "faults": ["500", "malformed"]}
    await http.delete("/_sim/faults")
    assert sim.faults.script == type(sim.faults.script)()
