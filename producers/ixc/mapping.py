"""Pure functions: one IXC record (a dict of strings) to one event dict matching its schema.

Nothing here does I/O. A record that cannot be mapped raises ``IxcMappingError`` naming the
IXC field; the poller sends it to its dead-letter port and carries on. Field names confirmed
from IXC sources and those chosen where no source could be found are listed in
``docs/ixc-adapter.md``; chosen ones are marked "(chosen)" below.

Every event starts with the common envelope: a fresh uuid4 ``event_id`` (re-polling the same
record gives a new id but the same key, harmless on compacted topics), ``occurred_at`` = the
record's ``ultima_atualizacao`` converted from the IXC installation's time zone to UTC, and
``source_system`` = ``ixc-adapter``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from producers.envelope import envelope
from producers.ixc import contract_status, fields
from producers.ixc.contract_status import ContractSnapshot
from producers.ixc.errors import IxcMappingError

SOURCE_SYSTEM = "ixc-adapter"
UPDATED_FIELD = "ultima_atualizacao"

Event = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Plan:
    """A RADIUS group (IXC form ``radgrupos``): the speed profile a login gets."""

    plan_id: str
    name: str
    download_kbps: int | None
    upload_kbps: int | None


@dataclass(frozen=True, slots=True)
class MappingContext:
    """What mapping needs besides the record: IXC's time zone, the plan table, and the time to
    use as ``occurred_at`` when IXC has no ``ultima_atualizacao``."""

    tz: ZoneInfo
    observed_at: datetime
    plans: Mapping[str, Plan] = field(default_factory=dict)
    # Last known snapshot per contract id: the poller's own state, shared, not copied.
    contracts: Mapping[str, ContractSnapshot] = field(default_factory=dict)


class _Reader:
    """Reads one record's fields, turning any parse failure into an IxcMappingError."""

    def __init__(self, form: str, record: Mapping[str, str]) -> None:
        self.form = form
        self.record = record
        raw_id = record.get("id")
        self.record_id = raw_id if isinstance(raw_id, str) else None

    def _read(self, name: str, parse: Callable[[str], T]) -> T:
        try:
            return parse(fields.text(self.record, name))
        except KeyError:
            raise IxcMappingError(
                "missing", form=self.form, record_id=self.record_id, field=name
            ) from None
        except ValueError as exc:
            raise IxcMappingError(
                str(exc), form=self.form, record_id=self.record_id, field=name
            ) from exc

    def required(self, name: str) -> str:
        def nonempty(value: str) -> str:
            if not value:
                raise ValueError("empty")
            return value

        return self._read(name, nonempty)

    def optional(self, name: str) -> str | None:
        try:
            return fields.optional_text(self.record, name)
        except ValueError as exc:
            raise IxcMappingError(
                str(exc), form=self.form, record_id=self.record_id, field=name
            ) from exc

    def ident(self, name: str) -> str:
        return self._read(name, fields.identifier)

    def optional_ident(self, name: str) -> str | None:
        value = self.optional(name)
        return None if value is None else self._read(name, fields.identifier)

    def flag(self, name: str, default: bool | None = None) -> bool:
        if default is not None and name not in self.record:
            return default
        return self._read(name, fields.flag)

    def updated_at(self, tz: ZoneInfo) -> datetime | None:
        return self._read(UPDATED_FIELD, lambda v: fields.ixc_datetime(v, tz))

    def money(self, name: str) -> Decimal | None:
        return None if name not in self.record else self._read(name, fields.money)

    def rate(self, name: str) -> int | None:
        return None if name not in self.record else self._read(name, fields.rate_kbps)

    def mac(self, name: str) -> str | None:
        return None if name not in self.record else self._read(name, fields.mac_address)

    def ipv4(self, name: str) -> str | None:
        return None if name not in self.record else self._read(name, fields.ipv4)

    def required_ipv4(self, name: str) -> str:
        address = self.ipv4(name)
        if address is None:
            raise self.fail(name, "missing or empty IPv4 address")
        return address

    def ipv6_prefix(self, name: str) -> str | None:
        return None if name not in self.record else self._read(name, fields.ipv6_prefix)

    def fail(self, name: str, reason: str) -> IxcMappingError:
        return IxcMappingError(reason, form=self.form, record_id=self.record_id, field=name)


def _envelope(updated_at: datetime | None, ctx: MappingContext) -> dict[str, Any]:
    return envelope(SOURCE_SYSTEM, occurred_at=updated_at or ctx.observed_at)


def plan_from_record(record: Mapping[str, str]) -> Plan:
    """``radgrupos``: id, grupo (name), download/upload (chosen) as rates like ``100M``."""
    r = _Reader("radgrupos", record)
    return Plan(
        plan_id=r.ident("id"),
        name=r.required("grupo"),
        download_kbps=r.rate("download"),
        upload_kbps=r.rate("upload"),
    )


def customer_event(record: Mapping[str, str], ctx: MappingContext) -> Event:
    """``cliente``: id, razao, tipo_pessoa, cnpj_cpf, email, cidade, uf, ativo, ultima_atualizacao
    (confirmed); telefone_celular, aceita_marketing (chosen)."""
    r = _Reader("cliente", record)
    updated_at = r.updated_at(ctx.tz)
    person = {"F": "INDIVIDUAL", "J": "COMPANY"}.get((r.optional("tipo_pessoa") or "").upper())
    document = r.optional("cnpj_cpf")
    return {
        "envelope": _envelope(updated_at, ctx),
        "customer_id": r.ident("id"),
        "name": r.required("razao"),
        "person_type": person or "UNKNOWN",
        "document": fields.digits(document) if document else None,
        "email": r.optional("email"),
        "mobile_phone": fields.digits(r.optional("telefone_celular") or ""),
        "city_id": r.optional("cidade"),
        "state": r.optional("uf"),
        "timezone": "America/Sao_Paulo",
        "marketing_consent": r.flag("aceita_marketing", default=False),
        "active": r.flag("ativo"),
        "updated_at": updated_at,
    }


def contract_snapshot(record: Mapping[str, str]) -> ContractSnapshot:
    r = _Reader("cliente_contrato", record)
    status, internet = r.required("status").upper(), r.required("status_internet").upper()
    return ContractSnapshot(
        status=contract_status.derive_status(status, internet),
        internet_code=internet,
        plan_id=r.optional_ident("id_vd_contrato"),
    )


def contract_event(record: Mapping[str, str], ctx: MappingContext) -> Event:
    """``cliente_contrato``: id, id_cliente, id_vd_contrato, contrato, status, status_internet,
    ultima_atualizacao (confirmed); valor, desbloqueio_confianca_ativo (chosen). Speeds and days
    overdue are not on the contract in IXC and stay null (see docs/ixc-adapter.md)."""
    r = _Reader("cliente_contrato", record)
    updated_at = r.updated_at(ctx.tz)
    snapshot = contract_snapshot(record)
    return {
        "envelope": _envelope(updated_at, ctx),
        "contract_id": r.ident("id"),
        "customer_id": r.ident("id_cliente"),
        "plan_id": snapshot.plan_id,
        "plan_name": r.optional("contrato") or "",
        "status": snapshot.status,
        "ixc_status": r.required("status").upper(),
        "ixc_internet_status": snapshot.internet_code,
        "download_kbps": None,
        "upload_kbps": None,
        "monthly_price": r.money("valor"),
        "days_overdue": None,
        "trust_unblock_active": r.flag("desbloqueio_confianca_ativo", default=False),
        "updated_at": updated_at,
    }


def contract_status_changed_event(
    previous: ContractSnapshot, contract: Event, record: Mapping[str, str], ctx: MappingContext
) -> Event | None:
    """The ContractStatusChanged event for ``contract`` (a mapped Contract), or None when
    neither its state nor its plan differ from ``previous``."""
    current = contract_snapshot(record)
    if not contract_status.has_changed(previous, current):
        return None
    changed_at = contract["updated_at"] or ctx.observed_at
    return {
        "envelope": _envelope(changed_at, ctx),
        "contract_id": contract["contract_id"],
        "customer_id": contract["customer_id"],
        "previous_status": previous.status,
        "new_status": current.status,
        "reason": contract_status.change_reason(
            previous, current, contract["trust_unblock_active"]
        ),
        "previous_plan_id": previous.plan_id if previous.plan_id != current.plan_id else None,
        "new_plan_id": current.plan_id,
        "new_download_kbps": contract["download_kbps"],
        "new_upload_kbps": contract["upload_kbps"],
        "changed_at": changed_at,
    }


_LOGIN_TYPES = {
    "": "PPPOE",
    "P": "PPPOE",
    "L": "PPPOE",
    "PPPOE": "PPPOE",
    "H": "HOTSPOT",
    "HOTSPOT": "HOTSPOT",
    "I": "IPOE",
    "D": "IPOE",
    "M": "IPOE",
    "V": "IPOE",
    "IPOE": "IPOE",
}


def subscriber_event(record: Mapping[str, str], ctx: MappingContext) -> Event:
    """``radusuarios``: id, login, senha, ativo, id_contrato, id_cliente, id_grupo, mac,
    id_concentrador, ultima_atualizacao (confirmed); autenticacao codes, ip, fixar_ip, pd_ipv6,
    autenticacao_por_mac, login_simultaneo (chosen). An active login whose contract is last known
    REDUCED (``ctx.contracts``) is REDUCED: IXC keeps that state on the contract only."""
    r = _Reader("radusuarios", record)
    updated_at = r.updated_at(ctx.tz)
    code = (r.optional("autenticacao") or "").upper()
    login_type = _LOGIN_TYPES.get(code)
    if login_type is None:
        raise r.fail("autenticacao", f"unknown authentication code {code!r}")
    plan_id = r.optional_ident("id_grupo")
    plan = ctx.plans.get(plan_id) if plan_id else None
    contract_id = r.ident("id_contrato")
    status = "ACTIVE" if r.flag("ativo") else "BLOCKED"
    known = ctx.contracts.get(contract_id)
    if status == "ACTIVE" and known is not None and known.status == contract_status.REDUCED:
        status = "REDUCED"
    fixed = r.flag("fixar_ip", default=True)
    simultaneous = r.optional("login_simultaneo")
    if simultaneous is not None and not simultaneous.isdigit():
        raise r.fail("login_simultaneo", f"expected a number, got {simultaneous!r}")
    return {
        "envelope": _envelope(updated_at, ctx),
        "login": r.required("login"),
        "login_id": r.ident("id"),
        "login_type": login_type,
        "contract_id": contract_id,
        "customer_id": r.ident("id_cliente"),
        "status": status,
        # Clear text on purpose: CHAP needs it (docs/decisions/0020); the topic is ACL-restricted.
        "password": r.optional("senha"),
        "plan_id": plan_id,
        "plan_name": plan.name if plan else None,
        "download_kbps": plan.download_kbps if plan else None,
        "upload_kbps": plan.upload_kbps if plan else None,
        "static_ipv4": r.ipv4("ip") if fixed else None,
        "ipv6_prefix": r.ipv6_prefix("pd_ipv6"),
        "mac": r.mac("mac"),
        "bind_mac": r.flag("autenticacao_por_mac", default=False),
        "simultaneous_use": int(simultaneous) if simultaneous else 1,
        "pop_id": None,
        "nas_id": r.optional_ident("id_concentrador"),
        "updated_at": updated_at,
    }


_VENDORS = {"MIKROTIK", "HUAWEI", "JUNIPER", "CISCO", "ACCEL_PPP"}


def nas_event(record: Mapping[str, str], ctx: MappingContext) -> Event:
    """NAS form (chosen name ``concentrador``): id, nome, ip, tipo, id_pop, ativo (chosen).
    IXC's ``secret`` column is never read: the event carries a secret-store key instead."""
    r = _Reader("concentrador", record)
    updated_at = r.updated_at(ctx.tz)
    nas_id = r.ident("id")
    vendor = (r.optional("tipo") or "").upper().replace("-", "_")
    return {
        "envelope": _envelope(updated_at, ctx),
        "nas_id": nas_id,
        "name": r.required("nome"),
        "ip": r.required_ipv4("ip"),
        "vendor": vendor if vendor in _VENDORS else "OTHER",
        "secret_ref": f"ixc/nas/{nas_id}/radius-secret",
        "requires_message_authenticator": True,
        "coa_port": 3799,
        "pop_id": r.optional_ident("id_pop"),
        "active": r.flag("ativo", default=True),
        "updated_at": updated_at,
    }


_PING = {
    "POP": "CRITICAL",
    "OLT": "CRITICAL",
    "ROUTER": "CRITICAL",
    "SWITCH": "STANDARD",
    "RADIO": "STANDARD",
    "OTHER": "STANDARD",
    "CPE": "SUBSCRIBER",
    "ONU": "SUBSCRIBER",
}


def _device(
    r: _Reader,
    ctx: MappingContext,
    *,
    device_id: str,
    name: str,
    device_type: str,
    ip: str | None,
    parent: str | None,
    pop_id: str | None,
    logins: list[str],
) -> Event:
    updated_at = r.updated_at(ctx.tz)
    return {
        "envelope": _envelope(updated_at, ctx),
        "device_id": device_id,
        "name": name,
        "device_type": device_type,
        "ip": ip,
        "parent_device_id": parent,
        "pop_id": pop_id,
        "linked_login_ids": logins,
        "ping_class": _PING[device_type] if ip else "NONE",
        "active": r.flag("ativo", default=True),
        "updated_at": updated_at,
    }


def pop_device_event(record: Mapping[str, str], ctx: MappingContext) -> Event:
    """``radpop`` (confirmed form; ``pop`` name confirmed): a site, root of the topology."""
    r = _Reader("radpop", record)
    pop_id = r.ident("id")
    return _device(
        r,
        ctx,
        device_id=f"pop-{pop_id}",
        name=r.required("pop"),
        device_type="POP",
        ip=r.ipv4("ip"),
        parent=None,
        pop_id=pop_id,
        logins=[],
    )


_RADIO_TYPES = {"OLT", "SWITCH", "ROUTER", "RADIO", "CPE"}


def radio_device_event(record: Mapping[str, str], ctx: MappingContext) -> Event:
    """``radpop_radio`` (confirmed form): transmitters at a POP (OLTs, radios, switches);
    descricao, ip, id_pop, tipo (chosen)."""
    r = _Reader("radpop_radio", record)
    pop_id = r.optional_ident("id_pop")
    kind = (r.optional("tipo") or "").upper()
    return _device(
        r,
        ctx,
        device_id=f"radio-{r.ident('id')}",
        name=r.required("descricao"),
        device_type=kind if kind in _RADIO_TYPES else "OTHER",
        ip=r.ipv4("ip"),
        parent=f"pop-{pop_id}" if pop_id else None,
        pop_id=pop_id,
        logins=[],
    )


def onu_device_event(record: Mapping[str, str], ctx: MappingContext) -> Event:
    """``radpop_radio_cliente_fibra`` (confirmed form; id_login, id_contrato, mac confirmed):
    a subscriber's ONU under its OLT; nome, ip, id_transmissor, id_pop (chosen)."""
    r = _Reader("radpop_radio_cliente_fibra", record)
    parent = r.optional_ident("id_transmissor")
    login_id = r.optional_ident("id_login")
    mac = r.mac("mac")
    return _device(
        r,
        ctx,
        device_id=f"onu-{r.ident('id')}",
        name=r.optional("nome") or mac or f"onu-{r.ident('id')}",
        device_type="ONU",
        ip=r.ipv4("ip"),
        parent=f"radio-{parent}" if parent else None,
        pop_id=r.optional_ident("id_pop"),
        logins=[login_id] if login_id else [],
    )
