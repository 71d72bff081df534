"""Campaign planning (pure): audience, consent, windows, caps, templates, deterministic ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.campaigns.plan import (
    CampaignError,
    CampaignSpec,
    FrequencyHistory,
    brl,
    message_id,
    normalize_email,
    normalize_phone,
    place_in_window,
    plan_campaign,
)
from streams.campaigns.state import SubscriberState

SP = ZoneInfo("America/Sao_Paulo")
# 2026-03-10 15:00 UTC = 12:00 in São Paulo (UTC-3): inside the default 08:00-20:00 window.
NOON_SP = int(datetime(2026, 3, 10, 15, 0, tzinfo=UTC).timestamp() * 1000)


def envelope() -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC),
        "source_system": "test",
        "correlation_id": None,
    }


def customer(cid: str, **kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "envelope": envelope(),
        "customer_id": cid,
        "name": f"maria silva {cid}",
        "email": f"c{cid}@Example.COM",
        "mobile_phone": "(67) 99999-0000",
        "city_id": "1",
        "timezone": "America/Sao_Paulo",
        "marketing_consent": True,
        "active": True,
        "tags": [],
    }
    record.update(kw)
    return record


def contract(contract_id: str, cid: str, **kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "envelope": envelope(),
        "contract_id": contract_id,
        "customer_id": cid,
        "plan_id": "p1",
        "plan_name": "Fibra 300",
        "status": "ACTIVE",
        "ixc_status": "A",
        "ixc_internet_status": "A",
        "days_overdue": None,
        "monthly_price": Decimal("99.90"),
    }
    record.update(kw)
    return record


def campaign(**kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "envelope": envelope(),
        "campaign_id": str(uuid.uuid4()),
        "name": "Promo",
        "command": "create",
        "channels": ["email", "sms"],
        "template": {"subject": "Oi {{ first_name }}", "body": "Plano {{ plan_name }}"},
        "audience": {},
        "schedule_at": None,
        "send_window_start_min": 480,
        "send_window_end_min": 1200,
        "timezone": "America/Sao_Paulo",
        "frequency_cap_per_day": None,
        "lane": "bulk",
        "requested_by": None,
        "purpose": "marketing",
    }
    record.update(kw)
    return record


def state_of(n: int = 3) -> SubscriberState:
    state = SubscriberState()
    for i in range(1, n + 1):
        state.put_customer(str(i), customer(str(i)))
        state.put_contract(f"k{i}", contract(f"k{i}", str(i)))
    return state


def plan(record: dict[str, Any], state: SubscriberState, **kw: Any) -> Any:
    return plan_campaign(
        CampaignSpec.from_record(record),
        state,
        kw.pop("history", FrequencyHistory()),
        NOON_SP,
        **kw,
    )


def test_one_message_per_recipient_and_channel_sorted_with_deterministic_ids() -> None:
    record = campaign()
    p = plan(record, state_of(3))
    assert [(m.recipient_id, m.channel) for m in p.messages] == [
        (r, c) for r in ("1", "2", "3") for c in ("email", "sms")
    ]
    assert p.counts.matched == 3
    assert p.counts.planned == 6
    first = p.messages[0]
    assert first.message_id == message_id(record["campaign_id"], "1", "email")
    assert first.subject == "Oi Maria"
    assert first.body == "Plano Fibra 300"
    assert first.address == "c1@example.com"
    assert p.messages[1].address == "+5567999990000"
    assert p.messages[1].subject is None
    again = plan(record, state_of(3))
    assert [m.message_id for m in again.messages] == [m.message_id for m in p.messages]
    assert len({m.message_id for m in p.messages}) == 6


def test_audience_filters_status_city_plan_overdue_tags_and_inactive() -> None:
    state = state_of(6)
    state.put_customer("2", customer("2", city_id="9"))
    state.put_contract("k3", contract("k3", "3", plan_id="p2"))
    state.put_contract("k4", contract("k4", "4", days_overdue=20, status="BLOCKED"))
    state.put_customer("5", customer("5", active=False))
    state.put_customer("6", customer("6", tags=["vip", "fibra"]))
    assert {m.recipient_id for m in plan(campaign(audience={"cities": ["1"]}), state).messages} == {
        "1",
        "3",
        "4",
        "6",
    }
    assert {
        m.recipient_id for m in plan(campaign(audience={"plan_ids": ["p2"]}), state).messages
    } == {"3"}
    overdue = plan(campaign(audience={"min_days_overdue": 15}), state)
    assert {m.recipient_id for m in overdue.messages} == {"4"}
    assert overdue.messages[0].contract_id == "k4"
    by_status = plan(campaign(audience={"contract_statuses": ["BLOCKED"]}), state)
    assert {m.recipient_id for m in by_status.messages} == {"4"}
    raw = plan(campaign(audience={"contract_statuses": ["A"]}), state)
    assert "4" in {m.recipient_id for m in raw.messages}  # ixc_status A
    tags = plan(campaign(audience={"tags": ["vip"]}), state)
    assert {m.recipient_id for m in tags.messages} == {"6"}


def test_marketing_needs_consent_and_opt_outs_apply_to_every_purpose() -> None:
    state = state_of(4)
    state.put_customer("1", customer("1", marketing_consent=False))
    state.put_opt_out("2", {"customer_id": "2", "marketing": True, "channels": []})
    state.put_opt_out("3", {"customer_id": "3", "marketing": False, "channels": ["sms"]})
    p = plan(campaign(), state)
    assert [(m.recipient_id, m.channel) for m in p.messages] == [
        ("3", "email"),
        ("4", "email"),
        ("4", "sms"),
    ]
    assert p.counts.skipped_no_consent == 2
    assert p.counts.skipped_opt_out == 3
    billing = plan(campaign(purpose="billing"), state)
    # Billing needs no marketing consent; the sms opt-out still holds.
    assert len(billing.messages) == 7
    assert ("3", "sms") not in {(m.recipient_id, m.channel) for m in billing.messages}


def test_invalid_addresses_are_skipped_and_counted() -> None:
    state = state_of(2)
    state.put_customer("1", customer("1", email="not-an-email", mobile_phone="123"))
    p = plan(campaign(), state)
    assert {m.recipient_id for m in p.messages} == {"2"}
    assert p.counts.skipped_invalid_address == 2


def test_quiet_hours_move_not_before_into_the_customer_window() -> None:
    state = state_of(2)
    state.put_customer("2", customer("2", timezone="Asia/Tokyo"))
    # 12:00 in São Paulo is 00:00 in Tokyo: outside 08:00-20:00, moved to 08:00 Tokyo.
    p = plan(campaign(channels=["sms"]), state)
    by = {m.recipient_id: m.not_before_ms for m in p.messages}
    assert by["1"] == NOON_SP
    tokyo = datetime.fromtimestamp(by["2"] / 1000, UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (tokyo.hour, tokyo.minute) == (8, 0)
    assert by["2"] > NOON_SP


def test_place_in_window_edges() -> None:
    at = NOON_SP  # 12:00 local
    assert place_in_window(at, SP, 480, 1200) == at
    assert place_in_window(at, SP, 0, 1440) == at
    assert place_in_window(at, SP, 600, 600) == at
    later = place_in_window(at, SP, 780, 1200)  # opens 13:00 today
    assert later - at == 3_600_000
    wrapped = place_in_window(at, SP, 1320, 360)  # 22:00-06:00: opens 22:00 today
    assert wrapped - at == 10 * 3_600_000
    night = int(datetime(2026, 3, 10, 2, 0, tzinfo=UTC).timestamp() * 1000)  # 23:00 local
    assert place_in_window(night, SP, 1320, 360) == night
    next_morning = place_in_window(night, SP, 480, 1200)
    assert datetime.fromtimestamp(next_morning / 1000, UTC).astimezone(SP).hour == 8
    assert next_morning - night == 9 * 3_600_000


def test_schedule_at_in_the_future_sets_not_before() -> None:
    future = NOON_SP + 3_600_000
    p = plan(campaign(channels=["sms"], schedule_at=future), state_of(1))
    assert p.messages[0].not_before_ms == future


def test_frequency_cap_counts_other_campaigns_only() -> None:
    state = state_of(3)
    history = FrequencyHistory()
    history.add("other", "1", "sms", "bulk", NOON_SP - 3_600_000)
    history.add("other", "2", "sms", "bulk", NOON_SP - 2 * 86_400_000)  # too old
    history.add("other", "3", "sms", "transactional", NOON_SP)  # another lane
    record = campaign(channels=["sms"], frequency_cap_per_day=1)
    history.add(record["campaign_id"], "3", "sms", "bulk", NOON_SP)  # itself: never counts
    p = plan(record, state, history=history)
    assert {m.recipient_id for m in p.messages} == {"2", "3"}
    assert p.counts.skipped_frequency_cap == 1
    assert len(plan(campaign(channels=["sms"]), state, history=history).messages) == 3


def test_template_errors_fail_the_whole_plan_with_a_clear_error() -> None:
    state = state_of(3)
    with pytest.raises(CampaignError) as undefined:
        plan(campaign(template={"subject": "x", "body": "Olá {{ nome }}"}), state)
    assert undefined.value.code == "campaign_template_error"
    assert "nome" in str(undefined.value)
    assert "recipient 1" in str(undefined.value)
    with pytest.raises(CampaignError) as syntax:
        plan(campaign(template={"subject": "x", "body": "Olá {{ first_name "}), state)
    assert syntax.value.code == "campaign_template_error"
    # Only recipient 3 has no monthly price: the plan still fails as a whole.
    state.put_contract("k3", contract("k3", "3", monthly_price=None))
    with pytest.raises(CampaignError, match="recipient 3"):
        plan(campaign(template={"subject": "x", "body": "{{ monthly_price | brl }}"}), state)


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    body = "{{ name.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(CampaignError, match="SecurityError"):
        plan(campaign(template={"subject": "x", "body": body}), state_of(1))


def test_invalid_definitions_are_refused() -> None:
    state = state_of(1)
    with pytest.raises(CampaignError, match="subject"):
        plan(campaign(template={"subject": None, "body": "x"}), state)
    with pytest.raises(CampaignError) as amount:
        plan(campaign(audience={"min_amount_overdue": Decimal("10.00")}), state)
    assert amount.value.code == "campaign_audience_unsupported"
    with pytest.raises(CampaignError, match="timezone"):
        plan(campaign(timezone="Mars/Olympus"), state)
    with pytest.raises(CampaignError, match="channel"):
        plan(campaign(channels=[]), state)


def test_outage_holds_bulk_marketing_and_billing_only() -> None:
    state = state_of(2)
    p = plan(campaign(channels=["sms"]), state, held={"1"})
    assert [(m.recipient_id, m.held) for m in p.messages] == [("1", True), ("2", False)]
    assert p.counts.held_outage == 1
    assert p.counts.planned == 1
    service = plan(campaign(channels=["sms"], purpose="service"), state, held={"1"})
    assert not any(m.held for m in service.messages)
    urgent = plan(campaign(channels=["sms"], lane="transactional"), state, held={"1"})
    assert not any(m.held for m in urgent.messages)


def test_cursor_resumes_after_the_last_published_key() -> None:
    p = plan(campaign(), state_of(3))
    assert p.start_after(None) == 0
    assert p.start_after(("1", "sms")) == 2
    assert p.start_after(("3", "sms")) == 6


def test_address_and_money_helpers() -> None:
    assert normalize_phone("67999990000") == "+5567999990000"
    assert normalize_phone("+55 (67) 99999-0000") == "+5567999990000"
    assert normalize_phone("0055 67 99999 0000") == "+5567999990000"
    assert normalize_phone("12345") is None
    assert normalize_phone(None) is None
    assert normalize_email(" Ana@Mail.COM ") == "Ana@mail.com"
    assert normalize_email("ana@") is None
    assert brl(Decimal("1234.5")) == "R$ 1.234,50"


def test_message_id_is_rfc4122_uuid5_of_campaign_recipient_channel() -> None:
    from streams.campaigns.plan import NAMESPACE

    cid = str(uuid.uuid4())
    got = message_id(cid, "0042", "sms")
    assert got == str(uuid.uuid5(NAMESPACE, f"{cid}/0042/sms"))
    assert uuid.UUID(got).version == 5
    assert got != message_id(cid, "0042", "email")
