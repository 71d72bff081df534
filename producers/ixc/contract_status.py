"""A contract's service state from IXC's two codes, and why it changed between two polls.

IXC keeps two codes on ``cliente_contrato`` (values confirmed from IXC's API wiki):
``status`` A ativo, I inativo, P pré-contrato, N negativado, D desistiu; and ``status_internet``
A ativo, D desativado, CM bloqueio manual, CA bloqueio automático, FA financeiro em atraso,
AA aguardando assinatura. IXC gives no "previous status" nor a reason, so the poller keeps the
last snapshot per contract in its state file and infers the reason from the codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACTIVE = "ACTIVE"
BLOCKED = "BLOCKED"
REDUCED = "REDUCED"
SUSPENDED = "SUSPENDED"
PENDING = "PENDING"
CANCELLED = "CANCELLED"
UNKNOWN = "UNKNOWN"

_INTERNET = {
    "A": ACTIVE,
    "CM": BLOCKED,
    "CA": BLOCKED,
    # "Financeiro em atraso": IXC's reduced-speed state while an invoice is overdue.
    "FA": REDUCED,
    "AA": PENDING,
    "D": SUSPENDED,
}


def derive_status(status: str, internet: str) -> str:
    """Our ContractStatus symbol. Unknown codes (a newer IXC) give UNKNOWN, not an error: the
    raw codes travel with the event, so nothing is lost."""
    if status in ("I", "D"):
        return CANCELLED
    if status == "P":
        return PENDING
    if status in ("A", "N"):
        return _INTERNET.get(internet, UNKNOWN)
    return UNKNOWN


@dataclass(frozen=True, slots=True)
class ContractSnapshot:
    """What the poller remembers of a contract between polls (kept in the watermark file)."""

    status: str
    internet_code: str
    plan_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"s": self.status, "i": self.internet_code, "p": self.plan_id}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ContractSnapshot:
        return cls(status=str(raw["s"]), internet_code=str(raw["i"]), plan_id=raw.get("p"))


def change_reason(
    previous: ContractSnapshot, current: ContractSnapshot, trust_unblock: bool
) -> str:
    """Best inference of why ``previous`` became ``current`` (StatusChangeReason symbol)."""
    if current.status == CANCELLED:
        return "CANCELLATION"
    if current.status == previous.status and current.plan_id != previous.plan_id:
        return "PLAN_CHANGE"
    if current.status in (BLOCKED, REDUCED):
        # CA/FA are IXC's automatic, billing-driven blocks; CM is a person's decision.
        return "NON_PAYMENT_BLOCK" if current.internet_code in ("CA", "FA") else "MANUAL"
    if current.status == ACTIVE and previous.status in (BLOCKED, REDUCED, SUSPENDED):
        if trust_unblock:
            return "TRUST_UNBLOCK"
        if previous.internet_code in ("CA", "FA"):
            return "PAYMENT_CONFIRMED"
        return "MANUAL"
    if current.plan_id != previous.plan_id:
        return "PLAN_CHANGE"
    return "OTHER"


def has_changed(previous: ContractSnapshot, current: ContractSnapshot) -> bool:
    return previous.status != current.status or previous.plan_id != current.plan_id
