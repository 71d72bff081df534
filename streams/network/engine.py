"""The alerting state machine: pure (no I/O, no clock), fed ping results and topology.

``AlertEngine.observe`` updates one device's health from one ping round; ``drain`` turns what
changed into alert events (open / update / resolve), grouped under the root-cause device.

Per device (hysteresis): DOWN after ``down_after_rounds`` consecutive rounds with every probe lost,
UP after ``up_after_rounds`` good ones; DEGRADED while the mean loss or the mean RTT over the last
``degraded_window`` rounds is over the thresholds; FLAPPING after ``flap_transitions`` confirmed
up/down changes within ``flap_window`` rounds, held in one alert until ``flap_window`` rounds pass
without a change.

Topology-aware suppression: a DOWN device whose parent is DOWN too is folded into the alert of
the topmost DOWN ancestor; the alert counts every device under that root that is not known to be
up (devices without IP included) and their subscriber logins. A device whose parent is failing
but not yet DOWN waits (``suppression_hold_s``) instead of opening its own alert, so a dying OLT
never emits one alert per ONU first. Alerts that open under a new root are merged into it (a
resolve with ``merged_into``). The alert resolves when its root is up and nothing under it is
still down (or ``clear_hold_s`` after the root came back: the rest then alert on their own).

Replays cannot re-open: time is the data's time (``probed_at``), results not newer than the
device's last one are ignored, and an alert's id is a UUIDv5 of its root and the ``probed_at``
that opened it, so the same history yields the same id, which ``resolved`` remembers (restored
from ``net.alerts`` at start-up, ``restore``).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from filas.settings import PingSettings

ALERT_NAMESPACE = uuid.UUID("5f0e7f7c-2a53-4c59-9a8e-8a4f6d0b1c21")


class Status(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


_REACHABLE = (Status.UP, Status.DEGRADED)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the engine needs from an ``ixc.filas.device.NetworkDevice``."""

    device_id: str
    name: str = ""
    device_type: str = "OTHER"
    parent_id: str | None = None
    pop_id: str | None = None
    login_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Observation:
    """One ping round of one device (from an ``ixc.filas.network.PingResult``)."""

    device_id: str
    probed_at_ms: int
    sent: int
    received: int
    rtt_avg_ms: float | None = None

    @property
    def loss_ratio(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0


@dataclass(slots=True)
class Health:
    status: Status = Status.UNKNOWN
    fails: int = 0
    oks: int = 0
    rounds: int = 0
    last_probed_ms: int = -1
    since_ms: int = 0  # when the current status (or flapping) began
    flapping: bool = False
    window: deque[tuple[float, float | None]] = field(default_factory=deque)
    transitions: deque[int] = field(default_factory=deque)

    @property
    def problem(self) -> bool:
        return self.flapping or self.status in (Status.DOWN, Status.DEGRADED)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert lifecycle event; ``affected_login_ids`` feed the automatic responses."""

    alert_id: str
    event_id: str
    action: str  # open | update | resolve
    severity: str
    state: str  # down | degraded | flapping | up
    root_device_id: str
    root_device_name: str | None
    root_device_type: str | None
    pop_id: str | None
    affected_device_count: int
    affected_subscriber_count: int
    affected_login_ids: frozenset[str]
    opened_at_ms: int
    resolved_at_ms: int | None
    occurred_at_ms: int
    summary: str
    merged_into: str | None = None
    pop_name: str | None = None


@dataclass(slots=True)
class OpenAlert:
    alert_id: str
    root: str
    opened_at_ms: int
    state: str = "down"
    severity: str = "warning"
    devices: int = 0
    subscribers: int = 0
    logins: frozenset[str] = frozenset()
    summary: str = ""
    root_up_since_ms: int | None = None


def alert_id_for(root: str, opened_at_ms: int) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{root}@{opened_at_ms}"))


class AlertEngine:
    """Device health, topology and open alerts. Single-threaded; no I/O."""

    def __init__(self, settings: PingSettings) -> None:
        self.s = settings
        self.devices: dict[str, DeviceInfo] = {}
        self.children: dict[str, set[str]] = {}
        self.health: dict[str, Health] = {}
        self.alerts: dict[str, OpenAlert] = {}  # by root device id
        self.resolved: set[str] = set()
        self.now_ms = 0
        self._dirty: set[str] = set()
        self._pending: set[str] = set()
        self.ignored = 0

    # -- topology ----------------------------------------------------------------------------
    def upsert_device(self, info: DeviceInfo) -> None:
        old = self.devices.get(info.device_id)
        if old is not None and old.parent_id != info.parent_id and old.parent_id is not None:
            self.children.get(old.parent_id, set()).discard(info.device_id)
        self.devices[info.device_id] = info
        if info.parent_id is not None and info.parent_id != info.device_id:
            self.children.setdefault(info.parent_id, set()).add(info.device_id)
        if old is not None and old != info:
            self._dirty.add(info.device_id)

    def remove_device(self, device_id: str) -> None:
        info = self.devices.pop(device_id, None)
        if info is not None and info.parent_id is not None:
            self.children.get(info.parent_id, set()).discard(device_id)
        self.health.pop(device_id, None)
        self._dirty.add(device_id)

    def parent_of(self, device_id: str) -> str | None:
        info = self.devices.get(device_id)
        return info.parent_id if info is not None else None

    def ancestors(self, device_id: str) -> Iterable[str]:
        """Parent, grandparent, ... (cycle-safe)."""
        seen = {device_id}
        parent = self.parent_of(device_id)
        while parent is not None and parent not in seen:
            yield parent
            seen.add(parent)
            parent = self.parent_of(parent)

    def subtree(self, root: str) -> list[str]:
        out, stack, seen = [], [root], {root}
        while stack:
            node = stack.pop()
            out.append(node)
            for child in self.children.get(node, ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return out

    def status(self, device_id: str) -> Status:
        h = self.health.get(device_id)
        return h.status if h is not None else Status.UNKNOWN

    # -- health ------------------------------------------------------------------------------
    def observe(self, obs: Observation) -> bool:
        """Apply one round; False (ignored) when it is not newer than the device's last one."""
        h = self.health.get(obs.device_id)
        if h is None:
            h = self.health[obs.device_id] = Health(window=deque(maxlen=self.s.degraded_window))
        if obs.probed_at_ms <= h.last_probed_ms:
            self.ignored += 1
            return False
        h.last_probed_ms = obs.probed_at_ms
        if obs.probed_at_ms > self.now_ms:
            self.now_ms = obs.probed_at_ms
        h.rounds += 1
        before = (h.status, h.flapping)
        if obs.received == 0:
            h.fails += 1
            h.oks = 0
            if h.status is not Status.DOWN and h.fails >= self.s.down_after_rounds:
                self._change(h, Status.DOWN, obs.probed_at_ms)
        else:
            h.oks += 1
            h.fails = 0
            h.window.append((obs.loss_ratio, obs.rtt_avg_ms))
            if h.status in (Status.DOWN, Status.UNKNOWN):
                if h.oks >= self.s.up_after_rounds:
                    self._change(h, Status.UP, obs.probed_at_ms)
            else:
                degraded = self._degraded(h)
                if degraded and h.status is Status.UP:
                    h.status, h.since_ms = Status.DEGRADED, obs.probed_at_ms
                elif not degraded and h.status is Status.DEGRADED:
                    h.status, h.since_ms = Status.UP, obs.probed_at_ms
        if h.flapping and (not h.transitions or h.rounds - h.transitions[-1] >= self.s.flap_window):
            h.flapping = False
            h.since_ms = obs.probed_at_ms
        if (h.status, h.flapping) != before:
            self._dirty.add(obs.device_id)
        return True

    def _change(self, h: Health, to: Status, at_ms: int) -> None:
        confirmed = h.status is not Status.UNKNOWN
        h.status = to
        h.window.clear()
        if not h.flapping:
            h.since_ms = at_ms
        if not confirmed:
            return
        h.transitions.append(h.rounds)
        while h.transitions and h.rounds - h.transitions[0] >= self.s.flap_window:
            h.transitions.popleft()
        if not h.flapping and len(h.transitions) >= self.s.flap_transitions:
            h.flapping = True

    def _degraded(self, h: Health) -> bool:
        if len(h.window) < max(1, (self.s.degraded_window + 1) // 2):
            return False
        losses = [loss for loss, _ in h.window]
        rtts = [rtt for _, rtt in h.window if rtt is not None]
        if sum(losses) / len(losses) >= self.s.degraded_loss_ratio:
            return True
        return bool(rtts) and sum(rtts) / len(rtts) >= self.s.degraded_rtt_ms

    # -- alerts ------------------------------------------------------------------------------
    def covering_alert(self, device_id: str) -> OpenAlert | None:
        alert = self.alerts.get(device_id)
        if alert is not None:
            return alert
        for ancestor in self.ancestors(device_id):
            alert = self.alerts.get(ancestor)
            if alert is not None:
                return alert
        return None

    def drain(self) -> list[AlertEvent]:
        """Alert events for everything that changed since the last call, in a stable order."""
        changed = self._dirty | self._pending
        # A device without IP (a splitter box) is judged by its probed children: when they are
        # all down it is the root cause, so it is looked at whenever one of them changed.
        boxes = {
            p for d in changed if (p := self.parent_of(d)) is not None and p not in self.health
        }
        candidates = sorted(changed | {b for b in boxes if self.virtually_down(b)})
        self._dirty = set()
        self._pending = set()
        events: list[AlertEvent] = []
        touched: set[str] = {a.root for a in self.alerts.values() if a.root_up_since_ms}
        for device_id in candidates:
            covering = self.covering_alert(device_id)
            if covering is not None:
                touched.add(covering.root)
                continue
            h = self.health.get(device_id)
            if not ((h is not None and h.problem) or self.virtually_down(device_id)):
                continue
            root = self._root_for(device_id, h)
            if root is None:
                self._pending.add(device_id)
                continue
            if root in self.alerts:
                touched.add(root)
                continue
            opened = self._open(root, events)
            if opened is not None:
                touched.add(root)
        for root in sorted(touched):
            alert = self.alerts.get(root)
            if alert is not None:
                self._refresh(alert, events)
        return events

    def virtually_down(self, device_id: str) -> bool:
        """A device that is not probed (no IP) with two or more probed children, all DOWN."""
        if device_id in self.health:
            return False
        kids = [c for c in self.children.get(device_id, ()) if c in self.health]
        return len(kids) >= 2 and all(self.health[c].status is Status.DOWN for c in kids)

    def _down_since(self, device_id: str) -> int:
        """When a DOWN or virtually down device went down (data time, replay-stable)."""
        h = self.health.get(device_id)
        if h is not None:
            return h.since_ms
        kids = [self.health[c] for c in self.children.get(device_id, ()) if c in self.health]
        return max((k.since_ms for k in kids), default=self.now_ms)

    def _failing(self, device_id: str) -> bool:
        """Failing but not (yet) down: a probed device with lost rounds, or a box some of whose
        probed children are failing."""
        h = self.health.get(device_id)
        if h is not None:
            return h.fails > 0 and h.status is not Status.DOWN
        return any(
            self.health[c].fails > 0 and self.health[c].status is not Status.DOWN
            for c in self.children.get(device_id, ())
            if c in self.health
        )

    def _root_for(self, device_id: str, h: Health | None) -> str | None:
        """The root-cause device for a problem device; None while its parent is failing."""
        if h is not None and h.status is not Status.DOWN:
            return device_id
        root = device_id
        for ancestor in self.ancestors(device_id):
            ah = self.health.get(ancestor)
            if (ah is not None and ah.status is Status.DOWN) or self.virtually_down(ancestor):
                root = ancestor
                continue
            waited = self.now_ms - self._down_since(device_id)
            if self._failing(ancestor) and waited < self.s.suppression_hold_s * 1000:
                return None
            break
        return root

    def _open(self, root: str, events: list[AlertEvent]) -> OpenAlert | None:
        opened_at = self._down_since(root)
        alert_id = alert_id_for(root, opened_at)
        if alert_id in self.resolved:
            return None  # replay of an outage already resolved: never re-open
        alert = OpenAlert(alert_id, root, opened_at)
        self._summarize(alert)
        # Alerts already open under this root are folded into it.
        under = set(self.subtree(root))
        for other in sorted(r for r in self.alerts if r in under):
            merged = self.alerts.pop(other)
            self.resolved.add(merged.alert_id)
            events.append(self._event(merged, "resolve", merged_into=alert_id))
        self.alerts[root] = alert
        events.append(self._event(alert, "open"))
        return alert

    def _refresh(self, alert: OpenAlert, events: list[AlertEvent]) -> None:
        h = self.health.get(alert.root)
        if h is None:
            root_ok = not self.virtually_down(alert.root)
        else:
            root_ok = h.status is Status.UP and not h.flapping
        before = (alert.state, alert.severity, alert.devices, alert.subscribers)
        self._summarize(alert)
        if root_ok:
            if alert.root_up_since_ms is None:
                alert.root_up_since_ms = self.now_ms
            held = self.now_ms - alert.root_up_since_ms >= self.s.clear_hold_s * 1000
            if alert.devices == 0 or held:
                del self.alerts[alert.root]
                self.resolved.add(alert.alert_id)
                events.append(self._event(alert, "resolve"))
                # Whatever is still down under the old root alerts on its own from now on.
                self._pending.update(
                    d
                    for d in self.subtree(alert.root)
                    if self.status(d) is Status.DOWN and d != alert.root
                )
                return
        else:
            alert.root_up_since_ms = None
        if (alert.state, alert.severity, alert.devices, alert.subscribers) != before:
            events.append(self._event(alert, "update"))

    def _summarize(self, alert: OpenAlert) -> None:
        root = alert.root
        h = self.health.get(root)
        if h is not None:
            status = h.status
        else:
            status = Status.DOWN if self.virtually_down(root) else Status.UP
        flapping = h is not None and h.flapping
        tree = self.subtree(root)
        if status is Status.DOWN:
            affected = [d for d in tree if self.status(d) not in _REACHABLE]
        else:
            below = [d for d in tree[1:] if self.status(d) is Status.DOWN]
            affected = below if status is Status.UP and not flapping else [root, *below]
        if status is Status.DOWN or (status is Status.UP and not flapping):
            logins = {x for d in affected for x in self._logins(d)}
        else:  # degraded or flapping: everyone served through the root feels it
            logins = {x for d in tree for x in self._logins(d)}
        alert.state = (
            "flapping" if flapping else status.value if status is not Status.UNKNOWN else "down"
        )
        alert.devices = len(affected)
        alert.subscribers = len(logins)
        alert.logins = frozenset(logins)
        alert.severity = self._severity(alert)
        info = self.devices.get(root)
        name = info.name if info is not None and info.name else root
        if alert.state == "up":
            alert.summary = f"{name} up again; {alert.devices} devices still down"
        else:
            alert.summary = (
                f"{name} {alert.state}: {alert.devices} devices, {alert.subscribers} subscribers"
            )

    def _logins(self, device_id: str) -> tuple[str, ...]:
        info = self.devices.get(device_id)
        return info.login_ids if info is not None else ()

    def _severity(self, alert: OpenAlert) -> str:
        if alert.state == "degraded":
            return "warning"
        if alert.state == "up":
            return "info"
        subscribers = alert.subscribers
        if alert.state == "flapping":
            return "major" if subscribers >= self.s.major_subscribers else "minor"
        info = self.devices.get(alert.root)
        if subscribers >= self.s.critical_subscribers or (info and info.device_type == "POP"):
            return "critical"
        return "major" if subscribers >= self.s.major_subscribers else "minor"

    def _event(self, alert: OpenAlert, action: str, merged_into: str | None = None) -> AlertEvent:
        info = self.devices.get(alert.root)
        resolved_at = self.now_ms if action == "resolve" else None
        if action == "update":
            tag = f"update:{alert.state}:{alert.severity}:{alert.devices}:{alert.subscribers}"
        else:
            tag = action
        summary = alert.summary
        if merged_into is not None:
            summary = f"{summary} (merged into alert {merged_into})"
        elif action == "resolve":
            summary = f"{info.name if info and info.name else alert.root} resolved"
        return AlertEvent(
            alert_id=alert.alert_id,
            event_id=str(uuid.uuid5(ALERT_NAMESPACE, f"{alert.alert_id}:{tag}")),
            action=action,
            severity=alert.severity,
            state="up" if action == "resolve" and merged_into is None else alert.state,
            root_device_id=alert.root,
            root_device_name=info.name if info is not None and info.name else None,
            root_device_type=info.device_type if info is not None else None,
            pop_id=info.pop_id if info is not None else None,
            affected_device_count=alert.devices,
            affected_subscriber_count=alert.subscribers,
            affected_login_ids=alert.logins,
            opened_at_ms=alert.opened_at_ms,
            resolved_at_ms=resolved_at,
            occurred_at_ms=self.now_ms,
            summary=summary,
            merged_into=merged_into,
            pop_name=self._pop_name(alert.root),
        )

    def _pop_name(self, device_id: str) -> str | None:
        """Name of the POP the device hangs from (itself or its nearest POP ancestor)."""
        for d in (device_id, *self.ancestors(device_id)):
            info = self.devices.get(d)
            if info is not None and info.device_type == "POP":
                return info.name or d
        return None

    # -- recovery ----------------------------------------------------------------------------
    def restore(self, event: AlertEvent) -> None:
        """Replay one event read back from ``net.alerts`` (oldest first) at start-up."""
        if event.action == "resolve":
            self.resolved.add(event.alert_id)
            current = self.alerts.get(event.root_device_id)
            if current is not None and current.alert_id == event.alert_id:
                del self.alerts[event.root_device_id]
            return
        if event.alert_id in self.resolved:
            return
        self.alerts[event.root_device_id] = OpenAlert(
            alert_id=event.alert_id,
            root=event.root_device_id,
            opened_at_ms=event.opened_at_ms,
            state=event.state,
            severity=event.severity,
            devices=event.affected_device_count,
            subscribers=event.affected_subscriber_count,
            logins=event.affected_login_ids,
            summary=event.summary,
        )
        if event.occurred_at_ms > self.now_ms:
            self.now_ms = event.occurred_at_ms
