"""The alerting state machine (streams.network.engine) and the response planner, no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from filas.settings import PingSettings
from streams.network.engine import AlertEngine, AlertEvent, DeviceInfo, Observation, Status
from streams.network.responses import ResponsePlanner

SETTINGS = PingSettings(
    down_after_rounds=3,
    up_after_rounds=2,
    degraded_window=4,
    degraded_loss_ratio=0.3,
    degraded_rtt_ms=100.0,
    flap_window=20,
    flap_transitions=4,
    suppression_hold_s=30.0,
    clear_hold_s=60.0,
)
ROUND_MS = 1000


class Net:
    """A POP -> OLT -> 3 ONUs (+ a splitter without IP holding 2 more logins) topology."""

    def __init__(self, settings: PingSettings = SETTINGS) -> None:
        self.engine = AlertEngine(settings)
        self.t = 1_000_000
        self.events: list[AlertEvent] = []
        add = self.engine.upsert_device
        add(DeviceInfo("pop-1", "POP-CENTRO", "POP"))
        add(DeviceInfo("olt-1", "OLT-CENTRO-01", "OLT", parent_id="pop-1", pop_id="1"))
        for i in range(3):
            add(DeviceInfo(f"onu-{i}", f"ONU-{i}", "ONU", "olt-1", "1", (f"L{i}",)))
        add(DeviceInfo("box-1", "CTO-1", "OTHER", "olt-1", "1", ("L8", "L9")))

    def round(
        self, up: Iterable[str], down: Iterable[str] = (), rtt: float = 1.0
    ) -> list[AlertEvent]:
        """One round: every device in ``up`` answers, every one in ``down`` does not."""
        self.t += ROUND_MS
        for d in up:
            self.engine.observe(Observation(d, self.t, 3, 3, rtt))
        for d in down:
            self.engine.observe(Observation(d, self.t, 3, 0, None))
        out = self.engine.drain()
        self.events += out
        return out


PINGED = ["pop-1", "olt-1", "onu-0", "onu-1", "onu-2"]
OLT_TREE = ["olt-1", "onu-0", "onu-1", "onu-2"]


def healthy(net: Net, rounds: int = 2) -> None:
    for _ in range(rounds):
        net.round(PINGED)
    assert all(net.engine.status(d) is Status.UP for d in PINGED)
    assert net.events == []


def test_down_after_n_failed_rounds_and_up_after_m_good() -> None:
    net = Net()
    healthy(net)
    assert net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"]) == []
    assert net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"]) == []
    [opened] = net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"])
    assert (opened.action, opened.state, opened.root_device_id) == ("open", "down", "onu-0")
    assert opened.affected_device_count == 1
    assert opened.affected_login_ids == {"L0"}
    assert net.round(PINGED) == []  # one good round is not enough
    [resolved] = net.round(PINGED)
    assert (resolved.action, resolved.state, resolved.alert_id) == (
        "resolve",
        "up",
        opened.alert_id,
    )
    assert resolved.resolved_at_ms == net.t


def test_a_single_lost_round_is_not_an_outage() -> None:
    net = Net()
    healthy(net)
    for _ in range(5):
        net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"])
        net.round(PINGED)
    assert net.events == []


def test_parent_down_folds_children_into_one_root_alert_and_clears_together() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round(["pop-1"], OLT_TREE)
    opens = [e for e in net.events if e.action == "open"]
    assert len(opens) == 1, net.events
    [alert] = opens
    assert alert.root_device_id == "olt-1"
    # OLT + 3 ONUs + the splitter without IP; 3 ONU logins + 2 behind the splitter.
    assert alert.affected_device_count == 5
    assert alert.affected_subscriber_count == 5
    assert alert.severity == "minor"
    assert alert.pop_name == "POP-CENTRO"
    assert [e.action for e in net.events] == ["open"]
    for _ in range(5):
        net.round(["pop-1"], OLT_TREE)
    assert [e.action for e in net.events] == ["open"]  # no update storm while nothing changes
    net.round(PINGED)
    [resolved] = net.round(PINGED)
    assert resolved.action == "resolve"
    assert resolved.alert_id == alert.alert_id
    assert [e.action for e in net.events] == ["open", "resolve"]


def test_children_failing_before_their_parent_wait_for_it() -> None:
    """ONUs reach N failed rounds one round before the OLT: still one alert, rooted at the OLT."""
    net = Net()
    healthy(net)
    net.round(["pop-1", "olt-1"], ["onu-0", "onu-1", "onu-2"])
    net.round(["pop-1"], ["olt-1", "onu-0", "onu-1", "onu-2"])
    assert net.round(["pop-1"], ["olt-1", "onu-0", "onu-1", "onu-2"]) == []  # ONUs down, OLT 2/3
    [opened] = net.round(["pop-1"], OLT_TREE)
    assert opened.root_device_id == "olt-1"
    assert [e.action for e in net.events] == ["open"]


def test_child_waits_only_while_the_parent_keeps_failing() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"])
    assert [e.root_device_id for e in net.events] == ["onu-0"]


def test_child_alert_merges_into_a_later_parent_alert() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"])
    [child] = net.events
    for _ in range(3):
        net.round(["pop-1"], OLT_TREE)
    merged, opened = net.events[1:3]
    assert (merged.action, merged.alert_id, merged.merged_into) == (
        "resolve",
        child.alert_id,
        opened.alert_id,
    )
    assert (opened.action, opened.root_device_id) == ("open", "olt-1")


def test_root_up_with_a_child_still_down_hands_the_child_its_own_alert() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round(["pop-1"], OLT_TREE)
    [olt_alert] = net.events
    # OLT back, onu-0 stays dead: the OLT alert shrinks, then resolves after clear_hold_s.
    for _ in range(2):
        net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"])
    assert net.events[-1].action == "update"
    assert net.events[-1].affected_device_count == 1
    for _ in range(61):
        net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"])
    actions = [(e.action, e.root_device_id) for e in net.events]
    assert ("resolve", "olt-1") in actions
    assert actions[-1] == ("open", "onu-0")
    assert net.events[-1].alert_id != olt_alert.alert_id


def test_flapping_device_is_held_in_one_alert() -> None:
    net = Net()
    healthy(net)
    rest = ["pop-1", "olt-1", "onu-1", "onu-2"]
    for _ in range(8):  # 8 cycles of 3 rounds down, 2 up: 16 confirmed changes
        for _ in range(3):
            net.round(rest, ["onu-0"])
        for _ in range(2):
            net.round(PINGED)
    opens = [e for e in net.events if e.action == "open"]
    assert len(opens) == 2  # two cycles before flapping is recognised, then one held alert
    assert net.events[-1].state == "flapping"
    assert net.events[-1].action in ("update", "open")
    held = net.events[-1].alert_id
    # Stable for flap_window rounds: flapping ends, the held alert resolves.
    for _ in range(21):
        net.round(PINGED)
    last = net.events[-1]
    assert (last.action, last.alert_id) == ("resolve", held)
    assert not net.engine.health["onu-0"].flapping


def test_degraded_on_loss_and_latency_over_the_window() -> None:
    net = Net()
    healthy(net)
    for _ in range(4):
        net.round(PINGED[:-1])
        net.engine.observe(Observation("onu-2", net.t, 3, 1, 5.0))  # 67 % loss
        net.events += net.engine.drain()
    [opened] = net.events
    assert (opened.root_device_id, opened.state, opened.severity) == (
        "onu-2",
        "degraded",
        "warning",
    )
    for _ in range(4):
        net.round(PINGED)
    assert net.events[-1].action == "resolve"
    for _ in range(4):
        net.round(PINGED, rtt=150.0)
    assert net.events[-1].state == "degraded"


def test_duplicate_and_replayed_results_are_ignored() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"])
    first = list(net.events)
    # The same results again (a replay after a rebalance): nothing changes, nothing is emitted.
    t = net.t
    for back in range(3):
        assert not net.engine.observe(Observation("onu-0", t - back * ROUND_MS, 3, 0, None))
    assert net.engine.drain() == []
    assert net.events == first


def test_a_restarted_engine_does_not_reopen_a_resolved_alert() -> None:
    """Rebuilt from net.alerts, a fresh engine fed the same results emits nothing new."""
    net = Net()
    healthy(net)
    history: list[tuple[list[str], list[str]]] = []
    for _ in range(3):
        history.append((["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"]))
    for _ in range(2):
        history.append((PINGED, []))
    for up, down in history:
        net.round(up, down)
    assert [e.action for e in net.events] == ["open", "resolve"]
    replay = Net()
    for event in net.events:
        replay.engine.restore(event)
    replay.t = 1_000_000 + 2 * ROUND_MS  # the same probed_at values as the first run
    for up, down in history:
        replay.round(up, down)
    assert replay.events == []


def test_a_restarted_engine_adopts_an_open_alert() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round(["pop-1"], OLT_TREE)
    [opened] = net.events
    fresh = Net()
    fresh.engine.restore(opened)
    fresh.t = net.t
    for _ in range(3):
        fresh.round(["pop-1"], OLT_TREE)
    assert all(e.action != "open" for e in fresh.events)
    fresh.round(PINGED)
    fresh.round(PINGED)
    assert [(e.action, e.alert_id) for e in fresh.events][-1] == ("resolve", opened.alert_id)


def test_pop_down_is_critical_and_large_outages_are_critical() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round([], PINGED)
    [opened] = net.events
    assert (opened.root_device_id, opened.severity) == ("pop-1", "critical")
    big = Net(SETTINGS.model_copy(update={"critical_subscribers": 5}))
    healthy(big)
    for _ in range(3):
        big.round(["pop-1"], OLT_TREE)
    assert big.events[0].severity == "critical"


# -- responses ------------------------------------------------------------------------------


def planned(net: Net, planner: ResponsePlanner) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for event in net.events:
        for r in planner.plan(event):
            out.append((r["kind"], tuple(r["login_ids"])))
    return out


def test_outage_responses_one_notice_per_subscriber_and_pause_resume() -> None:
    net = Net()
    healthy(net)
    # Two ONUs die first (their own alerts), then the whole OLT: merged, no second notice.
    for _ in range(3):
        net.round(["pop-1", "olt-1", "onu-2"], ["onu-0", "onu-1"])
    for _ in range(3):
        net.round(["pop-1"], OLT_TREE)
    for _ in range(2):
        net.round(PINGED)
    planner = ResponsePlanner(SETTINGS.responses)
    kinds = planned(net, planner)
    notices = [logins for kind, logins in kinds if kind == "SUBSCRIBER_NOTICE"]
    assert sorted(notices) == [("L0",), ("L1",), ("L2",), ("L8",), ("L9",)]
    # Every PAUSE holds all the alert's logins so far (consumers replace the hold); the ONU
    # alerts (ONU class: pause only) are released when merged, the OLT alert holds them again.
    paused = [(kind, set(logins)) for kind, logins in kinds if "MARKETING" in kind]
    assert paused[:2] == [("PAUSE_MARKETING", {"L0"}), ("PAUSE_MARKETING", {"L1"})]
    assert ("RESUME_MARKETING", {"L0"}) in paused
    assert ("RESUME_MARKETING", {"L1"}) in paused
    olt_pauses = [logins for kind, logins in paused[2:] if kind == "PAUSE_MARKETING"]
    assert {"L0", "L1"} <= olt_pauses[0]
    assert olt_pauses[-1] == {"L0", "L1", "L2", "L8", "L9"}
    assert all(a <= b for a, b in itertools.pairwise(olt_pauses))
    resumes = [logins for kind, logins in paused if kind == "RESUME_MARKETING"]
    assert resumes[-1] == {"L0", "L1", "L2", "L8", "L9"}
    assert len(resumes) == 3
    assert [k for k, _ in kinds].count("TICKET") == 1
    assert [k for k, _ in kinds].count("NOC_NOTIFY") == 2  # open + close of the OLT alert


def test_responses_are_configurable_per_device_type_and_ids_are_stable() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round(["pop-1"], OLT_TREE)
    only_noc = ResponsePlanner({"OLT": ["NOC_NOTIFY"]})
    assert [r["kind"] for r in only_noc.plan(net.events[0])] == ["NOC_NOTIFY"]
    a = ResponsePlanner(SETTINGS.responses).plan(net.events[0])
    b = ResponsePlanner(SETTINGS.responses).plan(net.events[0])
    assert [r["response_id"] for r in a] == [r["response_id"] for r in b]
    with pytest.raises(ValueError, match="unknown response kinds"):
        ResponsePlanner({"OLT": ["PAGE_THE_CEO"]})


def test_restored_planner_does_not_notice_twice() -> None:
    net = Net()
    healthy(net)
    for _ in range(3):
        net.round(["pop-1"], OLT_TREE)
    first = ResponsePlanner(SETTINGS.responses)
    records = first.plan(net.events[0])
    restored = ResponsePlanner(SETTINGS.responses)
    for r in records:
        restored.restore(r)
    assert restored.plan(net.events[0]) == []


def test_restart_in_a_merged_outage_never_notices_twice() -> None:
    """ONU alert (with notices) merged into the OLT's; the processor restarts mid-outage, reads
    net.responses and net.alerts back, and the OLT alert's next update notices nobody again."""
    settings = SETTINGS.model_copy(
        update={"responses": {**SETTINGS.responses, "ONU": ["SUBSCRIBER_NOTICE"]}}
    )
    net = Net(settings)
    healthy(net)
    for _ in range(3):
        net.round(["pop-1", "olt-1", "onu-1", "onu-2"], ["onu-0"])
    net.round(["pop-1"], ["olt-1", "onu-0", "onu-1"])  # onu-2 still answers for now
    net.round(["pop-1"], ["olt-1", "onu-0", "onu-1"])
    net.round(["pop-1"], ["olt-1", "onu-0", "onu-1"])
    planner = ResponsePlanner(settings.responses)
    written = [r for e in net.events for r in planner.plan(e)]
    assert sorted(r["login_id"] for r in written if r["kind"] == "SUBSCRIBER_NOTICE") == [
        "L0",
        "L1",
        "L8",
        "L9",
    ]
    # Restart: responses first, then alerts (merges), then keep only open alerts.
    fresh = ResponsePlanner(settings.responses)
    for r in written:
        fresh.restore(r)
    engine = AlertEngine(settings)
    for e in net.events:
        engine.restore(e)
        if e.merged_into is not None:
            fresh.restore_merge(e.alert_id, e.merged_into)
    fresh.retain(a.alert_id for a in engine.alerts.values())
    # onu-2 dies too: an update adds L2 only.
    for _ in range(3):
        net.round(["pop-1"], OLT_TREE)
    later = [r for e in net.events[-3:] for r in fresh.plan(e) if e.action == "update"]
    assert [r["login_id"] for r in later if r["kind"] == "SUBSCRIBER_NOTICE"] == ["L2"]


class BoxNet(Net):
    """Net plus a splitter box without IP (CTO-2) under the OLT, feeding three probed ONUs."""

    def __init__(self) -> None:
        super().__init__()
        add = self.engine.upsert_device
        add(DeviceInfo("cto-2", "CTO-2", "OTHER", "olt-1", "1"))
        for i in range(3):
            add(DeviceInfo(f"onu-b{i}", f"ONU-B{i}", "ONU", "cto-2", "1", (f"B{i}",)))


BOX = ["onu-b0", "onu-b1", "onu-b2"]


def test_box_without_ip_is_the_root_when_all_its_onus_are_down() -> None:
    net = BoxNet()
    for _ in range(2):
        net.round(PINGED + BOX)
    assert net.events == []
    for _ in range(3):
        net.round(PINGED, BOX)
    [opened] = net.events
    assert (opened.action, opened.root_device_id, opened.state) == ("open", "cto-2", "down")
    assert (opened.affected_device_count, opened.affected_subscriber_count) == (4, 3)
    assert opened.affected_login_ids == {"B0", "B1", "B2"}
    for _ in range(2):
        net.round(PINGED + BOX)
    assert [(e.action, e.root_device_id) for e in net.events] == [
        ("open", "cto-2"),
        ("resolve", "cto-2"),
    ]


def test_box_onus_failing_a_round_apart_still_give_one_alert() -> None:
    net = BoxNet()
    for _ in range(2):
        net.round(PINGED + BOX)
    net.round([*PINGED, "onu-b1", "onu-b2"], ["onu-b0"])
    net.round([*PINGED, "onu-b2"], ["onu-b0", "onu-b1"])
    net.round(PINGED, BOX)  # onu-b0 is DOWN now; its siblings are still failing: it waits
    assert net.events == []
    net.round(PINGED, BOX)
    net.round(PINGED, BOX)
    assert [(e.action, e.root_device_id) for e in net.events] == [("open", "cto-2")]


def test_one_onu_of_a_box_down_is_its_own_alert() -> None:
    net = BoxNet()
    for _ in range(2):
        net.round(PINGED + BOX)
    for _ in range(3):
        net.round([*PINGED, "onu-b1", "onu-b2"], ["onu-b0"])
    assert [(e.action, e.root_device_id) for e in net.events] == [("open", "onu-b0")]
