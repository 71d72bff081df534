"""Campaign fan-out against real Kafka + registry: state topics in, messages and progress read
back from the broker. The test drives ``FanoutService.run_once`` itself, so pause/cancel land
between known batches; a "crash" is a service closed without its last progress event."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY

from filas.admin.topics import TopicAdmin
from filas.bootstrap import Serdes, build_producer, build_serdes
from filas.catalog import Catalog
from filas.catalog.campaigns import CAMPAIGNS, OPT_OUTS, PROGRESS
from filas.catalog.ixc_state import CONTRACTS, CUSTOMERS, SUBSCRIBERS
from filas.catalog.network import RESPONSES
from filas.cli.campaign_cmds import campaigns, command_record
from filas.errors import DeliveryError, FilasError
from filas.settings import CampaignsSettings, Settings, TopicsSettings
from producers.envelope import envelope
from producers.sdk import EventProducer
from streams.campaigns.outage import outage_campaign_id
from streams.campaigns.plan import message_id
from streams.campaigns.runner import FanoutService, message_topics

pytestmark = pytest.mark.integration


@dataclass
class Env:
    settings: Settings
    catalog: Catalog
    serdes: Serdes
    producer: EventProducer
    services: list[FanoutService] = field(default_factory=list)

    def service(self, **overrides: Any) -> FanoutService:
        settings = self.settings
        if overrides:
            settings = settings.model_copy(
                update={"campaigns": settings.campaigns.model_copy(update=overrides)}
            )
        svc = FanoutService(settings, catalog=self.catalog, serdes=self.serdes)
        svc.start()
        self.services.append(svc)
        return svc


@pytest.fixture
def env(platform: Settings, unique_name: str) -> Iterator[Env]:
    catalog = Catalog.build(unique_name)
    specs = [
        catalog.resolve(s)
        for s in (CUSTOMERS, CONTRACTS, SUBSCRIBERS, OPT_OUTS, RESPONSES, CAMPAIGNS, PROGRESS)
    ]
    specs.append(catalog.dead_letter_for(CAMPAIGNS))
    specs += list(dict.fromkeys(message_topics(catalog).values()))
    TopicAdmin(platform.kafka).apply(catalog.only(*specs))
    settings = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "campaigns": CampaignsSettings(
                batch_size=50, ready_timeout_s=60, outage_notices_start_from="earliest"
            ),
        }
    )
    serdes = build_serdes(settings)
    producer = build_producer(settings, catalog=catalog, serdes=serdes)
    e = Env(settings, catalog, serdes, producer)
    try:
        yield e
    finally:
        for svc in e.services:
            svc.close()
        producer.close(timeout_s=10)


class Reader:
    """Everything on the message topics and campaign.progress, read from the beginning."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.topics = {s.name: s for s in message_topics(env.catalog).values()}
        progress = env.catalog.resolve(PROGRESS)
        self.topics[progress.name] = progress
        self.consumer = Consumer(
            dict(env.settings.kafka.client_config())
            | {"group.id": f"reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
        parts = []
        for name in self.topics:
            meta = self.consumer.list_topics(name, timeout=10).topics[name]
            parts += [TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions]
        self.consumer.assign(parts)
        self.messages: list[dict[str, Any]] = []
        self.topic_of: dict[str, str] = {}
        self.progress: list[dict[str, Any]] = []
        self._progress_name = progress.name

    def poll(self) -> None:
        for msg in self.consumer.consume(num_messages=1000, timeout=0.2):
            if msg.error() or msg.value() is None:
                continue
            record = self.env.serdes(self.topics[msg.topic()]).deserialize(msg.value())
            if msg.topic() == self._progress_name:
                self.progress.append(record)
            else:
                self.messages.append(record)
                self.topic_of[str(record["message_id"])] = msg.topic()

    def of(self, campaign_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if str(m["campaign_id"]) == campaign_id]

    def last(self, campaign_id: str) -> dict[str, Any] | None:
        found = [p for p in self.progress if str(p["campaign_id"]) == campaign_id]
        return found[-1] if found else None

    def status(self, campaign_id: str) -> str | None:
        last = self.last(campaign_id)
        return str(last["status"]) if last else None

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def reader(env: Env) -> Iterator[Reader]:
    r = Reader(env)
    yield r
    r.close()


def drive(
    services: list[FanoutService],
    reader: Reader,
    until: Callable[[], bool],
    timeout_s: float = 45.0,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for svc in services:
            svc.run_once(timeout_s=0.05)
        reader.poll()
        if until():
            return
    raise AssertionError("condition not reached in time")


def customer(cid: str, **kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "envelope": envelope("test"),
        "customer_id": cid,
        "name": f"joana souza {cid}",
        "person_type": "INDIVIDUAL",
        "email": f"c{cid}@example.com",
        "mobile_phone": "67999990000",
        "city_id": "1",
        "timezone": "America/Sao_Paulo",
        "marketing_consent": True,
        "active": True,
        "tags": [],
    }
    record.update(kw)
    return record


def contract(cid: str, **kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "envelope": envelope("test"),
        "contract_id": f"k{cid}",
        "customer_id": cid,
        "plan_id": "p1",
        "plan_name": "Fibra 500",
        "status": "ACTIVE",
        "ixc_status": "A",
        "ixc_internet_status": "A",
        "days_overdue": 3,
        "monthly_price": Decimal("119.90"),
    }
    record.update(kw)
    return record


def campaign(**kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "envelope": envelope("test"),
        "campaign_id": str(uuid.uuid4()),
        "name": "Fatura",
        "command": "create",
        "channels": ["sms"],
        "template": {
            "subject": "Fatura {{ plan_name }}",
            "body": "{{ first_name }}, fatura de {{ monthly_price | brl }}",
        },
        "audience": {},
        "send_window_start_min": 0,
        "send_window_end_min": 1440,
        "lane": "bulk",
        "purpose": "billing",
    }
    record.update(kw)
    return record


def seed(env: Env, n: int, **kw: Any) -> list[str]:
    ids = [f"{i:04d}" for i in range(1, n + 1)]
    for cid in ids:
        env.producer.emit(CUSTOMERS, customer(cid, **kw))
        env.producer.emit(CONTRACTS, contract(cid))
    env.producer.flush()
    return ids


def test_counts_consent_opt_out_quiet_hours_and_frequency_cap(env: Env, reader: Reader) -> None:
    ids = seed(env, 30)
    env.producer.emit(CUSTOMERS, customer("0001", marketing_consent=False))
    env.producer.emit(CUSTOMERS, customer("0002", timezone="Asia/Tokyo"))
    env.producer.emit(CUSTOMERS, customer("0003", email=None))
    env.producer.emit(
        OPT_OUTS, {"envelope": envelope("test"), "customer_id": "0004", "channels": ["sms"]}
    )
    env.producer.flush()
    svc = env.service()
    # A one-hour window opening three hours from now, São Paulo time.
    sp_now = datetime.now(ZoneInfo("America/Sao_Paulo"))
    opens = (sp_now.hour * 60 + sp_now.minute + 180) % 1440
    promo = campaign(
        channels=["email", "sms"],
        purpose="marketing",
        frequency_cap_per_day=1,
        send_window_start_min=opens,
        send_window_end_min=(opens + 60) % 1440,
    )
    env.producer.emit_sync(CAMPAIGNS, promo)
    pid = promo["campaign_id"]
    drive([svc], reader, lambda: reader.status(pid) == "done")
    sent = reader.of(pid)
    pairs = {(m["recipient_id"], m["channel"]) for m in sent}
    # 30 customers x 2 channels - 2 (no consent) - 1 (no e-mail) - 1 (sms opt-out)
    assert len(sent) == len(pairs) == 56
    assert ("0001", "sms") not in pairs
    assert ("0003", "email") not in pairs
    assert ("0003", "sms") in pairs
    assert ("0004", "sms") not in pairs
    assert ("0004", "email") in pairs
    final = reader.last(pid)
    assert final is not None
    assert (final["matched"], final["planned"], final["queued"]) == (30, 56, 56)
    assert final["skipped_no_consent"] == 2
    assert final["skipped_opt_out"] == 1
    assert final["skipped_invalid_address"] == 1
    for m in sent:
        zone = ZoneInfo("Asia/Tokyo" if m["recipient_id"] == "0002" else "America/Sao_Paulo")
        local = m["not_before"].astimezone(zone)
        assert local.hour * 60 + local.minute == opens
        assert m["not_before"] > datetime.now(UTC)
        assert m["message_id"] == uuid.UUID(message_id(pid, m["recipient_id"], m["channel"]))
    assert sent[0]["body"].endswith("fatura de R$ 119,90")
    assert {m["purpose"] for m in sent} == {"marketing"}
    # A second capped campaign in the same lane: everyone already got one sms/e-mail today.
    again = campaign(
        channels=["sms"],
        purpose="billing",
        frequency_cap_per_day=1,
        send_window_start_min=opens,
        send_window_end_min=(opens + 60) % 1440,
    )
    env.producer.emit_sync(CAMPAIGNS, again)
    drive([svc], reader, lambda: reader.status(again["campaign_id"]) == "done")
    last = reader.last(again["campaign_id"])
    assert last is not None
    assert [m["recipient_id"] for m in reader.of(again["campaign_id"])] == ["0001"]
    # 0001 got no sms from the marketing campaign (no consent): not capped; 0004 opted out of sms.
    assert last["skipped_frequency_cap"] == len(ids) - 2
    assert last["skipped_opt_out"] == 1
    assert last["queued"] == 1


def test_template_error_fails_the_campaign_with_nothing_published(env: Env, reader: Reader) -> None:
    seed(env, 120)
    svc = env.service()
    bad = campaign(template={"subject": None, "body": "{{ first_name }} {{ boleto_url }}"})
    env.producer.emit_sync(CAMPAIGNS, bad)
    drive([svc], reader, lambda: reader.status(bad["campaign_id"]) == "failed")
    final = reader.last(bad["campaign_id"])
    assert final is not None
    assert final["error_code"] == "campaign_template_error"
    assert "boleto_url" in final["error"]
    good = campaign()
    env.producer.emit_sync(CAMPAIGNS, good)
    drive([svc], reader, lambda: reader.status(good["campaign_id"]) == "done")
    assert reader.of(bad["campaign_id"]) == []
    assert len(reader.of(good["campaign_id"])) == 120


def test_pause_resume_cancel(env: Env, reader: Reader) -> None:
    ids = seed(env, 400)
    svc = env.service()
    paused = campaign()
    cancelled = campaign(lane="transactional")
    pid, cid = paused["campaign_id"], cancelled["campaign_id"]
    env.producer.emit_sync(CAMPAIGNS, paused)
    drive([svc], reader, lambda: len(reader.of(pid)) >= 50)
    env.producer.emit_sync(CAMPAIGNS, command_record(pid, "pause", "test"))
    drive([svc], reader, lambda: reader.status(pid) == "paused")
    at_pause = len(reader.of(pid))
    assert at_pause < len(ids)
    for _ in range(20):  # nothing more while paused
        svc.run_once(timeout_s=0.05)
    reader.poll()
    assert len(reader.of(pid)) == at_pause
    env.producer.emit_sync(CAMPAIGNS, cancelled)
    drive([svc], reader, lambda: len(reader.of(cid)) >= 50)
    env.producer.emit_sync(CAMPAIGNS, command_record(cid, "cancel", "test"))
    drive([svc], reader, lambda: reader.status(cid) == "cancelled")
    env.producer.emit_sync(CAMPAIGNS, command_record(pid, "resume", "test"))
    drive([svc], reader, lambda: reader.status(pid) == "done")
    recipients = Counter(m["recipient_id"] for m in reader.of(pid))
    assert sorted(recipients) == ids
    assert set(recipients.values()) == {1}
    assert len(reader.of(cid)) < len(ids)
    env.producer.emit_sync(CAMPAIGNS, command_record(cid, "resume", "test"))
    for _ in range(20):
        svc.run_once(timeout_s=0.05)
    reader.poll()
    assert reader.status(cid) == "cancelled"


def test_restart_after_a_crash_reproduces_the_same_message_ids(env: Env, reader: Reader) -> None:
    ids = seed(env, 300)
    first = env.service()
    record = campaign(channels=["sms", "email"])
    rid = record["campaign_id"]
    env.producer.emit_sync(CAMPAIGNS, record)
    drive([first], reader, lambda: len(reader.of(rid)) >= 50)
    # The process dies after its next batch was acknowledged but before that batch's progress
    # event: the restarted fan-out must publish it again, with the same ids.
    lost: list[Any] = []

    def lose(topic: Any, record: Any, **kw: Any) -> None:
        lost.append(record)

    first.producer.emit_sync = lose  # type: ignore[method-assign,assignment]
    first.run_once(timeout_s=0.05)
    assert [r["status"] for r in lost] == ["running"]
    first.close()
    env.services.remove(first)
    reader.poll()
    before = len(reader.of(rid))
    second = env.service()
    drive([second], reader, lambda: reader.status(rid) == "done")
    sent = reader.of(rid)
    expected = {uuid.UUID(message_id(rid, r, c)) for r in ids for c in ("email", "sms")}
    counts = Counter(m["message_id"] for m in sent)
    assert set(counts) == expected
    duplicates = sum(n - 1 for n in counts.values())
    assert 0 < duplicates <= 50  # exactly the batch whose progress was lost
    assert before < len(sent)
    final = reader.last(rid)
    assert final is not None
    assert final["queued"] == len(expected)


def test_outage_holds_bulk_and_sends_one_notice_per_subscriber(env: Env, reader: Reader) -> None:
    seed(env, 5)
    for login, cid in (("a@f", "0002"), ("b@f", "0002"), ("c@f", "0003")):
        env.producer.emit(
            SUBSCRIBERS,
            {
                "envelope": envelope("test"),
                "login": login,
                "login_id": f"L-{login}",
                "login_type": "PPPOE",
                "contract_id": f"k{cid}",
                "customer_id": cid,
                "status": "ACTIVE",
                "password": "x",
            },
        )
    alert = str(uuid.uuid4())
    started = datetime.now(UTC) - timedelta(minutes=5)

    def response(kind: str, login_ids: list[str], **kw: Any) -> dict[str, Any]:
        return {
            "envelope": envelope("test"),
            "response_id": str(uuid.uuid4()),
            "kind": kind,
            "alert_id": alert,
            "root_device_id": "olt-7",
            "root_device_name": "OLT-CENTRO-07",
            "login_id": login_ids[0] if kind == "SUBSCRIBER_NOTICE" else None,
            "login_ids": login_ids,
            "outage_started_at": started,
            **kw,
        }

    affected = ["L-a@f", "L-b@f", "L-c@f"]
    env.producer.emit(RESPONSES, response("PAUSE_MARKETING", affected))
    for login_id in affected:
        env.producer.emit(RESPONSES, response("SUBSCRIBER_NOTICE", [login_id]))
    env.producer.flush()
    svc = env.service()
    outage_cid = outage_campaign_id(alert)
    drive([svc], reader, lambda: len(reader.of(outage_cid)) >= 2)
    promo = campaign(purpose="marketing")
    env.producer.emit_sync(CAMPAIGNS, promo)
    pid = promo["campaign_id"]
    drive([svc], reader, lambda: len(reader.of(pid)) >= 3)
    for _ in range(10):
        svc.run_once(timeout_s=0.05)
    reader.poll()
    assert sorted(m["recipient_id"] for m in reader.of(pid)) == ["0001", "0004", "0005"]
    last = reader.last(pid)
    assert last is not None
    assert (last["status"], last["held_outage"]) == ("running", 2)
    notices = reader.of(outage_cid)
    # Two logins of customer 0002 -> one message id; customer 0003 -> one.
    assert {m["recipient_id"] for m in notices} == {"0002", "0003"}
    assert len({m["message_id"] for m in notices}) == 2
    assert all(m["lane"] == "transactional" for m in notices)
    assert "OLT-CENTRO-07" in notices[0]["body"]
    lanes = message_topics(env.catalog)
    assert {reader.topic_of[str(m["message_id"])] for m in notices} == {lanes["transactional"].name}
    env.producer.emit_sync(
        RESPONSES, response("RESUME_MARKETING", affected, outage_ended_at=datetime.now(UTC))
    )
    drive([svc], reader, lambda: reader.status(pid) == "done")
    assert sorted(m["recipient_id"] for m in reader.of(pid)) == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
    ]


def test_cli_create_pause_and_progress(env: Env, reader: Reader, tmp_path: Path) -> None:
    ids = seed(env, 150)
    svc = env.service(batch_size=25)
    path = tmp_path / "fatura.yaml"
    path.write_text(
        "name: Aviso de vencimento\n"
        "channels: [sms]\n"
        "purpose: billing\n"
        "body: 'Olá {{ first_name }}, fatura de {{ monthly_price | brl }}'\n"
        "send_window: '00:00-24:00'\n"
    )
    runner = CliRunner()
    created = runner.invoke(campaigns, ["create", str(path)], obj=env.settings)
    assert created.exit_code == 0, created.output
    cid = created.output.strip().splitlines()[-1]
    drive([svc], reader, lambda: len(reader.of(cid)) >= 25)
    paused = runner.invoke(campaigns, ["pause", cid], obj=env.settings)
    assert paused.exit_code == 0, paused.output
    drive([svc], reader, lambda: reader.status(cid) == "paused")
    shown = runner.invoke(campaigns, ["progress", cid], obj=env.settings)
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("paused")
    assert f"/{len(ids)} queued" in shown.output
    runner.invoke(campaigns, ["resume", cid], obj=env.settings)
    drive([svc], reader, lambda: reader.status(cid) == "done")
    shown = runner.invoke(campaigns, ["progress", cid, "--json"], obj=env.settings)
    assert json.loads(shown.output)["queued"] == len(ids)
    assert sorted(m["recipient_id"] for m in reader.of(cid)) == ids
    unknown = runner.invoke(campaigns, ["progress", str(uuid.uuid4())], obj=env.settings)
    assert isinstance(unknown.exception, FilasError)


def test_a_failed_publish_replays_the_campaign_with_the_same_ids(env: Env, reader: Reader) -> None:
    ids = seed(env, 200)
    svc = env.service()
    record = campaign()
    rid = record["campaign_id"]
    real_flush = svc.producer.flush
    calls = {"n": 0}

    def flaky_flush(timeout_s: float = 30.0) -> None:
        calls["n"] += 1
        real_flush(timeout_s)
        if calls["n"] == 2:  # the second batch's acks "fail" after it reached the broker
            raise DeliveryError("broker went away", retriable=True)

    svc.producer.flush = flaky_flush  # type: ignore[method-assign]
    env.producer.emit_sync(CAMPAIGNS, record)
    drive([svc], reader, lambda: reader.status(rid) == "done")
    counts = Counter(m["message_id"] for m in reader.of(rid))
    assert set(counts) == {uuid.UUID(message_id(rid, r, "sms")) for r in ids}
    assert 0 < sum(n - 1 for n in counts.values()) <= 50
    assert calls["n"] > 4


def test_undecodable_definition_goes_to_the_dlq_and_metrics_count(env: Env, reader: Reader) -> None:
    seed(env, 10)
    svc = env.service()
    definitions = env.catalog.resolve(CAMPAIGNS)
    raw = Producer(dict(env.settings.kafka.client_config()))
    raw.produce(definitions.name, key=b"garbage", value=b"\x00not avro at all")
    assert raw.flush(10) == 0
    good = campaign()
    env.producer.emit_sync(CAMPAIGNS, good)
    drive([svc], reader, lambda: reader.status(good["campaign_id"]) == "done")
    dlq = env.catalog.dead_letter_for(CAMPAIGNS)
    consumer = Consumer(
        dict(env.settings.kafka.client_config())
        | {"group.id": f"dlq-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([dlq.name])
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not letters and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=10, timeout=0.5):
            if not msg.error():
                letters.append(env.serdes(dlq).deserialize(msg.value()))
    consumer.close()
    assert len(letters) == 1
    assert letters[0]["raw_key"] == b"garbage"
    assert letters[0]["processor"] == "campaign-fanout"
    lane = message_topics(env.catalog)["bulk"].name
    sent = REGISTRY.get_sample_value(
        "filas_events_out_total", {"component": "campaign-fanout", "topic": lane}
    )
    assert sent is not None
    assert sent >= 10
    dead = REGISTRY.get_sample_value(
        "filas_dead_letters_total", {"component": "campaign-fanout", "topic": definitions.name}
    )
    assert dead is not None
    assert dead >= 1


def test_frequency_history_survives_a_restart(env: Env, reader: Reader) -> None:
    seed(env, 40)
    first = env.service()
    a = campaign(frequency_cap_per_day=1)
    env.producer.emit_sync(CAMPAIGNS, a)
    drive([first], reader, lambda: reader.status(a["campaign_id"]) == "done")
    first.close()
    env.services.remove(first)
    second = env.service()  # reads the message topics' recent history at start
    b = campaign(frequency_cap_per_day=1)
    env.producer.emit_sync(CAMPAIGNS, b)
    drive([second], reader, lambda: reader.status(b["campaign_id"]) == "done")
    last = reader.last(b["campaign_id"])
    assert last is not None
    assert last["skipped_frequency_cap"] == 40
    assert reader.of(b["campaign_id"]) == []


def test_two_instances_share_campaigns_and_one_takes_over(env: Env, reader: Reader) -> None:
    ids = seed(env, 200)
    one, two = env.service(batch_size=20), env.service(batch_size=20)
    records = [campaign() for _ in range(4)]
    for record in records:
        env.producer.emit_sync(CAMPAIGNS, record)
    cids = [r["campaign_id"] for r in records]
    drive([one, two], reader, lambda: sum(len(reader.of(c)) for c in cids) >= 100)
    drive([one, two], reader, lambda: bool(one.partitions and two.partitions))
    assert sorted(one.partitions + two.partitions) == [0, 1, 2]
    one.close()  # leaves the group: its campaigns move to the other instance
    env.services.remove(one)
    drive([two], reader, lambda: all(reader.status(c) == "done" for c in cids), 90)
    for cid in cids:
        counts = Counter(m["message_id"] for m in reader.of(cid))
        assert set(counts) == {uuid.UUID(message_id(cid, r, "sms")) for r in ids}
        assert sum(n - 1 for n in counts.values()) <= 20  # at most one batch again
