"""The IXC adapter end to end against real Kafka and the registry: simulator -> poller ->
acked Avro events on the prefixed ixc.* topics, status changes and dead letters included."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import Consumer
from pydantic import SecretStr

from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_serdes
from filas.catalog import Catalog, TopicSpec, ixc_state
from filas.settings import IxcSettings, Settings, TopicsSettings
from producers.ixc.poller import PollReport
from producers.ixc.service import run_poller
from producers.ixc.simulator import IxcSimulator, SimulatedIsp

pytestmark = pytest.mark.integration

TOKEN = "integration-token"
SP = ZoneInfo("America/Sao_Paulo")


def read_all(settings: Settings, spec: TopicSpec, expected: int) -> list[dict[str, Any]]:
    consumer = Consumer(
        settings.kafka.client_config()
        | {"group.id": f"read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([spec.name])
    serde = build_serdes(settings)(spec)
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(records) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            record = serde.deserialize(msg.value())
            assert msg.key().decode() == str(record[spec.key_field])
            records.append(record)
    # Linger a little: more records than expected is a failure too.
    extra = consumer.poll(2.0)
    if extra is not None and not extra.error():
        records.append(serde.deserialize(extra.value()))
    consumer.close()
    return records


def test_poller_puts_every_ixc_record_on_kafka(
    platform: Settings, unique_name: str, tmp_path: Path
) -> None:
    catalog = Catalog.build(unique_name)
    TopicAdmin(platform.kafka).apply(
        Catalog(
            {s.name: s for s in catalog if s.name.removeprefix(unique_name).startswith("ixc.")},
            unique_name,
        )
    )
    isp = SimulatedIsp(seed=9, customers=40, devices=15, nas=2)
    isp.forms["cliente"]["5"]["ativo"] = "talvez"  # one malformed record
    simulator = IxcSimulator(isp, token=TOKEN)

    async def scenario() -> tuple[PollReport | None, PollReport | None]:
        base_url = await simulator.start()
        settings = platform.model_copy(
            update={
                "topics": TopicsSettings(prefix=unique_name),
                "ixc": IxcSettings(
                    base_url=base_url,
                    token=SecretStr(TOKEN),
                    page_size=7,
                    min_request_interval_s=0.0,
                    watermark_path=tmp_path / "wm.json",
                ),
            }
        )
        try:
            first = await run_poller(settings, once=True, tz=SP)
            active = next(
                r["id"] for r in isp.records("cliente_contrato") if r["status_internet"] == "A"
            )
            isp.block_contract(active, "CA")
            second = await run_poller(settings, once=True, tz=SP)
        finally:
            await simulator.stop()
        return first, second

    first, second = asyncio.run(scenario())
    assert first is not None
    assert second is not None
    assert first.dead_lettered == 1
    assert second.emitted == 2  # the contract and its login

    customers = read_all(platform, catalog.resolve(ixc_state.CUSTOMERS), 39)
    assert sorted(int(c["customer_id"]) for c in customers) == [i for i in range(1, 41) if i != 5]
    devices = read_all(platform, catalog.resolve(ixc_state.DEVICES), 15)
    assert len({d["device_id"] for d in devices}) == 15
    (change,) = read_all(platform, catalog.resolve(ixc_state.CONTRACT_STATUS), 1)
    assert change["reason"] == "NON_PAYMENT_BLOCK"
    (letter,) = read_all(platform, catalog.dead_letter_for(ixc_state.CUSTOMERS), 1)
    assert letter["source_topic"] == f"{unique_name}ixc.customers"
    assert letter["raw_key"] == b"5"
