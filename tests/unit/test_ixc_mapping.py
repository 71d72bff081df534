"""IXC record -> event mapping: every form validates against its Avro schema, malformed
records name the field, contract states and change reasons follow IXC's codes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from filas.catalog import ixc_state
from producers.ixc import fields, mapping
from producers.ixc.contract_status import ContractSnapshot, change_reason, derive_status
from producers.ixc.errors import IxcMappingError
from producers.ixc.forms import FORMS, PLANS_FORM
from producers.ixc.mapping import MappingContext
from producers.ixc.simulator import SimulatedIsp
from schemas.catalog import SchemaCatalog

SCHEMAS = SchemaCatalog.load()
SP = ZoneInfo("America/Sao_Paulo")
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
UPDATED = "ultima_atualizacao"


def ctx(**kw: object) -> MappingContext:
    return MappingContext(tz=SP, observed_at=NOW, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def isp() -> SimulatedIsp:
    return SimulatedIsp(seed=7, customers=30, devices=25, nas=3)


def test_every_form_maps_to_a_valid_event(isp: SimulatedIsp) -> None:
    plans = {p.plan_id: p for p in map(mapping.plan_from_record, isp.records(PLANS_FORM))}
    context = ctx(plans=plans)
    for spec in FORMS:
        records = isp.records(spec.form)
        assert records, spec.form
        for record in records:
            event = spec.mapper(record, context)
            SCHEMAS.validate(spec.topic.value_schema, event)
            assert event[spec.topic.key_field]


def test_status_change_event_validates() -> None:
    record = {
        "id": "9", "id_cliente": "3", "id_vd_contrato": "2", "contrato": "FIBRA 300M",
        "status": "A", "status_internet": "CA", "valor": "99.90",
        "ultima_atualizacao": "2024-05-02 10:00:00",
    }  # fmt: skip
    contract = mapping.contract_event(record, ctx())
    previous = ContractSnapshot(status="ACTIVE", internet_code="A", plan_id="2")
    event = mapping.contract_status_changed_event(previous, contract, record, ctx())
    assert event is not None
    SCHEMAS.validate(ixc_state.CONTRACT_STATUS.value_schema, event)
    assert (event["previous_status"], event["new_status"]) == ("ACTIVE", "BLOCKED")
    assert event["reason"] == "NON_PAYMENT_BLOCK"
    assert contract["monthly_price"] == Decimal("99.90")
    unchanged = ContractSnapshot(status="BLOCKED", internet_code="CA", plan_id="2")
    assert mapping.contract_status_changed_event(unchanged, contract, record, ctx()) is None


def test_ixc_local_time_becomes_utc_occurred_at() -> None:
    record = {
        "id": "1", "razao": "Ana", "ativo": "S", "ultima_atualizacao": "2024-05-01 10:20:30",
    }  # fmt: skip
    event = mapping.customer_event(record, ctx())
    # São Paulo is UTC-3 (no DST since 2019).
    assert event["updated_at"] == datetime(2024, 5, 1, 13, 20, 30, tzinfo=UTC)
    assert event["envelope"]["occurred_at"] == event["updated_at"]
    assert event["envelope"]["source_system"] == "ixc-adapter"


@pytest.mark.parametrize("empty", ["", "0000-00-00 00:00:00"])
def test_empty_update_date_falls_back_to_observed_time(empty: str) -> None:
    event = mapping.customer_event(
        {"id": "1", "razao": "Ana", "ativo": "S", "ultima_atualizacao": empty}, ctx()
    )
    assert event["updated_at"] is None
    assert event["envelope"]["occurred_at"] == NOW


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"id": "x", "razao": "A", "ativo": "S", "ultima_atualizacao": ""}, "id"),
        ({"id": "1", "razao": "", "ativo": "S", "ultima_atualizacao": ""}, "razao"),
        ({"id": "1", "razao": "A", "ativo": "talvez", "ultima_atualizacao": ""}, "ativo"),
        ({"id": "1", "razao": "A", "ativo": "S", "ultima_atualizacao": "ontem"}, UPDATED),
        ({"id": "1", "razao": "A", "ativo": "S"}, UPDATED),
    ],
)  # fmt: skip
def test_malformed_customer_names_the_field(record: dict[str, str], field: str) -> None:
    with pytest.raises(IxcMappingError) as caught:
        mapping.customer_event(record, ctx())
    assert caught.value.field == field
    assert caught.value.form == "cliente"
    assert not caught.value.retriable


def test_nas_event_never_carries_the_secret() -> None:
    record = {
        "id": "4", "nome": "BNG", "ip": "10.0.0.1", "tipo": "mikrotik",
        "secret": "s3cr3t", "ultima_atualizacao": "2024-05-01 10:00:00",
    }  # fmt: skip
    event = mapping.nas_event(record, ctx())
    assert "s3cr3t" not in repr(event)
    assert event["secret_ref"] == "ixc/nas/4/radius-secret"
    assert event["vendor"] == "MIKROTIK"


def test_login_is_reduced_when_its_contract_is() -> None:
    isp = SimulatedIsp(seed=1, customers=1, devices=0, nas=1)
    login = isp.get("radusuarios", "1") | {"ativo": "S", "autenticacao": "L"}
    assert mapping.subscriber_event(login, ctx())["status"] == "ACTIVE"
    reduced = ctx(contracts={"1": ContractSnapshot("REDUCED", "FA", "1")})
    assert mapping.subscriber_event(login, reduced)["status"] == "REDUCED"


def test_unknown_login_authentication_code_is_a_mapping_error() -> None:
    isp = SimulatedIsp(seed=1, customers=1, devices=0, nas=1)
    with pytest.raises(IxcMappingError) as caught:
        mapping.subscriber_event(isp.get("radusuarios", "1") | {"autenticacao": "Z"}, ctx())
    assert caught.value.field == "autenticacao"


@pytest.mark.parametrize(
    ("status", "internet", "expected"),
    [
        ("A", "A", "ACTIVE"), ("A", "CA", "BLOCKED"), ("A", "CM", "BLOCKED"),
        ("A", "FA", "REDUCED"), ("A", "AA", "PENDING"), ("A", "D", "SUSPENDED"),
        ("N", "A", "ACTIVE"), ("P", "A", "PENDING"), ("I", "A", "CANCELLED"),
        ("D", "CA", "CANCELLED"), ("A", "ZZ", "UNKNOWN"),
    ],
)  # fmt: skip
def test_contract_status_from_ixc_codes(status: str, internet: str, expected: str) -> None:
    assert derive_status(status, internet) == expected


def snap(status: str, code: str, plan: str | None = "1") -> ContractSnapshot:
    return ContractSnapshot(status=status, internet_code=code, plan_id=plan)


@pytest.mark.parametrize(
    ("previous", "current", "trust", "reason"),
    [
        (snap("ACTIVE", "A"), snap("BLOCKED", "CA"), False, "NON_PAYMENT_BLOCK"),
        (snap("ACTIVE", "A"), snap("REDUCED", "FA"), False, "NON_PAYMENT_BLOCK"),
        (snap("ACTIVE", "A"), snap("BLOCKED", "CM"), False, "MANUAL"),
        (snap("BLOCKED", "CA"), snap("ACTIVE", "A"), True, "TRUST_UNBLOCK"),
        (snap("BLOCKED", "CA"), snap("ACTIVE", "A"), False, "PAYMENT_CONFIRMED"),
        (snap("BLOCKED", "CM"), snap("ACTIVE", "A"), False, "MANUAL"),
        (snap("ACTIVE", "A", "1"), snap("ACTIVE", "A", "2"), False, "PLAN_CHANGE"),
        (snap("ACTIVE", "A"), snap("CANCELLED", "A"), False, "CANCELLATION"),
    ],
)
def test_change_reason(
    previous: ContractSnapshot, current: ContractSnapshot, trust: bool, reason: str
) -> None:
    assert change_reason(previous, current, trust) == reason


def test_field_parsers() -> None:
    assert fields.rate_kbps("100M") == 100_000
    assert fields.rate_kbps("512k") == 512
    assert fields.rate_kbps("1G") == 1_000_000
    assert fields.rate_kbps("") is None
    assert fields.mac_address("aa-bb-cc-dd-ee-ff") == "AA:BB:CC:DD:EE:FF"
    assert fields.money("1234,5") == Decimal("1234.50")
    assert fields.digits("123.456.789-01") == "12345678901"
    with pytest.raises(ValueError, match="rate"):
        fields.rate_kbps("fast")
    with pytest.raises(ValueError, match="decimal"):
        fields.money("12,3,4")
    with pytest.raises(ValueError, match="range"):
        fields.money("99999999999")
    assert fields.ipv4("0.0.0.0") is None
    assert fields.ipv6_prefix("2804:1::1/56") == "2804:1::/56"
    with pytest.raises(ValueError, match="IPv4"):
        fields.ipv4("10.0.0.300")
