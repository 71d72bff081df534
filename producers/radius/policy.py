"""Authorization: a pure function from (request facts, replica entries, settings) to a decision.

The order of checks is the order of reasons an operator expects: who (unknown_login), proof
(wrong_password), where from (mac_mismatch), then the login's and the contract's state. Rejects
carry a Reply-Message for the CPE and a machine-readable reason for the AuthDecision event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from filas.settings import RadiusSettings
from producers.radius.vendors import AttributeValue, rate_attributes
from streams.radius.replica import NasEntry, Subscriber, normalize_mac

# Contract states (ixc.filas.contract.ContractStatus) that never get service.
_INACTIVE_CONTRACT = frozenset({"CANCELLED", "SUSPENDED", "PENDING"})

REPLY_MESSAGES: Mapping[str, str] = {
    "unknown_login": "Login desconhecido",
    "wrong_password": "Senha incorreta",
    "mac_mismatch": "Equipamento (MAC) nao autorizado para este login",
    "disabled": "Login desativado",
    "blocked_non_payment": "Acesso bloqueado por pendencia financeira",
    "contract_inactive": "Contrato inativo",
    "simultaneous_use": "Limite de conexoes simultaneas atingido",
}


@dataclass(frozen=True, slots=True)
class Decision:
    accept: bool
    reason: str
    reply_message: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    pool: str | None = None
    framed_ip: str | None = None
    rate_limit: str | None = None


def rate_limit(subscriber: Subscriber) -> str | None:
    """Mikrotik 'rx/tx' from the router's view: upload/download, e.g. '50M/100M'."""
    if subscriber.upload_kbps is None or subscriber.download_kbps is None:
        return None
    return f"{_rate(subscriber.upload_kbps)}/{_rate(subscriber.download_kbps)}"


def _rate(kbps: int) -> str:
    if kbps >= 1000 and kbps % 1000 == 0:
        return f"{kbps // 1000}M"
    return f"{kbps}k"


def reject(reason: str) -> Decision:
    message = REPLY_MESSAGES.get(reason)
    return Decision(
        accept=False,
        reason=reason,
        reply_message=message,
        attributes={"Reply-Message": message} if message else {},
    )


def decide(
    *,
    subscriber: Subscriber | None,
    contract_status: str | None,
    nas: NasEntry,
    calling_station_id: str | None,
    password_ok: Callable[[str], bool],
    settings: RadiusSettings,
    active_sessions: int = 0,
) -> Decision:
    if subscriber is None:
        return reject("unknown_login")
    if subscriber.password is not None:
        if not password_ok(subscriber.password):
            return reject("wrong_password")
    elif not (subscriber.bind_mac and subscriber.mac):
        # No password and no MAC binding: nothing proves who is asking.
        return reject("wrong_password")
    if subscriber.bind_mac and subscriber.mac:
        seen = normalize_mac(calling_station_id) if calling_station_id else None
        if seen != subscriber.mac:
            return reject("mac_mismatch")
    if subscriber.status == "BLOCKED":
        return reject("disabled")
    if contract_status in _INACTIVE_CONTRACT:
        return reject("contract_inactive")
    if (
        settings.enforce_simultaneous_use
        and subscriber.simultaneous_use > 0
        and active_sessions >= subscriber.simultaneous_use
    ):
        return reject("simultaneous_use")

    reason = "ok"
    pool = settings.default_pool
    limit = rate_limit(subscriber)
    framed_ip = subscriber.static_ipv4
    if contract_status == "BLOCKED":
        if settings.blocked_policy == "reject":
            return reject("blocked_non_payment")
        reason, pool, framed_ip = "blocked_pool", settings.block_pool, None
        limit = settings.block_rate_limit
    elif subscriber.status == "REDUCED" or contract_status == "REDUCED":
        reason, limit = "reduced_speed", settings.reduced_rate_limit

    attributes: dict[str, AttributeValue] = {
        "Session-Timeout": settings.session_timeout_s,
        "Acct-Interim-Interval": settings.acct_interim_interval_s,
    }
    if framed_ip is not None:
        attributes["Framed-IP-Address"] = framed_ip
    elif pool is not None:
        attributes["Framed-Pool"] = pool
    attributes |= rate_attributes(nas.vendor, limit, settings.juniper_rate_service)
    return Decision(
        accept=True,
        reason=reason,
        attributes=attributes,
        pool=pool if framed_ip is None else None,
        framed_ip=framed_ip,
        rate_limit=limit,
    )
