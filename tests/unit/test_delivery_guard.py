"""What a delivery worker decides just before sending (no network): opt-outs made after the
fan-out by purpose and channel, and the campaign's pause / resume / cancel commands."""

from __future__ import annotations

from typing import Any

from consumers.delivery.guard import CANCELLED, PAUSED, SKIPPED_OPT_OUT, SendRules


def message(recipient: str = "42", campaign: str = "c1", purpose: str = "marketing") -> Any:
    return {"campaign_id": campaign, "recipient_id": recipient, "purpose": purpose}


def command(name: str, campaign: str = "c1") -> dict[str, str]:
    return {"campaign_id": campaign, "command": name}


def test_an_opt_out_stops_marketing_and_a_channel_opt_out_stops_every_purpose() -> None:
    rules = SendRules()
    assert rules.verdict(message(), "email") is None
    rules.put_opt_out("42", {"customer_id": "42", "marketing": True, "channels": []})
    verdict = rules.verdict(message(), "email")
    assert verdict is not None
    assert verdict.status == SKIPPED_OPT_OUT
    assert "marketing" in verdict.reason
    # A marketing opt-out leaves billing and service messages alone.
    assert rules.verdict(message(purpose="billing"), "email") is None
    assert rules.verdict(message(purpose="service"), "sms") is None
    rules.put_opt_out("42", {"customer_id": "42", "marketing": False, "channels": ["sms"]})
    assert rules.verdict(message(), "email") is None
    verdict = rules.verdict(message(purpose="billing"), "sms")
    assert verdict is not None
    assert verdict.status == SKIPPED_OPT_OUT
    assert "sms" in verdict.reason
    assert rules.verdict(message(recipient="43", purpose="billing"), "sms") is None


def test_opting_back_in_or_a_tombstone_clears_the_opt_out() -> None:
    rules = SendRules()
    rules.put_opt_out("42", {"customer_id": "42", "marketing": True, "channels": ["email"]})
    rules.put_opt_out("42", {"customer_id": "42", "marketing": False, "channels": []})
    assert rules.verdict(message(), "email") is None
    assert rules.opt_outs == {}
    rules.put_opt_out("42", {"customer_id": "42", "marketing": True, "channels": []})
    rules.put_opt_out("42", None)
    assert rules.verdict(message(), "email") is None


def test_a_message_without_purpose_is_treated_as_marketing() -> None:
    rules = SendRules()
    rules.put_opt_out("42", {"customer_id": "42", "marketing": True, "channels": []})
    verdict = rules.verdict({"campaign_id": "c1", "recipient_id": "42"}, "email")
    assert verdict is not None
    assert verdict.status == SKIPPED_OPT_OUT


def test_pause_holds_resume_releases_and_cancel_is_final() -> None:
    rules = SendRules()
    rules.put_command(command("create"))
    assert rules.verdict(message(), "email") is None
    rules.put_command(command("pause"))
    verdict = rules.verdict(message(), "email")
    assert verdict is not None
    assert verdict.status == PAUSED
    assert rules.verdict(message(campaign="c2"), "email") is None
    rules.put_command(command("resume"))
    assert rules.verdict(message(), "email") is None
    rules.put_command(command("pause"))
    rules.put_command(command("cancel"))
    verdict = rules.verdict(message(), "email")
    assert verdict is not None
    assert verdict.status == CANCELLED
    # Nothing brings a cancelled campaign back.
    rules.put_command(command("resume"))
    rules.put_command(command("create"))
    assert rules.campaign_state("c1") == CANCELLED


def test_cancel_wins_over_an_opt_out_which_wins_over_a_pause() -> None:
    rules = SendRules()
    rules.put_opt_out("42", {"customer_id": "42", "marketing": True, "channels": []})
    rules.put_command(command("pause"))
    verdict = rules.verdict(message(), "email")
    assert verdict is not None
    assert verdict.status == SKIPPED_OPT_OUT
    verdict = rules.verdict(message(recipient="43"), "email")
    assert verdict is not None
    assert verdict.status == PAUSED
    rules.put_command(command("cancel"))
    verdict = rules.verdict(message(), "email")
    assert verdict is not None
    assert verdict.status == CANCELLED
