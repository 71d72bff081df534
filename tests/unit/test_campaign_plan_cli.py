"""``filas campaigns create`` file parsing and command records, checked against the Avro schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from filas.cli.campaign_cmds import campaign_record, command_record
from filas.errors import ConfigurationError
from schemas.catalog import SchemaCatalog, validate_record
from streams.campaigns.plan import CampaignSpec

CATALOG = SchemaCatalog.load()
SCHEMA = CATALOG.get("ixc.filas.campaign.Campaign")


def definition(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "Aviso",
        "channels": ["sms", "email"],
        "subject": "Fatura {{ plan_name }}",
        "body": "Olá {{ first_name }}",
        "audience": {"min_days_overdue": 5, "min_amount_overdue": "10.50"},
        "schedule_at": "2026-03-10T12:00:00+00:00",
        "send_window": "09:30-18:00",
        "frequency_cap_per_day": 1,
        "lane": "transactional",
        "purpose": "billing",
    }
    d.update(kw)
    return d


def test_definition_file_becomes_a_valid_create_record() -> None:
    record = campaign_record(definition(), requested_by="ana")
    validate_record(SCHEMA, record)
    assert record["command"] == "create"
    assert (record["send_window_start_min"], record["send_window_end_min"]) == (570, 1080)
    assert record["schedule_at"] == datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert record["audience"]["min_amount_overdue"] == Decimal("10.50")
    spec = CampaignSpec.from_record(record)
    assert spec.channels == ("sms", "email")
    assert spec.lane == "transactional"
    assert spec.purpose == "billing"
    assert spec.frequency_cap == 1


def test_bad_definitions_are_refused_before_anything_is_emitted() -> None:
    with pytest.raises(ConfigurationError, match="unknown keys"):
        campaign_record(definition(audiance={}))
    with pytest.raises(ConfigurationError, match="channels"):
        campaign_record(definition(channels=["pombo"]))
    with pytest.raises(ConfigurationError, match="template"):
        campaign_record(definition(body="{% if %}"))
    with pytest.raises(ConfigurationError, match="UTC offset"):
        campaign_record(definition(schedule_at="2026-03-10T12:00:00"))
    with pytest.raises(ConfigurationError, match="24:00"):
        campaign_record(definition(send_window="08:00-25:00"))


def test_command_records_are_valid_and_need_a_uuid() -> None:
    cid = str(uuid.uuid4())
    for name in ("pause", "resume", "cancel"):
        record = command_record(cid, name, "ana")
        validate_record(SCHEMA, record)
        assert record["command"] == name
    with pytest.raises(ValueError, match="badly formed"):
        command_record("not-a-uuid", "pause", None)


def test_opt_out_records_validate_and_feed_the_consent_rule() -> None:
    from filas.cli.campaign_cmds import opt_out_record
    from streams.campaigns.consent import NO_CONSENT, OPT_OUT, skip_reason
    from streams.campaigns.state import OptOutEntry

    record = opt_out_record("42", marketing=True, channels=["sms", "sms"], source="sms-SAIR")
    validate_record(CATALOG.get("ixc.filas.campaign.CampaignOptOut"), record)
    entry = OptOutEntry.from_record(record)
    assert entry.channels == frozenset({"sms"})
    assert skip_reason("billing", "sms", True, entry) == OPT_OUT
    assert skip_reason("billing", "email", False, entry) is None
    assert skip_reason("marketing", "email", True, entry) == OPT_OUT
    assert skip_reason("marketing", "email", False, None) == NO_CONSENT
    with pytest.raises(ConfigurationError, match="channels"):
        opt_out_record("42", marketing=False, channels=["fax"], source=None)
