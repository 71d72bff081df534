"""Automatic responses to outage alerts, as ``ixc.filas.network.OutageResponse`` records. Pure.

Per alert (configurable per root device type, ``FILAS_PING__RESPONSES``):
- open of a down/flapping alert: NOC_NOTIFY, TICKET, PAUSE_MARKETING and one SUBSCRIBER_NOTICE per
  affected login;
- update that adds logins: SUBSCRIBER_NOTICE for each new one (never twice for one login in one
  outage) and PAUSE_MARKETING again;
- resolve: RESUME_MARKETING and a closing NOC_NOTIFY.
PAUSE_MARKETING always carries EVERY login held for the alert so far (consumers replace the
alert's hold with it); RESUME_MARKETING releases the alert's hold. An alert merged into a new
root's alert gets its RESUME_MARKETING, and the new alert's first PAUSE_MARKETING holds the merged
logins too: holds are per alert, so the two may be applied in either order (they are keyed by
different roots). Noticed logins carry over to the new alert: no second notice. Degraded alerts
only notify the NOC. Every response id is a UUIDv5 of the alert, the kind and the login (or the
alert event), so a replayed decision carries the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from producers.envelope import envelope
from streams.network.engine import AlertEvent

RESPONSE_NAMESPACE = uuid.UUID("0b8a7f43-4d5e-4d2b-a9f8-3c3f1f0f6a90")
KINDS = ("NOC_NOTIFY", "SUBSCRIBER_NOTICE", "PAUSE_MARKETING", "RESUME_MARKETING", "TICKET")
SOURCE_SYSTEM = "alerting"
_OUTAGE_STATES = ("down", "flapping")


@dataclass(slots=True)
class _Covered:
    noticed: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    ticketed: bool = False
    notified: bool = False
    pause_sent: bool = False


class ResponsePlanner:
    """Which responses an alert event asks for. Remembers per open alert who was covered."""

    def __init__(self, responses: Mapping[str, Sequence[str]]) -> None:
        unknown = {k for kinds in responses.values() for k in kinds} - set(KINDS)
        if unknown:
            raise ValueError(f"unknown response kinds {sorted(unknown)}; known: {KINDS}")
        self._by_type = {t.upper(): frozenset(k) for t, k in responses.items()}
        self._covered: dict[str, _Covered] = {}
        self._carry: dict[str, _Covered] = {}

    def kinds_for(self, device_type: str | None) -> frozenset[str]:
        return self._by_type.get(
            (device_type or "OTHER").upper(), self._by_type.get("OTHER", frozenset())
        )

    def plan(self, event: AlertEvent) -> list[dict[str, Any]]:
        kinds = self.kinds_for(event.root_device_type)
        if event.action == "resolve":
            return self._resolve(event, kinds)
        covered = self._covered.get(event.alert_id)
        if covered is None:
            covered = self._carry.pop(event.alert_id, None) or _Covered()
            self._covered[event.alert_id] = covered
        out: list[dict[str, Any]] = []
        outage = event.state in _OUTAGE_STATES
        if "NOC_NOTIFY" in kinds and not covered.notified:
            covered.notified = True
            out.append(self._record(event, "NOC_NOTIFY", tag=event.event_id))
        if not outage:
            return out
        if "TICKET" in kinds and not covered.ticketed:
            covered.ticketed = True
            out.append(self._record(event, "TICKET", logins=sorted(event.affected_login_ids)))
        if "PAUSE_MARKETING" in kinds:
            fresh = event.affected_login_ids - covered.paused
            if fresh or (covered.paused and not covered.pause_sent):
                covered.paused.update(fresh)
                covered.pause_sent = True
                held = sorted(covered.paused)
                out.append(self._record(event, "PAUSE_MARKETING", logins=held, tag=event.event_id))
        if "SUBSCRIBER_NOTICE" in kinds:
            for login in sorted(event.affected_login_ids - covered.noticed):
                covered.noticed.add(login)
                out.append(self._record(event, "SUBSCRIBER_NOTICE", login=login))
        return out

    def _resolve(self, event: AlertEvent, kinds: frozenset[str]) -> list[dict[str, Any]]:
        covered = self._covered.pop(event.alert_id, None) or _Covered()
        out: list[dict[str, Any]] = []
        if event.merged_into is not None:
            carried = self._carry.setdefault(event.merged_into, _Covered())
            carried.noticed |= covered.noticed
            carried.paused |= covered.paused
            if covered.pause_sent:
                out.append(
                    self._record(
                        event, "RESUME_MARKETING", logins=sorted(covered.paused), ended=True
                    )
                )
            return out
        if covered.pause_sent:
            out.append(
                self._record(event, "RESUME_MARKETING", logins=sorted(covered.paused), ended=True)
            )
        if "NOC_NOTIFY" in kinds and covered.notified:
            out.append(self._record(event, "NOC_NOTIFY", tag="resolve", ended=True))
        return out

    def restore(self, record: Mapping[str, Any]) -> None:
        """Replay one ``net.responses`` record (oldest first) at start-up; then ``restore_merge``
        for every merge read back from ``net.alerts`` and ``retain`` the open alerts."""
        alert_id = str(record["alert_id"])
        kind = str(record["kind"])
        covered = self._covered.setdefault(alert_id, _Covered())
        logins: Iterable[str] = record.get("login_ids") or ()
        if kind == "SUBSCRIBER_NOTICE":
            covered.noticed.update(logins)
        elif kind == "PAUSE_MARKETING":
            covered.paused = set(logins)
            covered.pause_sent = True
        elif kind == "RESUME_MARKETING":
            covered.paused = set()
            covered.pause_sent = False
        elif kind == "TICKET":
            covered.ticketed = True
        elif kind == "NOC_NOTIFY":
            covered.notified = True

    def restore_merge(self, alert_id: str, merged_into: str) -> None:
        """Alert ``alert_id`` was folded into ``merged_into``: who it noticed stays noticed."""
        old = self._covered.pop(alert_id, None)
        if old is None:
            return
        target = self._covered.get(merged_into) or self._carry.setdefault(merged_into, _Covered())
        target.noticed |= old.noticed

    def retain(self, open_alert_ids: Iterable[str]) -> None:
        """Forget what was recovered for alerts that are no longer open."""
        keep = set(open_alert_ids)
        for table in (self._covered, self._carry):
            for alert_id in [a for a in table if a not in keep]:
                del table[alert_id]

    def _record(
        self,
        event: AlertEvent,
        kind: str,
        *,
        login: str | None = None,
        logins: Sequence[str] = (),
        tag: str = "",
        ended: bool = False,
    ) -> dict[str, Any]:
        response_id = uuid.uuid5(RESPONSE_NAMESPACE, f"{event.alert_id}:{kind}:{login or tag}")
        return {
            "envelope": envelope(
                SOURCE_SYSTEM,
                event_id=str(uuid.uuid5(RESPONSE_NAMESPACE, f"event:{response_id}")),
                correlation_id=event.alert_id,
                occurred_at=None,
            )
            | {"occurred_at": event.occurred_at_ms},
            "response_id": str(response_id),
            "kind": kind,
            "alert_id": event.alert_id,
            "root_device_id": event.root_device_id,
            "root_device_name": event.root_device_name,
            "root_device_type": event.root_device_type,
            "pop_id": event.pop_id,
            "login_id": login,
            "login_ids": [login] if login is not None else list(logins),
            "affected_device_count": event.affected_device_count,
            "affected_subscriber_count": event.affected_subscriber_count,
            "outage_started_at": event.opened_at_ms,
            "outage_ended_at": event.resolved_at_ms if ended else None,
            "summary": event.summary,
        }
