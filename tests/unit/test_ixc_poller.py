"""IxcPoller over loopback HTTP against the IXC simulator, with in-memory sinks: every record
exactly once across pages and timestamp ties, watermark persistence, no advance past
unacknowledged or unlisted records, dead letters, contract status changes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from pydantic import SecretStr

from filas.catalog import TopicSpec, ixc_state
from filas.errors import DeliveryError
from filas.settings import IxcSettings
from producers.ixc.client import IxcClient
from producers.ixc.errors import (
    IxcProtocolError,
    IxcRequestRejectedError,
    IxcUnavailableError,
    WatermarkError,
)
from producers.ixc.forms import CONTRACTS, CUSTOMERS, FORMS, SUBSCRIBERS
from producers.ixc.poller import IxcPoller
from producers.ixc.ports import DeadLetter
from producers.ixc.simulator import FaultPlan, IxcSimulator, SimulatedIsp
from producers.ixc.watermark import WatermarkStore
from schemas.catalog import SchemaCatalog

TOKEN = "poller-test-token"
SCHEMAS = SchemaCatalog.load()


class MemorySink:
    """EventSink fake: validates against the schema like the SDK, then keeps the event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.fail_on_emit: int | None = None

    async def emit(self, topic: TopicSpec, record: Mapping[str, Any]) -> None:
        if self.fail_on_emit is not None and len(self.events) >= self.fail_on_emit:
            raise DeliveryError("broker said no", retriable=True)
        SCHEMAS.validate(topic.value_schema, record)
        self.events.append((topic.name, dict(record)))

    def keys(self, topic: TopicSpec) -> list[str]:
        return [str(e[topic.key_field]) for name, e in self.events if name == topic.name]


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def sim() -> AsyncIterator[IxcSimulator]:
    simulator = IxcSimulator(SimulatedIsp(seed=5, customers=37, devices=19, nas=3), token=TOKEN)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client(sim: IxcSimulator) -> AsyncIterator[IxcClient]:
    cfg = IxcSettings(
        base_url=sim.base_url,
        token=SecretStr(TOKEN),
        page_size=4,
        min_request_interval_s=0.0,
        max_retries=2,
        request_timeout_s=2.0,
    )
    async with IxcClient(cfg, sleep=no_sleep) as ixc:
        yield ixc


@pytest.fixture
def store(tmp_path: Path) -> WatermarkStore:
    return WatermarkStore(tmp_path / "state" / "ixc-watermarks.json")


def poller(
    client: IxcClient,
    sink: MemorySink,
    dead: MemoryDeadLetters,
    store: WatermarkStore,
) -> IxcPoller:
    return IxcPoller(client, sink, dead, store, tz=ZoneInfo("America/Sao_Paulo"))


def ids(isp: SimulatedIsp, form: str) -> list[str]:
    return sorted(isp.forms[form], key=int)


async def test_first_poll_emits_every_record_exactly_once(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    sink, dead = MemorySink(), MemoryDeadLetters()
    report = await poller(client, sink, dead, store).poll_once()
    assert dead.letters == []
    # 37 records at 3 per timestamp over pages of 4: ties straddle page boundaries.
    assert sorted(sink.keys(ixc_state.CUSTOMERS), key=int) == ids(sim.isp, "cliente")
    assert sorted(sink.keys(ixc_state.CONTRACTS), key=int) == ids(sim.isp, "cliente_contrato")
    logins = sorted(sink.keys(ixc_state.SUBSCRIBERS))
    assert logins == sorted(r["login"] for r in sim.isp.records("radusuarios"))
    assert len(sink.keys(ixc_state.NAS)) == 3
    devices = Counter(sink.keys(ixc_state.DEVICES))
    assert len(devices) == 19
    assert set(devices.values()) == {1}
    assert sink.keys(ixc_state.CONTRACT_STATUS) == []  # first sighting is not a change
    assert report.emitted == len(sink.events)
    # Login speeds were resolved through the RADIUS groups.
    login = next(e for n, e in sink.events if n == ixc_state.SUBSCRIBERS.name)
    assert login["download_kbps"] is not None


async def test_watermark_is_persisted_and_next_poll_only_gets_changes(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    await poller(client, MemorySink(), MemoryDeadLetters(), store).poll_once()
    assert store.path.exists()
    saved = store.load()
    assert {spec.form for spec in FORMS} <= set(saved.forms)
    assert len(saved.contracts) == 37

    sim.isp.update("cliente", "12", {"email": "novo@example.com.br"})
    sim.isp.update("cliente", "30", {"razao": "Nome Novo"})
    sink = MemorySink()
    # A new poller instance: state comes only from the file.
    await poller(client, sink, MemoryDeadLetters(), store).poll_once()
    assert sink.keys(ixc_state.CUSTOMERS) == ["12", "30"]
    assert [n for n, _ in sink.events] == [ixc_state.CUSTOMERS.name] * 2

    sink = MemorySink()
    await poller(client, sink, MemoryDeadLetters(), store).poll_once()
    assert sink.events == []


async def test_bulk_update_larger_than_a_page_is_drained_by_id(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    await poller(client, MemorySink(), MemoryDeadLetters(), store).poll_once()
    bulk = [str(i) for i in range(5, 19)]  # 14 records, one timestamp, pages of 4
    sim.isp.touch("cliente", bulk, {"ativo": "N"})
    sink = MemorySink()
    await poller(client, sink, MemoryDeadLetters(), store).poll_once()
    assert sink.keys(ixc_state.CUSTOMERS) == bulk


async def test_record_updated_during_the_listing_is_not_lost(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    class MutatingSink(MemorySink):
        async def emit(self, topic: TopicSpec, record: Mapping[str, Any]) -> None:
            # While page one is emitted, an IXC user edits records on later and earlier pages.
            if topic is ixc_state.CUSTOMERS and record["customer_id"] == "1":
                sim.isp.update("cliente", "2", {"email": "a@b.c"})
                sim.isp.update("cliente", "33", {"email": "d@e.f"})
            await super().emit(topic, record)

    sink = MutatingSink()
    await poller(client, sink, MemoryDeadLetters(), store).poll_once()
    keys = sink.keys(ixc_state.CUSTOMERS)
    assert set(keys) == set(ids(sim.isp, "cliente"))
    # The edited records come again with their new timestamp; nothing is skipped.
    assert keys.count("33") >= 1
    assert keys[-2:] == ["2", "33"]


async def test_persistent_500s_stop_the_poll_without_passing_unlisted_records(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    # Requests 1-3 succeed (plans aside, cliente comes first), then IXC fails for good.
    sim.faults = FaultPlan(script=["none", "none", "none"] + ["500"] * 50)
    sink = MemorySink()
    with pytest.raises(IxcUnavailableError) as caught:
        await poller(client, sink, MemoryDeadLetters(), store).poll_once()
    assert caught.value.retriable
    emitted = sink.keys(ixc_state.CUSTOMERS)
    assert 0 < len(emitted) < 37
    mark = store.load().mark("cliente")
    # The watermark covers exactly what was emitted, nothing beyond.
    covered = [
        r["id"]
        for r in sim.isp.records("cliente")
        if (r["ultima_atualizacao"], int(r["id"])) <= (mark.updated, mark.last_id)
    ]
    assert sorted(covered, key=int) == sorted(emitted, key=int)

    sim.faults = FaultPlan()
    sink2 = MemorySink()
    await poller(client, sink2, MemoryDeadLetters(), store).poll_once()
    recovered = set(emitted) | set(sink2.keys(ixc_state.CUSTOMERS))
    assert recovered == set(ids(sim.isp, "cliente"))


async def test_unacknowledged_events_do_not_move_the_watermark(
    client: IxcClient, store: WatermarkStore
) -> None:
    sink = MemorySink()
    sink.fail_on_emit = 6  # the second page of customers fails at the broker
    with pytest.raises(DeliveryError):
        await poller(client, sink, MemoryDeadLetters(), store).poll_once()
    mark = store.load().mark("cliente")
    assert mark.last_id < 6
    assert "cliente_contrato" not in store.load().forms


async def test_malformed_record_goes_to_dead_letters_and_the_rest_is_emitted(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    sim.isp.forms["radusuarios"]["7"]["autenticacao"] = "??"
    sim.isp.forms["cliente"]["3"]["ativo"] = "talvez"
    sink, dead = MemorySink(), MemoryDeadLetters()
    report = await poller(client, sink, dead, store).poll_once()
    assert [(d.form, d.record_id, d.field) for d in dead.letters] == [
        ("cliente", "3", "ativo"),
        ("radusuarios", "7", "autenticacao"),
    ]
    letter = dead.letters[1]
    assert letter.topic is SUBSCRIBERS.topic
    assert letter.code == "ixc_mapping"
    assert "unknown authentication code" in letter.message
    assert letter.record["senha"] == "***"  # the clear password never reaches a DLQ
    assert "3" not in sink.keys(CUSTOMERS.topic)
    assert len(sink.keys(CUSTOMERS.topic)) == 36
    assert "cliente7@sim" not in sink.keys(SUBSCRIBERS.topic)
    assert len(sink.keys(SUBSCRIBERS.topic)) == 36
    assert report.dead_lettered == 2
    # Dead-lettered records are behind the watermark: reported once, not on every poll.
    dead2 = MemoryDeadLetters()
    await poller(client, MemorySink(), dead2, store).poll_once()
    assert dead2.letters == []


async def test_contract_block_and_trust_unblock_emit_status_changes(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    active = [r["id"] for r in sim.isp.records("cliente_contrato") if r["status_internet"] == "A"]
    first, second = active[0], active[1]
    await poller(client, MemorySink(), MemoryDeadLetters(), store).poll_once()

    sim.isp.block_contract(first, "CA")
    sim.isp.block_contract(second, "FA")
    sink = MemorySink()
    report = await poller(client, sink, MemoryDeadLetters(), store).poll_once()
    changes = {e["contract_id"]: e for n, e in sink.events if n == ixc_state.CONTRACT_STATUS.name}
    assert changes[first]["new_status"] == "BLOCKED"
    assert changes[first]["reason"] == "NON_PAYMENT_BLOCK"
    assert changes[second]["new_status"] == "REDUCED"
    assert report.forms[CONTRACTS.form].status_changes == 2
    logins = {e["contract_id"]: e for n, e in sink.events if n == ixc_state.SUBSCRIBERS.name}
    assert logins[first]["status"] == "BLOCKED"

    sim.isp.unblock_contract(first, trust=True)
    sink = MemorySink()
    await poller(client, sink, MemoryDeadLetters(), store).poll_once()
    (change,) = [e for n, e in sink.events if n == ixc_state.CONTRACT_STATUS.name]
    assert (change["previous_status"], change["new_status"]) == ("BLOCKED", "ACTIVE")
    assert change["reason"] == "TRUST_UNBLOCK"


async def test_corrupt_watermark_file_is_an_error_not_a_fresh_start(
    client: IxcClient, store: WatermarkStore
) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(WatermarkError):
        await poller(client, MemorySink(), MemoryDeadLetters(), store).poll_once()


async def test_run_loop_survives_ixc_outages_and_stops_on_request(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    sim.faults = FaultPlan(error_rate=1.0)
    stop = asyncio.Event()
    sink = MemorySink()
    task = asyncio.create_task(
        poller(client, sink, MemoryDeadLetters(), store).run(interval_s=0.05, stop=stop)
    )
    await asyncio.sleep(0.2)
    assert not task.done()  # retriable: logged and retried, not raised
    sim.faults = FaultPlan()
    for _ in range(100):
        if len(sink.keys(ixc_state.CUSTOMERS)) >= 37:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert set(sink.keys(ixc_state.CUSTOMERS)) == set(ids(sim.isp, "cliente"))


async def test_run_loop_ends_on_a_non_retriable_error(
    sim: IxcSimulator, store: WatermarkStore
) -> None:
    cfg = IxcSettings(base_url=sim.base_url, token=SecretStr("wrong"), min_request_interval_s=0)
    async with IxcClient(cfg, sleep=no_sleep) as ixc:
        with pytest.raises(IxcRequestRejectedError):
            await poller(ixc, MemorySink(), MemoryDeadLetters(), store).run(interval_s=0.01)


async def test_an_ixc_that_ignores_filters_is_a_clear_error_not_a_loop(
    sim: IxcSimulator, client: IxcClient, store: WatermarkStore
) -> None:
    async def ignore_filters(form: str, body: Mapping[str, Any]) -> Any:
        records = sorted(sim.isp.records(form), key=lambda r: int(r["id"]))[:4]
        return web.json_response({"page": "1", "total": "37", "registros": records})

    sim.register_action("listar", ignore_filters)
    with pytest.raises(IxcProtocolError) as caught:
        await poller(client, MemorySink(), MemoryDeadLetters(), store).poll_once()
    assert not caught.value.retriable
