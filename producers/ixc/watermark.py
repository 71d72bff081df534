"""The poller's durable state: a watermark per IXC form and the last snapshot of each contract.

One JSON file (``IxcSettings.watermark_path``), replaced atomically (write a temporary file in
the same directory, fsync, ``os.replace``, fsync the directory) so a crash leaves either the old
or the new state, never half a file. The poller saves only after a page's events are
acknowledged, so a crash re-emits at most one page (idempotent on compacted topics).

The watermark is a tuple ``(updated, last_id)``: every record with ``ultima_atualizacao`` before
``updated``, or equal to it with ``id <= last_id``, has been emitted. ``updated`` is IXC's own
local-time string (lexicographic order is chronological in its fixed format), so no time-zone
conversion can shift it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producers.ixc.contract_status import ContractSnapshot
from producers.ixc.errors import WatermarkError

START = "0000-00-00 00:00:00"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class FormWatermark:
    updated: str = START
    last_id: int = 0


@dataclass(slots=True)
class PollerState:
    forms: dict[str, FormWatermark] = field(default_factory=dict)
    contracts: dict[str, ContractSnapshot] = field(default_factory=dict)

    def mark(self, form: str) -> FormWatermark:
        return self.forms.get(form, FormWatermark())


class WatermarkStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> PollerState:
        """The saved state, or an empty one when the file does not exist yet.

        An unreadable file is an error, not a fresh start: starting from zero would re-emit the
        whole ERP and lose every contract's previous status.
        """
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return PollerState()
        except (OSError, ValueError) as exc:
            raise WatermarkError(f"cannot read IXC watermarks at {self.path}: {exc}") from exc
        try:
            if raw.get("version") != _VERSION:
                raise ValueError(f"unsupported version {raw.get('version')!r}")
            forms = {
                name: FormWatermark(updated=str(m["updated"]), last_id=int(m["last_id"]))
                for name, m in raw["forms"].items()
            }
            contracts = {
                cid: ContractSnapshot.from_json(snap) for cid, snap in raw["contracts"].items()
            }
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise WatermarkError(f"corrupt IXC watermarks at {self.path}: {exc}") from exc
        return PollerState(forms=forms, contracts=contracts)

    def save(self, state: PollerState) -> None:
        payload: dict[str, Any] = {
            "version": _VERSION,
            "forms": {
                name: {"updated": m.updated, "last_id": m.last_id}
                for name, m in sorted(state.forms.items())
            },
            "contracts": {cid: snap.to_json() for cid, snap in state.contracts.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(payload, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
