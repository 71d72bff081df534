"""History for analysts: ping results, alerts and responses land in ClickHouse through the real
sink, and the SQL documented in docs/network.md answers availability and MTTR on those rows.

Two hours of one-minute rounds for a POP -> OLT -> ONU chain and a switch in a second POP; the
ONU dies alone at 10:20, the OLT (with it) at 10:30, both back at 10:40; the switch is down
11:10-11:15. Alerts come from the real engine fed those results; the expected figures are
computed here from the same rounds.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.clickhouse.analytics import NamedQuery, render
from consumers.clickhouse.app import build_sink, run_migrations
from consumers.clickhouse.client import ClickHouse
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.ixc_state import DEVICES
from filas.catalog.network import ALERTS, PING_RESULTS, RESPONSES
from filas.settings import PingSettings, Settings, TopicsSettings
from producers.envelope import envelope
from streams.network.engine import AlertEngine, Observation
from streams.network.responses import ResponsePlanner
from streams.network.service import alert_record, device_info

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "network.md"
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
ROUNDS = 120
TOPICS = ["ixc.devices", "net.ping-results", "net.alerts", "net.responses"]


def documented_queries() -> dict[str, str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.DOTALL)
    out = {}
    for block in blocks:
        name = re.match(r"-- query: (\w+)", block)
        assert name, block[:80]
        out[name.group(1)] = block
    return out


def devices() -> list[dict[str, Any]]:
    def dev(i: str, kind: str, parent: str | None, pop: str, logins: list[str]) -> dict[str, Any]:
        return {
            "envelope": envelope("test"),
            "device_id": i,
            "name": i.upper(),
            "device_type": kind,
            "ip": "127.0.0.1",
            "parent_device_id": parent,
            "pop_id": pop,
            "linked_login_ids": logins,
            "ping_class": "CRITICAL",
        }

    return [
        dev("pop-a", "POP", None, "1", []),
        dev("olt-a", "OLT", "pop-a", "1", []),
        dev("onu-a", "ONU", "olt-a", "1", ["L1"]),
        dev("sw-b", "SWITCH", None, "2", ["L2", "L3"]),
    ]


def minute(m: int) -> datetime:
    return START + timedelta(minutes=m)


def is_down(device_id: str, m: int) -> bool:
    if device_id == "onu-a":
        return 20 <= m < 40
    if device_id == "olt-a":
        return 30 <= m < 40
    if device_id == "sw-b":
        return 70 <= m < 75
    return False


@pytest.fixture
def settings(platform: Settings, unique_name: str) -> Iterator[Settings]:
    database = f"net_{uuid.uuid4().hex[:10]}"
    ours = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "clickhouse": platform.clickhouse.model_copy(update={"database": database}),
        }
    )
    yield ours
    admin = ClickHouse(ours.clickhouse, database="default")
    admin.query(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()


def test_history_lands_and_documented_queries_answer(settings: Settings) -> None:
    catalog = Catalog.build(settings.topics.prefix)
    TopicAdmin(settings.kafka).apply(
        catalog.only(*TOPICS, *(catalog.dead_letter_for(catalog.get(t)) for t in TOPICS))
    )
    engine = AlertEngine(PingSettings(down_after_rounds=3, up_after_rounds=2))
    planner = ResponsePlanner(PingSettings().responses)
    alerts: list[dict[str, Any]] = []
    responses = 0
    with build_producer(settings, catalog=catalog) as producer:
        for d in devices():
            producer.emit(DEVICES, d)
            engine.upsert_device(device_info(d))
        for m in range(ROUNDS):
            at = minute(m)
            for d in ("pop-a", "olt-a", "onu-a", "sw-b"):
                down = is_down(d, m)
                producer.emit(
                    PING_RESULTS,
                    {
                        "envelope": envelope("test", occurred_at=at),
                        "device_id": d,
                        "target_ip": "127.0.0.1",
                        "probes_sent": 3,
                        "probes_received": 0 if down else 3,
                        "loss_ratio": 1.0 if down else 0.0,
                        "rtt_avg_ms": None if down else 1.0,
                        "probed_at": at,
                        "pinger_instance": "test",
                    },
                )
                ms = int(at.timestamp() * 1000)
                engine.observe(Observation(d, ms, 3, 0 if down else 3, None if down else 1.0))
            for event in engine.drain():
                alerts.append(alert_record(event))
                producer.emit(ALERTS, alerts[-1])
                for response in planner.plan(event):
                    producer.emit(RESPONSES, response)
                    responses += 1
    actions = [(a["root_device_id"], a["action"]) for a in alerts]
    assert ("onu-a", "open") in actions
    assert ("olt-a", "open") in actions
    assert ("sw-b", "open") in actions
    assert any(a["merged_into_alert_id"] for a in alerts)

    run_migrations(settings, TOPICS)
    stats = build_sink(settings, topics=TOPICS, group_id=f"{catalog.prefix}sink").run(idle_exit_s=4)
    assert stats.dead_letters == 0
    clickhouse = ClickHouse(settings.clickhouse)
    try:
        tables = {t: t.replace(".", "_").replace("-", "_") for t in TOPICS}

        def count(topic: str) -> int:
            name = f"{catalog.prefix}{tables[topic]}".replace("-", "_")
            return int(clickhouse.query(f"SELECT count() FROM `{name}` FINAL")[0][0])  # noqa: S608

        assert count("net.ping-results") == 4 * ROUNDS
        assert count("net.alerts") == len(alerts)
        assert count("net.responses") == responses
        assert count("ixc.devices") == 4

        queries = documented_queries()
        assert set(queries) == {"availability_device_hour", "availability_pop_day", "mttr_day"}
        params = {"start": START, "end": START + timedelta(hours=2)}

        def run(name: str) -> list[dict[str, Any]]:
            sql = render(NamedQuery(name, queries[name], name, ("start", "end")), catalog)
            columns, rows = clickhouse.query_with_columns(sql, params)
            return [dict(zip(columns, row, strict=True)) for row in rows]

        hourly = {
            (r["device_id"], r["hour"].replace(tzinfo=None)): r
            for r in run("availability_device_hour")
        }
        assert len(hourly) == 8
        for d in ("pop-a", "olt-a", "onu-a", "sw-b"):
            for h in (0, 1):
                minutes = range(60 * h, 60 * h + 60)
                up = sum(not is_down(d, m) for m in minutes)
                row = hourly[(d, (START + timedelta(hours=h)).replace(tzinfo=None))]
                assert (row["rounds"], row["up_rounds"]) == (60, up), (d, h, row)
                assert row["availability"] == pytest.approx(round(up / 60, 4))

        daily = {r["pop_id"]: r for r in run("availability_pop_day")}
        assert set(daily) == {"1", "2"}
        pop1_up = sum(not is_down(d, m) for d in ("pop-a", "olt-a", "onu-a") for m in range(120))
        assert (daily["1"]["devices"], daily["1"]["rounds"]) == (3, 360)
        assert daily["1"]["availability"] == pytest.approx(round(pop1_up / 360, 4))
        assert daily["2"]["availability"] == pytest.approx(round(115 / 120, 4))

        mttr = {(r["pop_id"], r["root_device_type"]): r for r in run("mttr_day")}
        # OLT: down at its 3rd failed round (10:32), up at its 2nd good one (10:41): 540 s.
        # The ONU's own alert was merged into it and is not an outage of its own.
        assert set(mttr) == {("1", "OLT"), ("2", "SWITCH")}
        assert (mttr["1", "OLT"]["outages"], mttr["1", "OLT"]["mttr_s"]) == (1, 540.0)
        assert mttr["1", "OLT"]["subscriber_outages"] == 1
        # Switch: down 11:12, up 11:16.
        assert (mttr["2", "SWITCH"]["outages"], mttr["2", "SWITCH"]["mttr_s"]) == (1, 240.0)
        assert mttr["2", "SWITCH"]["subscriber_outages"] == 2
    finally:
        clickhouse.close()
