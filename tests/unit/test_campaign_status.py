"""``filas campaigns status``: counting delivery results per message, the rate, the rendering."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner
from rich.console import Console

from filas.cli.campaign_cmds import status_renderable
from filas.cli.main import cli
from streams.campaigns.status import DeliveryTally, bucket, campaign_status

CID = str(uuid.uuid4())
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def result(message: str, status: str, at_s: float, campaign: str = CID) -> dict[str, Any]:
    return {
        "campaign_id": campaign,
        "message_id": message,
        "status": status,
        "finished_at": T0 + timedelta(seconds=at_s),
    }


def progress(**changes: Any) -> dict[str, Any]:
    record = {
        "campaign_id": CID,
        "status": "done",
        "lane": "bulk",
        "matched": 12,
        "planned": 10,
        "queued": 10,
        "skipped_no_consent": 1,
        "skipped_opt_out": 1,
        "skipped_invalid_address": 0,
        "skipped_frequency_cap": 0,
        "held_outage": 0,
        "error_code": None,
        "error": None,
    }
    return record | changes


def test_buckets() -> None:
    assert [bucket(s) for s in ("sent", "delivered", "permanent_failure", "expired")] == [
        "sent",
        "sent",
        "failed",
        "failed",
    ]
    assert bucket("temporary_failure") == bucket("unknown") == "failed"
    assert bucket("skipped_optout") == bucket("skipped_window") == "skipped"
    assert bucket("cancelled") == "cancelled"


def test_latest_status_per_message_counts_once_and_ignores_other_campaigns() -> None:
    tally = DeliveryTally(CID)
    tally.add(result("m1", "sent", 1))
    tally.add(result("m1", "delivered", 5))  # the provider's confirmation: still one message
    tally.add(result("m2", "permanent_failure", 2))
    tally.add(result("m3", "skipped_optout", 2))
    tally.add(result("m4", "cancelled", 3))
    tally.add(result("m5", "sent", 3))
    tally.add(result("m5", "sent", 3))  # a re-read (overlapping refresh) changes nothing
    tally.add(result("x1", "sent", 3, campaign=str(uuid.uuid4())))
    assert tally.counts() == {
        "sent": 2,
        "delivered": 1,
        "failed": 1,
        "skipped": 1,
        "cancelled": 1,
    }


def test_pending_is_queued_minus_every_final_result() -> None:
    tally = DeliveryTally(CID)
    for i in range(6):
        tally.add(result(f"m{i}", "sent", i))
    tally.add(result("f", "temporary_failure", 7))
    status = campaign_status(progress(), tally, T0 + timedelta(seconds=8))
    assert (status.sent, status.failed, status.pending) == (6, 1, 3)
    assert status.finished == 7
    assert status.total == 10
    assert not status.settled
    assert status.fanout_skipped["skipped_no_consent"] == 1
    for i in range(3):
        tally.add(result(f"n{i}", "cancelled", 9))
    status = campaign_status(progress(), tally, T0 + timedelta(seconds=10))
    assert status.pending == 0
    assert status.settled
    # A fan-out still running is not settled even with nothing pending yet.
    assert not campaign_status(progress(status="running"), tally, T0).settled


def test_rate_counts_first_acceptance_in_the_last_minute() -> None:
    tally = DeliveryTally(CID)
    for i in range(100):  # 100 sends over the first 10 s
        tally.add(result(f"a{i}", "sent", i / 10))
    tally.add(result("a0", "delivered", 50))  # not a second send
    # 10 s after the first send: 100 over 10 s, not over a whole minute.
    assert tally.rate(int((T0 + timedelta(seconds=10)).timestamp() * 1000)) == 10.0
    # 30 s later: still all inside the last minute, now over 40 s.
    assert tally.rate(int((T0 + timedelta(seconds=40)).timestamp() * 1000)) == 2.5
    # Two minutes later nothing was sent in the last minute.
    assert tally.rate(int((T0 + timedelta(seconds=130)).timestamp() * 1000)) == 0.0
    assert DeliveryTally(CID).rate(0) == 0.0


def test_json_document_and_rendering() -> None:
    tally = DeliveryTally(CID)
    tally.add(result("m1", "sent", 1))
    tally.add(result("m2", "skipped_optout", 1))
    status = campaign_status(
        progress(status="failed", error_code="template", error="boom"),
        tally,
        T0 + timedelta(seconds=2),
    )
    doc = status.as_dict()
    assert doc["sent"] == 1
    assert doc["skipped"] == 1
    assert doc["pending"] == 8
    assert doc["rate_per_s"] == 1.0
    assert doc["as_of"] == (T0 + timedelta(seconds=2)).isoformat()
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(status_renderable(status))
    text = out.getvalue()
    assert "2/10 (20%)" in text
    assert "━" in text  # the bar
    assert "pending    8" in text
    assert "[template] boom" in text


def test_singular_alias_group_has_the_same_commands() -> None:
    runner = CliRunner()
    shown = runner.invoke(cli, ["campaign", "--help"], obj=None)
    assert shown.exit_code == 0, shown.output
    assert "status" in shown.output
    bad = runner.invoke(cli, ["campaign", "status", "not-a-uuid"])
    assert bad.exit_code != 0
    assert "not a campaign id" in str(bad.exception)
