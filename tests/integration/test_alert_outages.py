"""Outages end to end with real ICMP: netns hosts go down and up under a running pinger and
alerting processor (real Kafka + registry); alerts and responses are read back from the topics.

Topology: POP (127.0.0.1) -> OLT (netns .2) -> ONU 0..2 (netns .10-.12, one login each) and a
splitter without IP (two logins). Rounds every 0.3 s, down after 2 failed rounds, up after 2.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from confluent_kafka import Producer

from filas.catalog.ixc_state import DEVICES
from filas.catalog.network import ALERTS, PING_RESULTS, RESPONSES
from producers.pinger.netns import NetNs
from streams.network.service import AlertService
from tests.integration.test_ping_pinger import (
    Env,
    PingerThread,
    TopicReader,
    device,
    env,  # noqa: F401 - the fixture
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and raw ICMP need root"),
]


class AlertThread:
    def __init__(self, e: Env, group: str | None = None) -> None:
        settings = e.settings
        if group is not None:
            ping = settings.ping.model_copy(update={"alerts_group_id": group})
            settings = settings.model_copy(update={"ping": ping})
        self.service = AlertService(settings, catalog=e.catalog, serdes=e.serdes)
        self.service.start(timeout_s=30)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()
        e.started.append(self.stop)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.service.stop()
            self.thread.join(timeout=20)
            self.service.close()


def ms(value: datetime | int) -> int:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def of(records: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


@pytest.fixture
def net() -> Iterator[NetNs]:
    with NetNs(extra=3) as n:
        yield n


def test_outages_hysteresis_suppression_flapping_and_replay(env: Env, net: NetNs) -> None:  # noqa: F811
    ping = env.settings.ping.model_copy(update={"flap_window": 16, "flap_transitions": 4})
    env.settings = env.settings.model_copy(update={"ping": ping})
    onus = [f"onu-{i}" for i in range(3)]
    records = [
        device("pop", "127.0.0.1", device_type="POP"),
        device("olt", net.parent, parent="pop"),
        *(
            device(o, net.hosts[i], parent="olt", logins=(f"L{i}",), device_type="ONU")
            for i, o in enumerate(onus)
        ),
        device(
            "box", None, parent="olt", ping_class="NONE", logins=("L8", "L9"), device_type="OTHER"
        ),
    ]
    for r in records:
        env.producer.emit(DEVICES, r)
    env.producer.flush()
    alerting = AlertThread(env)
    pinger = PingerThread(env, "p1")
    alerts = TopicReader(env, ALERTS)
    responses = TopicReader(env, RESPONSES)
    results = TopicReader(env, PING_RESULTS)
    results.until(lambda rs: len(of(rs, device_id="onu-2")) >= 3, 20, "every device pinged")
    time.sleep(0.6)
    assert alerts.poll(0.5) == []

    # 1. One ONU dies and comes back: opens after the 2nd failed round, resolves after 2 good.
    net.host_down(net.hosts[0])
    opened = alerts.until(lambda rs: bool(of(rs, action="open")), 10, "onu-0 alert")[0]
    assert (opened["root_device_id"], opened["state"]) == ("onu-0", "down")
    assert opened["affected_device_count"] == 1
    assert opened["affected_subscriber_count"] == 1
    net.host_up(net.hosts[0])
    alerts.until(lambda rs: bool(of(rs, action="resolve")), 10, "onu-0 resolve")
    results.poll()
    onu0 = sorted(of(results.records, device_id="onu-0"), key=lambda r: ms(r["probed_at"]))
    lost = [ms(r["probed_at"]) for r in onu0 if r["probes_received"] == 0]
    assert ms(opened["opened_at"]) == lost[1]  # exactly the 2nd consecutive failed round
    good_after = [
        ms(r["probed_at"]) for r in onu0 if r["probes_received"] and ms(r["probed_at"]) > lost[-1]
    ]
    [resolved] = of(alerts.records, action="resolve")
    assert ms(resolved["resolved_at"]) == good_after[1]  # the 2nd good round
    assert resolved["alert_id"] == opened["alert_id"]

    # 2. The OLT's link dies: ONE root-cause alert for the OLT with its whole subtree.
    mark = len(alerts.records)
    net.link_down()
    alerts.until(lambda rs: bool(of(rs[mark:], action="open")), 10, "OLT alert")
    time.sleep(1.5)  # five more rounds: still one alert, no per-ONU alerts
    alerts.poll()
    outage = alerts.records[mark:]
    opens = of(outage, action="open")
    assert len(opens) == 1, outage
    olt_alert = opens[0]
    assert olt_alert["root_device_id"] == "olt"
    assert olt_alert["root_device_name"] == "OLT"
    latest = outage[-1]
    assert latest["affected_device_count"] == 5  # OLT + 3 ONUs + the splitter without IP
    assert latest["affected_subscriber_count"] == 5
    assert {r["root_device_id"] for r in outage} == {"olt"}
    net.link_up()
    alerts.until(
        lambda rs: bool(of(rs[mark:], action="resolve", alert_id=olt_alert["alert_id"])),
        10,
        "OLT resolve",
    )
    time.sleep(0.9)
    alerts.poll()
    assert len(of(alerts.records[mark:], action="open")) == 1  # children cleared with it
    responses.until(
        lambda rs: bool(of(rs, kind="RESUME_MARKETING", alert_id=olt_alert["alert_id"])),
        10,
        "resume",
    )
    olt_responses = of(responses.records, alert_id=olt_alert["alert_id"])
    notices = sorted(r["login_id"] for r in of(olt_responses, kind="SUBSCRIBER_NOTICE"))
    assert notices == ["L0", "L1", "L2", "L8", "L9"]  # one per subscriber
    [resume] = of(olt_responses, kind="RESUME_MARKETING")
    assert sorted(resume["login_ids"]) == ["L0", "L1", "L2", "L8", "L9"]
    assert len(of(olt_responses, kind="TICKET")) == 1

    # 3. onu-1 flaps: at most two alerts before it is recognised, then held in one.
    mark = len(alerts.records)
    for _ in range(4):
        net.host_down(net.hosts[1])
        time.sleep(1.0)
        net.host_up(net.hosts[1])
        time.sleep(1.0)
    alerts.poll()
    flaps = alerts.records[mark:]
    assert len(of(flaps, action="open")) <= 2, flaps
    assert of(flaps, state="flapping"), flaps
    held = of(flaps, state="flapping")[0]["alert_id"]
    alerts.until(
        lambda rs: bool(of(rs[mark:], action="resolve", alert_id=held)), 15, "flap resolve"
    )
    pinger.stop()
    time.sleep(0.5)

    # 4. Replays: the same results again, then a processor reading everything from scratch.
    alerts.poll()
    before = len(alerts.records)
    raw = Producer(dict(env.settings.kafka.client_config()))
    topic = env.catalog.resolve(PING_RESULTS).name
    for key, value in results.raw:
        raw.produce(topic, key=key, value=value)
    raw.produce(topic, key=b"onu-0", value=b"\x00\x00\x00\x00\x01garbage")
    raw.flush(10)
    dlq = TopicReader(env, env.catalog.dead_letter_for(PING_RESULTS))
    dlq.until(lambda rs: len(rs) == 1, 10, "the garbage result dead-lettered")
    alerting.stop()
    replayer = AlertThread(env, group="replay-from-scratch")
    deadline = time.monotonic() + 20
    while replayer.service.results_in < 2 * len(results.raw) and time.monotonic() < deadline:
        time.sleep(0.2)
    replayer.stop()
    assert replayer.service.results_in >= 2 * len(results.raw)
    alerts.poll(0.5)
    replayed = alerts.records[before:]
    assert of(replayed, action="open") == [], replayed
    assert of(replayed, action="resolve") == [], replayed
