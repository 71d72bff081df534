"""The fan-out state machine with in-memory ports: batches, commands, failures, restarts, holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streams.campaigns.engine import FanoutEngine, message_record
from streams.campaigns.outage import notice_messages, outage_campaign_id
from streams.campaigns.plan import CampaignSpec, FrequencyHistory, PlannedMessage
from streams.campaigns.state import SubscriberState
from tests.unit.test_campaign_plan import NOON_SP, campaign, customer, envelope, state_of


class Ports:
    def __init__(self) -> None:
        self.published: list[tuple[str, PlannedMessage]] = []
        self.progress: list[dict[str, Any]] = []
        self.now = NOON_SP

    def publish(self, spec: CampaignSpec, messages: Sequence[PlannedMessage]) -> None:
        self.published += [(spec.campaign_id, m) for m in messages]

    def emit(self, record: Mapping[str, Any]) -> None:
        self.progress.append(dict(record))

    def clock(self) -> int:
        return self.now

    def statuses(self, cid: str) -> list[str]:
        return [p["status"] for p in self.progress if p["campaign_id"] == cid]


def engine_for(
    state: SubscriberState, ports: Ports, history: FrequencyHistory | None = None, batch: int = 2
) -> FanoutEngine:
    engine = FanoutEngine(
        state,
        history or FrequencyHistory(),
        ports.publish,
        ports.emit,
        ports.clock,
        batch_size=batch,
    )
    engine.go_live()
    return engine


def drain(engine: FanoutEngine, limit: int = 1000) -> int:
    steps = 0
    while engine.step():
        steps += 1
        assert steps < limit
    return steps


def command(record: dict[str, Any], name: str) -> dict[str, Any]:
    return {**record, "command": name, "envelope": envelope()}


def test_fans_out_in_batches_with_progress_until_done() -> None:
    ports = Ports()
    engine = engine_for(state_of(5), ports)
    record = campaign(channels=["sms"])
    engine.apply(record)
    drain(engine)
    cid = record["campaign_id"]
    assert [m.recipient_id for _, m in ports.published] == ["1", "2", "3", "4", "5"]
    assert ports.statuses(cid) == ["running", "running", "running", "done"]
    last = ports.progress[-1]
    assert (last["queued"], last["planned"], last["matched"], last["cursor"]) == (5, 5, 5, "5/sms")
    rec = message_record(engine.runs[cid].spec, ports.published[0][1], NOON_SP)  # type: ignore[arg-type]
    assert rec["envelope"]["event_id"] == rec["message_id"]
    assert rec["lane"] == "bulk"
    assert rec["purpose"] == "marketing"
    assert rec["recipient_id"] == "1"


def test_template_error_fails_the_campaign_and_publishes_nothing() -> None:
    ports = Ports()
    engine = engine_for(state_of(5), ports)
    record = campaign(template={"subject": "x", "body": "{{ fatura }}"})
    engine.apply(record)
    drain(engine)
    assert ports.published == []
    final = ports.progress[-1]
    assert final["status"] == "failed"
    assert final["error_code"] == "campaign_template_error"
    assert "fatura" in final["error"]
    engine.apply(command(record, "resume"))  # a failed campaign stays failed
    assert not engine.step()


def test_pause_resume_cancel_between_batches() -> None:
    ports = Ports()
    state = state_of(8)
    engine = engine_for(state, ports)
    record = campaign(channels=["sms"])
    cid = record["campaign_id"]
    engine.apply(record)
    engine.step()  # plan
    engine.step()  # batch 1
    engine.apply(command(record, "pause"))
    assert not engine.step()
    assert len(ports.published) == 2
    assert ports.statuses(cid)[-1] == "paused"
    # Consent withdrawn while paused: the re-plan at resume honours it.
    state.put_opt_out("5", {"customer_id": "5", "marketing": True, "channels": []})
    engine.apply(command(record, "resume"))
    engine.step()  # re-plan, continues after the cursor
    engine.step()
    assert [m.recipient_id for _, m in ports.published] == ["1", "2", "3", "4"]
    engine.apply(command(record, "cancel"))
    assert not engine.step()
    assert ports.statuses(cid)[-1] == "cancelled"
    engine.apply(command(record, "resume"))
    assert not engine.step()
    assert len(ports.published) == 4


def test_restart_from_progress_continues_with_the_same_ids() -> None:
    state = state_of(6)
    record = campaign(channels=["sms", "email"])
    full = Ports()
    e1 = engine_for(state, full, batch=4)
    e1.apply(record)
    drain(e1)
    all_ids = [m.message_id for _, m in full.published]

    crashed = Ports()
    e2 = engine_for(state, crashed, batch=4)
    e2.apply(record)
    e2.step()
    e2.step()  # one batch of 4 acknowledged, then the process dies
    last_progress = crashed.progress[-1]
    assert last_progress["queued"] == 4

    restarted = Ports()
    e3 = FanoutEngine(
        state, FrequencyHistory(), restarted.publish, restarted.emit, restarted.clock, batch_size=4
    )
    e3.restore_progress(last_progress)
    e3.apply(record)  # the definitions replayed: no progress while catching up
    assert restarted.progress == []
    e3.go_live()
    drain(e3)
    again = [m.message_id for _, m in restarted.published]
    assert [m.message_id for _, m in crashed.published] + again == all_ids
    assert restarted.progress[-1]["status"] == "done"
    assert restarted.progress[-1]["queued"] == 12


def test_finished_campaigns_stay_finished_after_a_restart() -> None:
    state = state_of(2)
    ports = Ports()
    record = campaign()
    e1 = engine_for(state, ports)
    e1.apply(record)
    drain(e1)
    again = Ports()
    e2 = FanoutEngine(state, FrequencyHistory(), again.publish, again.emit, again.clock)
    e2.restore_progress(ports.progress[-1])
    e2.apply(record)
    e2.go_live()
    assert not e2.step()
    assert again.published == []
    assert again.progress == []


def test_transactional_campaign_overtakes_a_running_bulk_one() -> None:
    ports = Ports()
    engine = engine_for(state_of(10), ports)
    bulk = campaign(channels=["sms"])
    urgent = campaign(channels=["sms"], lane="transactional", purpose="billing")
    engine.apply(bulk)
    engine.step()
    engine.step()
    engine.apply(urgent)
    drain(engine)
    order = [cid for cid, _ in ports.published]
    first_urgent = order.index(urgent["campaign_id"])
    assert first_urgent == 2
    assert order[first_urgent : first_urgent + 10] == [urgent["campaign_id"]] * 10


def test_scheduled_campaign_waits_for_schedule_at() -> None:
    ports = Ports()
    engine = engine_for(state_of(2), ports)
    record = campaign(channels=["sms"], schedule_at=NOON_SP + 60_000)
    engine.apply(record)
    assert not engine.step()
    assert ports.statuses(record["campaign_id"]) == ["scheduled"]
    ports.now += 60_000
    drain(engine)
    assert len(ports.published) == 2


def test_frequency_cap_across_campaigns() -> None:
    ports = Ports()
    engine = engine_for(state_of(3), ports)
    first = campaign(channels=["sms"], frequency_cap_per_day=1)
    second = campaign(channels=["sms"], frequency_cap_per_day=1)
    engine.apply(first)
    engine.apply(second)
    drain(engine)
    assert [cid for cid, _ in ports.published] == [first["campaign_id"]] * 3
    assert ports.progress[-1]["skipped_frequency_cap"] == 3


def test_outage_hold_defers_bulk_until_resume() -> None:
    state = state_of(3)
    state.put_login("l2", {"login_id": "L2", "customer_id": "2", "contract_id": "k2"})
    state.hold_outage("alert-1", ["L2"])
    ports = Ports()
    engine = engine_for(state, ports)
    record = campaign(channels=["sms"])
    engine.apply(record)
    drain(engine)
    assert [m.recipient_id for _, m in ports.published] == ["1", "3"]
    assert ports.progress[-1]["status"] == "running"
    assert ports.progress[-1]["held_outage"] == 1
    assert ports.progress[-1]["cursor"] == "1/sms"  # a restart must not skip the held one
    state.release_outage("alert-1")
    drain(engine)
    assert [m.recipient_id for _, m in ports.published] == ["1", "3", "2"]
    assert ports.progress[-1]["status"] == "done"


def test_outage_notice_one_per_customer_on_the_first_reachable_channel() -> None:
    state = state_of(2)
    state.put_customer("2", customer("2", mobile_phone=None))
    state.put_login("a", {"login_id": "L1a", "customer_id": "1", "contract_id": "k1"})
    state.put_login("b", {"login_id": "L1b", "customer_id": "1", "contract_id": "k1"})
    state.put_login("c", {"login_id": "L2", "customer_id": "2", "contract_id": "k2"})

    def response(login_id: str) -> dict[str, Any]:
        return {
            "kind": "SUBSCRIBER_NOTICE",
            "alert_id": "6d0f7a4c-8c8e-4f55-9d59-1f2f3e4d5c6b",
            "root_device_id": "olt-1",
            "root_device_name": "OLT-CENTRO-01",
            "login_id": login_id,
            "login_ids": [login_id],
            "outage_started_at": NOON_SP,
        }

    kwargs: dict[str, Any] = {
        "channels": ("sms", "email"),
        "subject": "Falha",
        "body": "{{ first_name }}: falha em {{ device }}",
    }
    spec, a = notice_messages(response("L1a"), state, NOON_SP, **kwargs)
    _, b = notice_messages(response("L1b"), state, NOON_SP, **kwargs)
    _, c = notice_messages(response("L2"), state, NOON_SP, **kwargs)
    assert spec.lane == "transactional"
    assert spec.purpose == "service"
    assert spec.campaign_id == outage_campaign_id("6d0f7a4c-8c8e-4f55-9d59-1f2f3e4d5c6b")
    assert [m.channel for m in a] == ["sms"]
    assert a[0].body == "Maria: falha em OLT-CENTRO-01"
    assert [m.message_id for m in a] == [m.message_id for m in b]  # one per customer per outage
    assert [m.channel for m in c] == ["email"]  # no mobile: falls back to e-mail
    state.put_opt_out("1", {"customer_id": "1", "marketing": False, "channels": ["sms", "email"]})
    assert notice_messages(response("L1a"), state, NOON_SP, **kwargs)[1] == []
    assert notice_messages(response("unknown"), state, NOON_SP, **kwargs)[1] == []
