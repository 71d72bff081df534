"""IxcClient over real HTTP (loopback) against the IXC simulator: paging, retries with backoff
on 500s / timeouts / malformed JSON, no retry on 401, the token never shown."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from filas.settings import IxcSettings
from producers.ixc.client import GridFilter, IxcClient, IxcQuery
from producers.ixc.errors import (
    IxcMalformedResponseError,
    IxcRequestRejectedError,
    IxcUnavailableError,
)
from producers.ixc.simulator import FaultPlan, IxcSimulator, SimulatedIsp

TOKEN = "client-test-token-9f2c"
ALL_CUSTOMERS = IxcQuery("cliente.id", "1", ">=", "cliente.id")


class Sleeps:
    """Records backoff delays instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def sim() -> AsyncIterator[IxcSimulator]:
    simulator = IxcSimulator(SimulatedIsp(seed=11, customers=23, devices=5, nas=1), token=TOKEN)
    await simulator.start()
    yield simulator
    await simulator.stop()


def settings(sim: IxcSimulator, **kw: object) -> IxcSettings:
    base: dict[str, object] = {
        "base_url": sim.base_url,
        "token": SecretStr(TOKEN),
        "page_size": 5,
        "min_request_interval_s": 0.0,
        "request_timeout_s": 2.0,
        "max_retries": 3,
        "backoff_initial_s": 0.5,
        "backoff_max_s": 4.0,
    }
    base.update(kw)
    return IxcSettings.model_validate(base)


async def test_list_all_pages_until_total(sim: IxcSimulator) -> None:
    async with IxcClient(settings(sim)) as ixc:
        pages = [page async for page in ixc.list_all("cliente", ALL_CUSTOMERS)]
    ids = [r["id"] for p in pages for r in p.records]
    assert len(pages) == 5
    assert ids == [str(i) for i in range(1, 24)]
    assert {p.total for p in pages} == {23}
    assert all(isinstance(v, str) for p in pages for r in p.records for v in r.values())


async def test_grid_filter_and_sort(sim: IxcSimulator) -> None:
    query = IxcQuery(
        "cliente.id", "10", ">", "cliente.id", "desc", grid=(GridFilter("cliente.id", "<=", "13"),)
    )
    async with IxcClient(settings(sim)) as ixc:
        page = await ixc.list_page("cliente", query)
    assert [r["id"] for r in page.records] == ["13", "12", "11"]


async def test_500s_are_retried_with_growing_backoff(sim: IxcSimulator) -> None:
    sim.faults = FaultPlan(script=["500", "500"])
    sleeps = Sleeps()
    async with IxcClient(settings(sim), sleep=sleeps) as ixc:
        page = await ixc.list_page("cliente", ALL_CUSTOMERS)
    assert len(page.records) == 5
    assert sim.requests["cliente"] == 3
    assert len(sleeps.delays) == 2
    # Equal jitter: between half and all of 0.5s, then of 1.0s.
    assert 0.25 <= sleeps.delays[0] <= 0.5
    assert 0.5 <= sleeps.delays[1] <= 1.0


async def test_timeouts_are_retried(sim: IxcSimulator) -> None:
    sim.faults = FaultPlan(script=["slow"], slow_s=1.0)
    sleeps = Sleeps()
    async with IxcClient(settings(sim, request_timeout_s=0.2), sleep=sleeps) as ixc:
        page = await ixc.list_page("cliente", ALL_CUSTOMERS)
    assert len(page.records) == 5
    assert len(sleeps.delays) == 1


async def test_persistent_500s_end_in_a_clear_retriable_error(sim: IxcSimulator) -> None:
    sim.faults = FaultPlan(error_rate=1.0)
    sleeps = Sleeps()
    async with IxcClient(settings(sim), sleep=sleeps) as ixc:
        with pytest.raises(IxcUnavailableError, match="HTTP 500") as caught:
            await ixc.list_page("cliente", ALL_CUSTOMERS)
    assert caught.value.retriable
    assert caught.value.code == "ixc_unavailable"
    assert sim.requests["cliente"] == 4  # one try + max_retries
    assert len(sleeps.delays) == 3
    assert max(sleeps.delays) <= 4.0


async def test_malformed_json_is_retried_then_reported(sim: IxcSimulator) -> None:
    sim.faults = FaultPlan(script=["malformed"])
    async with IxcClient(settings(sim), sleep=Sleeps()) as ixc:
        page = await ixc.list_page("cliente", ALL_CUSTOMERS)
        assert len(page.records) == 5
        sim.faults = FaultPlan(malformed_rate=1.0)
        with pytest.raises(IxcMalformedResponseError, match="not JSON"):
            await ixc.list_page("cliente", ALL_CUSTOMERS)
    assert sim.requests["cliente"] == 2 + 4


async def test_wrong_token_is_rejected_once_and_not_retried(
    sim: IxcSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps = Sleeps()
    wrong = "wrong-token-that-must-not-leak"
    caplog.set_level(logging.DEBUG)
    async with IxcClient(settings(sim, token=SecretStr(wrong)), sleep=sleeps) as ixc:
        with pytest.raises(IxcRequestRejectedError) as caught:
            await ixc.list_page("cliente", ALL_CUSTOMERS)
        assert wrong not in repr(ixc)
    assert caught.value.status == 401
    assert not caught.value.retriable
    assert sleeps.delays == []
    assert sim.requests["cliente"] == 0  # refused before reaching the listing
    assert wrong not in caplog.text
    assert wrong not in str(caught.value)


async def test_unknown_form_is_a_4xx_not_retried(sim: IxcSimulator) -> None:
    async with IxcClient(settings(sim), sleep=Sleeps()) as ixc:
        with pytest.raises(IxcRequestRejectedError) as caught:
            await ixc.list_page("nao_existe", IxcQuery("nao_existe.id", "1", ">=", "nao_existe.id"))
    assert caught.value.status == 404


async def test_connection_refused_is_retriable() -> None:
    # Port 9 on loopback: nothing listens there in the test environment.
    cfg = IxcSettings(base_url="http://127.0.0.1:9", token=SecretStr(TOKEN), max_retries=1)
    async with IxcClient(cfg, sleep=Sleeps()) as ixc:
        with pytest.raises(IxcUnavailableError, match="ConnectError") as caught:
            await ixc.list_page("cliente", ALL_CUSTOMERS)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_requests_are_spaced(sim: IxcSimulator) -> None:
    async with IxcClient(settings(sim, min_request_interval_s=0.1)) as ixc:
        started = time.monotonic()
        for _ in range(3):
            await ixc.list_page("cliente", ALL_CUSTOMERS)
        assert time.monotonic() - started >= 0.2
