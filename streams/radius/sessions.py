"""Live sessions (login -> NAS, session id, framed IP, start, bytes) from ``radius.accounting``.

Every gateway feeds its table from the accounting topic (``ReplicaFeeder``), so a login's sessions
are counted whichever gateway received their accounting; simultaneous-use is checked against it.
A session without accounting for ``stale_after_s`` (NAS rebooted, Stop lost) no longer counts.
Accounting-On/Off from a NAS ends every session of that NAS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class LiveSession:
    login: str
    nas_id: str | None
    session_id: str
    framed_ip: str | None
    started_at: float
    last_seen: float
    input_octets: int
    output_octets: int


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value) / 1000.0


class SessionTable:
    def __init__(self, stale_after_s: float, clock: Callable[[], float] = time.time) -> None:
        self._stale_after = stale_after_s
        self._clock = clock
        # login -> session key -> session; only the feeder thread writes.
        self._by_login: dict[str, dict[str, LiveSession]] = {}

    @staticmethod
    def _key(record: Mapping[str, Any]) -> str:
        return record.get("unique_session_id") or f"{record.get('nas_id')}/{record['session_id']}"

    def apply(self, record: Mapping[str, Any]) -> None:
        status = record["status_type"]
        if status in ("accounting_on", "accounting_off"):
            self._end_nas(record.get("nas_id"))
            return
        login = record["login"]
        key = self._key(record)
        sessions = self._by_login.get(login, {})
        if status == "stop":
            if key in sessions:
                sessions = {k: v for k, v in sessions.items() if k != key}
                self._store(login, sessions)
            return
        seen = _epoch(record["event_at"])
        previous = sessions.get(key)
        started = (
            previous.started_at
            if previous is not None
            else seen - int(record.get("session_time_s") or 0)
        )
        session = LiveSession(
            login=login,
            nas_id=record.get("nas_id"),
            session_id=record["session_id"],
            framed_ip=record.get("framed_ip_address") or (previous.framed_ip if previous else None),
            started_at=started,
            last_seen=max(seen, previous.last_seen if previous else seen),
            input_octets=int(record.get("input_octets") or 0),
            output_octets=int(record.get("output_octets") or 0),
        )
        self._store(login, {**sessions, key: session})

    def _store(self, login: str, sessions: dict[str, LiveSession]) -> None:
        if sessions:
            self._by_login[login] = sessions
        else:
            self._by_login.pop(login, None)

    def _end_nas(self, nas_id: str | None) -> None:
        for login, sessions in list(self._by_login.items()):
            kept = {k: s for k, s in sessions.items() if s.nas_id != nas_id}
            if len(kept) != len(sessions):
                self._store(login, kept)

    def active(self, login: str) -> list[LiveSession]:
        """Sessions of ``login`` seen within ``stale_after_s`` (a copy; safe on any thread)."""
        horizon = self._clock() - self._stale_after
        return [s for s in self._by_login.get(login, {}).values() if s.last_seen >= horizon]

    def count(self, login: str) -> int:
        return len(self.active(login))

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_login.values())
