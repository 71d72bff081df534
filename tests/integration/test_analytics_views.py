"""Every analyst query (consumers/clickhouse/views/*.sql) against real rows.

One module fixture produces events of every family the queries read through the producer SDK
into a unique-prefix catalog, runs the real sink into a private ClickHouse database, and each
test runs one named query and checks its figures against what was produced (computed here).
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.clickhouse import analytics
from consumers.clickhouse.app import build_sink, run_migrations
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseError
from consumers.clickhouse.sink import SinkConfig
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.errors import UnknownTopicError
from filas.settings import Settings, TopicsSettings
from schemas.catalog import SchemaCatalog
from schemas.samples import sample

pytestmark = pytest.mark.integration

# Whole minutes, so per-minute buckets are known; recent, so the monthly partition is current.
T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
WINDOW = {
    "start": T0.replace(tzinfo=None),
    "end": (T0 + timedelta(minutes=10)).replace(tzinfo=None),
}
LAG_TOPIC = "filas.monitoring.lag"
# ClickHouse's answers to an unknown user or a wrong password (18.16; current releases: 516).
UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED = 192, 193, 516


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass
class Produced:
    """Records per catalog topic name, produced in order."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    schemas: SchemaCatalog = field(default_factory=SchemaCatalog.load)
    catalog: Catalog = field(default_factory=Catalog.build)

    def add(self, name: str, occurred_at: datetime, /, **values: Any) -> None:
        spec = self.catalog.get(name)
        schema = self.schemas.get(spec.value_schema)
        record = copy.deepcopy(sample(schema.parsed, schema.named_types, 0))
        record["envelope"] = {
            "event_id": str(uuid.uuid4()),
            "occurred_at": occurred_at,
            "source_system": "test-analytics",
            "correlation_id": None,
        }
        for key, value in values.items():
            if key not in record:
                raise KeyError(f"{spec.value_schema} has no field {key}")
            record[key] = value
        self.records.setdefault(name, []).append(record)


def has_lag_topic() -> bool:
    try:
        Catalog.build().get(LAG_TOPIC)
    except UnknownTopicError:
        return False
    return True


# -- the data ------------------------------------------------------------------------------

# (nas, minute, decision, reason, latency_us)
DECISIONS = [
    ("10.1.0.1", 0, "accept", "ok", 1000),
    ("10.1.0.1", 0, "accept", "ok", 2000),
    ("10.1.0.1", 0, "accept", "ok", 3000),
    ("10.1.0.1", 0, "reject", "wrong_password", 4000),
    ("10.1.0.1", 1, "accept", "ok", 500),
    ("10.1.0.1", 1, "reject", "blocked_non_payment", 1500),
    ("10.1.0.2", 0, "reject", "wrong_password", 10000),
    ("10.1.0.2", 0, "reject", "wrong_password", 12000),
    ("10.1.0.2", 0, "reject", "unknown_login", 9000),
    ("10.1.0.2", 3, "accept", "ok", 700),
]


def produce_radius(p: Produced) -> None:
    for i, (nas, minute, decision, reason, latency) in enumerate(DECISIONS):
        p.add(
            "radius.auth-decisions",
            at(minute + 0.1 * (i % 5)),
            login=f"d{i}@fibra",
            nas_ip_address=nas,
            decision=decision,
            reason=reason,
            latency_us=latency,
        )
    # Outside the window: must not count.
    p.add(
        "radius.auth-decisions",
        at(-60),
        login="old@fibra",
        nas_ip_address="10.1.0.1",
        decision="reject",
        reason="disabled",
        latency_us=99,
    )
    # Reconnect storm: NAS A asks 5/min, and 100 more logins in minute 6; NAS B a steady 20/min.
    for minute in range(10):
        for k in range(5):
            p.add("radius.auth-requests", at(minute + k / 10), login=f"a{k}", nas_ip_address="A")
        for k in range(20):
            p.add("radius.auth-requests", at(minute + k / 40), login=f"b{k}", nas_ip_address="B")
    for k in range(100):
        p.add("radius.auth-requests", at(6.5), login=f"storm{k}", nas_ip_address="A")

    # Sessions per plan: u1 -> c1 (Fibra 100M), u2 -> c2 (Fibra 300M), u3 unknown to IXC.
    p.add("ixc.subscribers", at(-300), login="u1", contract_id="c9")
    p.add("ixc.subscribers", at(-200), login="u1", contract_id="c1")
    p.add("ixc.subscribers", at(-200), login="u2", contract_id="c2")
    p.add("ixc.contracts", at(-300), contract_id="c1", plan_name="Fibra 50M")
    p.add("ixc.contracts", at(-100), contract_id="c1", plan_name="Fibra 100M")
    p.add("ixc.contracts", at(-100), contract_id="c2", plan_name="Fibra 300M")
    p.add("ixc.contracts", at(-100), contract_id="c9", plan_name="Fibra Old")
    sessions = [
        # login, session, status, input, output, minute
        ("u1", "s1", "start", 0, 0, 1),
        ("u1", "s1", "interim_update", 100, 1000, 2),
        ("u1", "s1", "stop", 150, 2000, 3),
        ("u1", "s2", "start", 0, 0, 4),
        ("u1", "s2", "interim_update", 10, 20, 5),
        ("u2", "s3", "interim_update", 1000, 5000, 2),
        ("u3", "s4", "interim_update", 1, 2, 2),
        ("u2", "s9", "interim_update", 7777, 7777, -30),  # before the window
    ]
    for login, session, status, upload, download, minute in sessions:
        p.add(
            "radius.accounting",
            at(minute),
            login=login,
            session_id=session,
            status_type=status,
            nas_ip_address="10.9.0.1",
            input_octets=upload,
            output_octets=download,
        )
    p.add(
        "radius.accounting",
        at(2),
        login="nas-wide",
        session_id="nas",
        status_type="accounting_on",
        nas_ip_address="10.9.0.1",
        input_octets=0,
        output_octets=0,
    )


# device -> (pop or None when IXC has no record, up rounds, down rounds, rtt)
DEVICES = {
    "d1": ("p1", 10, 0, 10.0),
    "d2": ("p1", 7, 3, 20.0),
    "d3": ("p2", 0, 4, None),
    "d4": (None, 2, 0, 5.0),
}


def produce_network(p: Produced) -> None:
    p.add("ixc.devices", at(-500), device_id="d1", pop_id="p0")
    for device, (pop, up, down, rtt) in DEVICES.items():
        if pop is not None:
            p.add("ixc.devices", at(-400), device_id=device, pop_id=pop)
        for r in range(up + down):
            answered = r < up
            p.add(
                "net.ping-results",
                at(r / 2),
                device_id=device,
                probes_sent=3,
                probes_received=3 if answered else 0,
                loss_ratio=0.0 if answered else 1.0,
                rtt_min_ms=rtt if answered else None,
                rtt_avg_ms=rtt if answered else None,
                rtt_max_ms=rtt if answered else None,
            )
    p.add("net.ping-results", at(-90), device_id="d3", probes_received=3, rtt_avg_ms=1.0)

    def alert(aid: str, action: str, minute: float, opened: float, **values: Any) -> None:
        p.add(
            "net.alerts",
            at(minute),
            alert_id=aid,
            action=action,
            opened_at=at(opened),
            resolved_at=at(minute) if action == "resolve" else None,
            **values,
        )

    a1, a2, a3, a4 = (str(uuid.uuid4()) for _ in range(4))
    r1 = {"root_device_id": "r1", "root_device_name": "OLT-1", "pop_name": "POP-A"}
    r2 = {"root_device_id": "r2", "root_device_name": "OLT-2", "pop_name": "POP-B"}
    alert(
        a1, "open", 1, 1, state="down", affected_subscriber_count=100, affected_device_count=5, **r1
    )
    alert(
        a1,
        "update",
        2,
        1,
        state="down",
        affected_subscriber_count=150,
        affected_device_count=6,
        **r1,
    )
    alert(
        a1, "resolve", 5, 1, state="up", affected_subscriber_count=0, affected_device_count=0, **r1
    )
    alert(
        a2,
        "open",
        3,
        3,
        state="degraded",
        affected_subscriber_count=10,
        affected_device_count=1,
        **r1,
    )
    alert(
        a2, "resolve", 4, 3, state="up", affected_subscriber_count=0, affected_device_count=0, **r1
    )
    alert(
        a3, "open", 2, 2, state="down", affected_subscriber_count=40, affected_device_count=2, **r2
    )
    alert(
        a4,
        "open",
        -120,
        -120,
        state="down",
        affected_subscriber_count=9,
        affected_device_count=9,
        **r1,
    )


K1, K2 = str(uuid.uuid4()), str(uuid.uuid4())


def produce_campaigns(p: Produced) -> None:
    messages = [str(uuid.uuid4()) for _ in range(10)]
    for i, message in enumerate(messages):
        lane = "campaign.messages.transactional" if i < 4 else "campaign.messages.bulk"
        kind = lane.rsplit(".", 1)[1]
        p.add(lane, at(0.5), message_id=message, campaign_id=K1, recipient_id=f"r{i}", lane=kind)
    # The fan-out retried message 0: same message id, new event.
    bulk = "campaign.messages.bulk"
    p.add(bulk, at(0.6), message_id=messages[0], campaign_id=K1, recipient_id="r0", lane="bulk")
    for i in range(2):
        p.add(
            bulk,
            at(1),
            message_id=str(uuid.uuid4()),
            campaign_id=K2,
            recipient_id=f"q{i}",
            lane="bulk",
        )
    results = [
        (0, "sent", 1),
        (0, "delivered", 3),
        (1, "sent", 1),
        (1, "delivered", 3),
        (2, "sent", 1.5),
        (2, "delivered", 4),
        (3, "sent", 2),
        (4, "permanent_failure", 2),
        (5, "temporary_failure", 1),
        (5, "sent", 2.5),
        (6, "skipped_optout", 1),
        (7, "cancelled", 2),
    ]
    for i, status, minute in results:
        p.add(
            "campaign.delivery-results",
            at(minute),
            message_id=messages[i],
            campaign_id=K1,
            recipient_id=f"r{i}",
            status=status,
            finished_at=at(minute),
        )


def produce_lag(p: Produced) -> None:  # the sample's own 'topic' field: add() is positional
    samples = [
        # group, topic, partition, seconds, lag, consume_rate, produce_rate
        ("g1", "tA", 0, 0, 10, 1.0, 2.0),
        ("g1", "tA", 0, 30, 20, 1.5, 2.5),
        ("g1", "tA", 1, 0, 5, 0.5, 0.5),
        ("g1", "tA", 1, 30, 7, 0.25, 0.5),
        ("g1", "tA", 0, 60, 40, 0.0, 1.0),
        ("g1", "tA", 1, 60, 0, 3.0, None),
        ("g2", "tB", 0, 10, 3, None, None),
    ]
    for group, topic, partition, seconds, lag, consume, produce in samples:
        p.add(
            LAG_TOPIC,
            T0 + timedelta(seconds=seconds),
            consumer_group=group,
            topic=topic,
            partition=partition,
            committed=100,
            end_offset=100 + lag,
            lag=lag,
            consume_rate=consume,
            produce_rate=produce,
        )


# -- the fixture -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Landed:
    settings: Settings
    catalog: Catalog
    clickhouse: ClickHouse

    def run(self, name: str, **params: Any) -> list[dict[str, Any]]:
        return analytics.run(self.clickhouse, name, self.catalog, WINDOW | params).dicts()


@pytest.fixture(scope="module")
def landed(platform: Settings) -> Iterator[Landed]:
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    database = f"analytics_{uuid.uuid4().hex[:10]}"
    settings = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=prefix),
            "clickhouse": platform.clickhouse.model_copy(update={"database": database}),
        }
    )
    produced = Produced()
    produce_radius(produced)
    produce_network(produced)
    produce_campaigns(produced)
    if has_lag_topic():
        produce_lag(produced)
    names = sorted(produced.records)
    catalog = Catalog.build(prefix)
    TopicAdmin(settings.kafka).apply(catalog.only(*names))
    with build_producer(settings, catalog=catalog) as producer:
        for name in names:
            for record in produced.records[name]:
                producer.emit(catalog.get(name), record)
    run_migrations(settings, names)
    sink = build_sink(
        settings, topics=names, group_id=f"{prefix}sink", config=SinkConfig(linger_s=0.3)
    )
    stats = sink.run(idle_exit_s=3)
    assert stats.dead_letters == 0
    assert stats.skipped == 0
    for name in names:
        assert stats.rows.get(catalog.get(name).name) == len(produced.records[name]), name
    clickhouse = ClickHouse(settings.clickhouse)
    try:
        yield Landed(settings, catalog, clickhouse)
    finally:
        clickhouse.query(f"DROP DATABASE IF EXISTS `{database}`")
        clickhouse.close()


# -- the queries -----------------------------------------------------------------------------


def quantile_exact(values: list[int], level: float) -> int:
    """ClickHouse's quantileExact: the element at floor(level * n) of the sorted values."""
    ordered = sorted(values)
    return ordered[min(int(level * len(ordered)), len(ordered) - 1)]


def test_auth_by_nas_minute(landed: Landed) -> None:
    rows = landed.run("auth_by_nas_minute")
    groups: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for nas, minute, decision, _reason, latency in DECISIONS:
        groups.setdefault((nas, minute), []).append((decision, latency))
    assert [(r["nas_ip_address"], r["minute"]) for r in rows] == [
        (nas, at(minute)) for nas, minute in sorted(groups)
    ]
    for row, key in zip(rows, sorted(groups), strict=True):
        group = groups[key]
        latencies = [lat for _d, lat in group]
        accepts = sum(1 for d, _l in group if d == "accept")
        assert row["decisions"] == len(group)
        assert row["accepts"] == accepts
        assert row["rejects"] == len(group) - accepts
        assert row["success_rate"] == round(accepts / len(group), 4)
        assert row["latency_avg_ms"] == round(sum(latencies) / len(latencies) / 1000, 3)
        assert row["latency_p50_ms"] == quantile_exact(latencies, 0.5) / 1000
        assert row["latency_p99_ms"] == quantile_exact(latencies, 0.99) / 1000


def test_reconnect_storms(landed: Landed) -> None:
    rows = landed.run("reconnect_storms", min_logins=50, factor=3)
    assert len(rows) == 1
    (storm,) = rows
    assert storm["nas_ip_address"] == "A"
    assert storm["minute"] == at(6)
    assert storm["requests"] == 105
    assert storm["logins"] == 105
    assert storm["baseline_per_minute"] == 15.0  # (10 * 5 + 100) / 10 minutes
    assert storm["times_baseline"] == 7.0
    # NAS B's steady 20/min never is; a lower bar finds A's minute only among A's.
    assert landed.run("reconnect_storms", min_logins=10, factor=1.5) == rows


def test_top_reject_reasons(landed: Landed) -> None:
    rows = landed.run("top_reject_reasons", limit=2)
    rejects = [(nas, reason) for nas, _m, decision, reason, _l in DECISIONS if decision == "reject"]
    assert [(r["reason"], r["rejects"]) for r in rows] == [
        ("wrong_password", 3),
        ("blocked_non_payment", 1),
    ]
    assert rows[0]["share"] == round(3 / len(rejects), 4)
    assert rows[0]["nases"] == 2
    assert rows[0]["logins"] == 3
    everything = landed.run("top_reject_reasons", limit=100)
    assert sum(r["rejects"] for r in everything) == len(rejects)  # the old 'disabled' is outside


def test_sessions_and_traffic_per_plan(landed: Landed) -> None:
    rows = landed.run("sessions_traffic_per_plan")
    assert [
        (r["plan"], r["sessions"], r["logins"], r["upload_bytes"], r["download_bytes"])
        for r in rows
    ] == [
        ("Fibra 300M", 1, 1, 1000, 5000),
        ("Fibra 100M", 2, 1, 160, 2020),
        ("(unknown)", 1, 1, 1, 2),
    ]


def test_device_availability(landed: Landed) -> None:
    rows = landed.run("device_availability")
    expected = []
    for device, (pop, up, down, rtt) in DEVICES.items():
        expected.append((round(up / (up + down), 4), device, pop or "", up + down, up, rtt))
    expected.sort()
    got = [
        (
            r["availability"],
            r["device_id"],
            r["pop_id"],
            r["rounds"],
            r["up_rounds"],
            r["rtt_avg_ms"],
        )
        for r in rows
    ]
    for g, e in zip(got, expected, strict=True):
        assert g[:5] == e[:5]
        if e[5] is None:
            assert g[5] is None or math.isnan(g[5])
        else:
            assert g[5] == e[5]


def test_pop_availability(landed: Landed) -> None:
    rows = landed.run("pop_availability")
    assert [
        (r["pop_id"], r["devices"], r["devices_never_up"], r["rounds"], r["availability"])
        for r in rows
    ] == [("p2", 1, 1, 4, 0.0), ("p1", 2, 0, 20, 0.85), ("", 1, 0, 2, 1.0)]


def test_mttr(landed: Landed) -> None:
    rows = landed.run("mttr")
    assert [(r["pop"], r["root_device_id"], r["alerts"], r["resolved"]) for r in rows] == [
        ("POP-A", "r1", 2, 2),
        ("POP-B", "r2", 1, 0),
    ]
    assert rows[0]["mttr_s"] == 150.0  # (4 min + 1 min) / 2
    assert rows[0]["max_repair_s"] == 240
    assert math.isnan(rows[1]["mttr_s"])  # nothing resolved: no mean


def test_alerts_per_root_cause(landed: Landed) -> None:
    rows = landed.run("alerts_per_root_cause")
    assert [
        (
            r["root_device_id"],
            r["root_device_name"],
            r["pop"],
            r["alerts"],
            r["down_alerts"],
            r["subscribers_affected"],
            r["max_devices_affected"],
        )
        for r in rows
    ] == [("r1", "OLT-1", "POP-A", 2, 1, 160, 6), ("r2", "OLT-2", "POP-B", 1, 1, 40, 2)]


def test_campaign_funnel(landed: Landed) -> None:
    rows = {r["campaign_id"]: r for r in landed.run("campaign_funnel")}
    assert set(rows) == {K1, K2}
    k1 = rows[K1]
    assert (k1["queued"], k1["sent"], k1["delivered"], k1["failed"], k1["skipped"]) == (
        10,
        5,
        3,
        1,
        1,
    )
    assert k1["cancelled"] == 1
    assert k1["pending"] == 2
    assert k1["sent_ratio"] == 0.5
    k2 = rows[K2]
    assert (k2["queued"], k2["sent"], k2["pending"]) == (2, 0, 2)


def test_campaign_send_rate(landed: Landed) -> None:
    rows = landed.run("campaign_send_rate")
    assert [(r["campaign_id"], r["minute"], r["sent"], r["sent_per_s"]) for r in rows] == [
        (K1, at(1), 3, 0.05),
        (K1, at(2), 2, 0.033),
    ]


def test_consumer_lag_history(landed: Landed) -> None:
    if not has_lag_topic():
        pytest.skip(f"pending: the catalog has no {LAG_TOPIC} topic (monitoring helper's)")
    rows = landed.run("consumer_lag_history")
    assert [
        (
            r["consumer_group"],
            r["topic"],
            r["minute"],
            r["lag"],
            r["consume_rate"],
            r["produce_rate"],
        )
        for r in rows
    ] == [
        ("g1", "tA", at(0), 27, 1.75, 3.0),
        ("g1", "tA", at(1), 40, 3.0, 1.0),
        ("g2", "tB", at(0), 3, 0.0, 0.0),
    ]


def test_cli_runs_a_named_query_over_the_last_window(landed: Landed) -> None:
    from click.testing import CliRunner

    from filas.cli.sink_cmds import query_cmd

    result = CliRunner().invoke(
        query_cmd,
        ["top_reject_reasons", "--since", "90m", "-p", "limit=2", "--json"],
        obj=landed.settings,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["reason"], r["rejects"]) for r in rows] == [
        ("wrong_password", 3),
        ("blocked_non_payment", 1),
    ]


def test_every_query_runs_as_the_read_only_analyst(landed: Landed) -> None:
    """On a platform started with the current users.xml (CI's session platform) the analyst
    user runs every query; a shared platform started before the users existed skips."""
    analyst = ClickHouse(landed.settings.clickhouse.as_analyst())
    try:
        try:
            analyst.query("SELECT 1")
        except ClickHouseError as exc:
            if exc.server_code in (UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED):
                pytest.skip(f"this ClickHouse has no analyst user yet ({exc.server_code})")
            raise
        params = {"min_logins": 50, "factor": 3, "limit": 10}
        for name, query in analytics.queries().items():
            extra = {k: v for k, v in params.items() if k in query.params}
            mine = analytics.run(analyst, name, landed.catalog, WINDOW | extra)
            admins = analytics.run(landed.clickhouse, name, landed.catalog, WINDOW | extra)
            assert mine.columns == admins.columns, name
            assert len(mine.rows) == len(admins.rows), name
    finally:
        analyst.close()


def test_every_query_has_a_test() -> None:
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    aliases = {"sessions_and_traffic_per_plan": "sessions_traffic_per_plan"}
    covered = {aliases.get(t, t) for t in tested}
    assert set(analytics.queries()) <= covered
