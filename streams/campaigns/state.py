"""Subscriber state the fan-out plans against: customers, contracts, logins, opt-outs, outages.

Frozen entries built from the compacted IXC state topics (``ixc.customers``, ``ixc.contracts``,
``ixc.subscribers``), ``campaign.opt-outs`` and ``net.responses``. Pure data: the Kafka feeder
(``streams.campaigns.replica``) and tests call the ``put_*`` methods; planning reads under
``lock`` so a feeder thread never changes a dict while a plan iterates it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class CustomerEntry:
    customer_id: str
    name: str
    email: str | None
    mobile_phone: str | None
    city_id: str | None
    state: str | None
    timezone: str
    marketing_consent: bool
    active: bool
    tags: frozenset[str]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CustomerEntry:
        return cls(
            customer_id=str(record["customer_id"]),
            name=str(record.get("name") or ""),
            email=record.get("email") or None,
            mobile_phone=record.get("mobile_phone") or None,
            city_id=record.get("city_id"),
            state=record.get("state"),
            timezone=str(record.get("timezone") or ""),
            marketing_consent=bool(record.get("marketing_consent", False)),
            active=bool(record.get("active", False)),
            tags=frozenset(record.get("tags") or ()),
        )


@dataclass(frozen=True, slots=True)
class ContractEntry:
    contract_id: str
    customer_id: str
    plan_id: str | None
    plan_name: str
    status: str
    ixc_status: str
    ixc_internet_status: str
    days_overdue: int | None
    monthly_price: Decimal | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ContractEntry:
        return cls(
            contract_id=str(record["contract_id"]),
            customer_id=str(record["customer_id"]),
            plan_id=record.get("plan_id"),
            plan_name=str(record.get("plan_name") or ""),
            status=str(record.get("status") or "UNKNOWN"),
            ixc_status=str(record.get("ixc_status") or ""),
            ixc_internet_status=str(record.get("ixc_internet_status") or ""),
            days_overdue=record.get("days_overdue"),
            monthly_price=record.get("monthly_price"),
        )


@dataclass(frozen=True, slots=True)
class OptOutEntry:
    customer_id: str
    marketing: bool
    channels: frozenset[str]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> OptOutEntry:
        return cls(
            customer_id=str(record["customer_id"]),
            marketing=bool(record.get("marketing", False)),
            channels=frozenset(str(c) for c in record.get("channels") or ()),
        )


@dataclass(frozen=True, slots=True)
class LoginEntry:
    """Only what campaigns need from a SubscriberLogin (never the password)."""

    login_id: str
    customer_id: str
    contract_id: str


@dataclass
class SubscriberState:
    """Everything a plan reads; the ``put_*`` methods take a decoded record or None (tombstone)."""

    customers: dict[str, CustomerEntry] = field(default_factory=dict)
    contracts: dict[str, ContractEntry] = field(default_factory=dict)
    contracts_by_customer: dict[str, dict[str, ContractEntry]] = field(default_factory=dict)
    opt_outs: dict[str, OptOutEntry] = field(default_factory=dict)
    logins: dict[str, LoginEntry] = field(default_factory=dict)
    # login key (Kafka key of ixc.subscribers) -> login_id, to apply tombstones.
    _login_ids: dict[str, str] = field(default_factory=dict)
    # Active outages: alert id -> login ids held (PAUSE_MARKETING until RESUME_MARKETING).
    outages: dict[str, frozenset[str]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def put_customer(self, customer_id: str, record: Mapping[str, Any] | None) -> None:
        with self.lock:
            if record is None:
                self.customers.pop(customer_id, None)
            else:
                self.customers[customer_id] = CustomerEntry.from_record(record)

    def put_contract(self, contract_id: str, record: Mapping[str, Any] | None) -> None:
        with self.lock:
            old = self.contracts.pop(contract_id, None)
            if old is not None:
                by_customer = self.contracts_by_customer.get(old.customer_id, {})
                by_customer.pop(contract_id, None)
                if not by_customer:
                    self.contracts_by_customer.pop(old.customer_id, None)
            if record is not None:
                entry = ContractEntry.from_record(record)
                self.contracts[contract_id] = entry
                self.contracts_by_customer.setdefault(entry.customer_id, {})[contract_id] = entry

    def put_opt_out(self, customer_id: str, record: Mapping[str, Any] | None) -> None:
        with self.lock:
            if record is None:
                self.opt_outs.pop(customer_id, None)
            else:
                self.opt_outs[customer_id] = OptOutEntry.from_record(record)

    def put_login(self, login: str, record: Mapping[str, Any] | None) -> None:
        with self.lock:
            old_id = self._login_ids.pop(login, None)
            if old_id is not None:
                self.logins.pop(old_id, None)
            if record is not None:
                entry = LoginEntry(
                    login_id=str(record["login_id"]),
                    customer_id=str(record["customer_id"]),
                    contract_id=str(record["contract_id"]),
                )
                self.logins[entry.login_id] = entry
                self._login_ids[login] = entry.login_id

    def hold_outage(self, alert_id: str, login_ids: list[str]) -> None:
        """Hold the logins' customers; resolved at query time (the logins topic may lag)."""
        with self.lock:
            self.outages[alert_id] = frozenset(login_ids)

    def release_outage(self, alert_id: str) -> None:
        with self.lock:
            self.outages.pop(alert_id, None)

    def customers_in_outage(self) -> frozenset[str]:
        with self.lock:
            held: set[str] = set()
            for login_ids in self.outages.values():
                held.update(self.logins[i].customer_id for i in login_ids if i in self.logins)
            return frozenset(held)
