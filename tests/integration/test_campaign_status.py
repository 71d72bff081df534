"""``filas campaigns status`` against real Kafka + registry and a real SMTP server (aiosmtpd): a
small campaign is delivered (one refused, one opted out at send, later messages withdrawn by a
cancel), and the status shows exactly the delivery results topic's counts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result

from consumers.delivery.peers import SmtpSink
from consumers.delivery.worker import DeliveryWorker
from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import (
    CAMPAIGNS,
    DELIVERY_LEDGER,
    DELIVERY_RESULTS,
    MESSAGE_LANES,
    OPT_OUTS,
    PROGRESS,
)
from filas.cli.campaign_cmds import campaigns, command_record, opt_out_record
from filas.settings import DeliverySettings, Settings, SmtpChannelSettings, TopicsSettings
from tests.integration.test_delivery_guard import (
    DOMAIN,
    Env,
    address,
    emit,
    messages,
    publish,
    read_all,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def env(platform: Settings, unique_name: str) -> Env:
    settings = platform.model_copy(
        update={
            "topics": TopicsSettings(prefix=unique_name),
            "delivery": DeliverySettings(
                backoff_initial_s=0.2,
                session_timeout_ms=6000,
                email=SmtpChannelSettings(port=1, message_id_domain=DOMAIN, concurrency=8),
            ),
        }
    )
    catalog = Catalog.build(unique_name)
    specs: list[TopicSpec | str] = [
        DELIVERY_RESULTS, DELIVERY_LEDGER, OPT_OUTS, CAMPAIGNS, PROGRESS,
    ]  # fmt: skip
    for lane in MESSAGE_LANES:
        specs += [lane, catalog.dead_letter_for(lane).name]
    TopicAdmin(settings.kafka).apply(catalog.only(*specs))
    return Env(settings, catalog)


def progress_record(campaign: str, status: str, queued: int) -> dict[str, Any]:
    """What the fan-out emits (streams.campaigns.engine.FanoutEngine.progress_record)."""
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC),
            "source_system": "filas-campaigns",
            "correlation_id": campaign,
        },
        "campaign_id": campaign,
        "status": status,
        "lane": "bulk",
        "matched": queued + 1,
        "planned": queued,
        "queued": queued,
        "skipped_no_consent": 1,
        "skipped_opt_out": 0,
        "skipped_invalid_address": 0,
        "skipped_frequency_cap": 0,
        "held_outage": 0,
        "cursor": None,
        "error_code": None,
        "error": None,
    }


def status_cli(env: Env, *args: str) -> Result:
    result = CliRunner().invoke(campaigns, ["status", *args], obj=env.settings)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def status_json(env: Env, campaign: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(status_cli(env, campaign, "--json").output)
    return doc


def latest_by_status(env: Env, campaign: str, expect: int) -> Counter[str]:
    """The delivery results topic read directly: latest status per message of ``campaign``."""
    latest: dict[str, str] = {}
    for r in read_all(env, DELIVERY_RESULTS, expect):
        if str(r["campaign_id"]) == campaign:
            latest[str(r["message_id"])] = r["status"]
    return Counter(latest.values())


async def drive(worker: DeliveryWorker, until: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"timed out; stats {worker.stats.as_dict()}"
        await worker.run_once(0.2)


def test_status_counts_match_the_delivery_results(env: Env) -> None:
    campaign, other = str(uuid.uuid4()), str(uuid.uuid4())
    first, later = 10, 4
    queued = first + later
    # The fan-out queued 14 messages; 10 are on the lanes now, plus another campaign's 3.
    emit(env, PROGRESS, progress_record(campaign, "running", queued))
    publish(env, messages(first, campaign, first=0))
    publish(env, messages(3, other, first=50))
    emit(env, OPT_OUTS, opt_out_record(str(100_002), marketing=True, channels=[], source="t"))
    with SmtpSink() as sink:
        sink.behaviour.refuse[address(5)] = (550, "5.1.1 no such user")
        settings = env.settings.model_copy(
            update={
                "delivery": env.settings.delivery.model_copy(
                    update={
                        "email": env.settings.delivery.email.model_copy(update={"port": sink.port})
                    }
                )
            }
        )
        mid: dict[str, Any] = {}

        async def run() -> DeliveryWorker:
            worker = DeliveryWorker(settings, "email", catalog=env.catalog)
            await worker.start()
            s = worker.stats
            try:
                await drive(worker, lambda: s.sent + s.permanent + s.skipped_opt_out >= first + 3)
                mid.update(await asyncio.to_thread(status_json, env, campaign))
                # The operator cancels; the fan-out reports it, and 4 messages it had queued
                # before are withdrawn at send.
                emit(env, CAMPAIGNS, command_record(campaign, "cancel", "test"))
                emit(env, PROGRESS, progress_record(campaign, "cancelled", queued))
                deadline = time.monotonic() + 60
                while worker.guard.rules.campaign_state(campaign) != "cancelled":
                    assert time.monotonic() < deadline, "the worker never saw the cancel"
                    await worker.run_once(0.2)
                await asyncio.to_thread(publish, env, messages(later, campaign, first=first))
                await drive(worker, lambda: s.cancelled >= later)
            finally:
                await worker.close()
            return worker

        worker = asyncio.run(run())
        assert sink.count() == first - 2 + 3

    assert (worker.stats.sent, worker.stats.permanent, worker.stats.cancelled) == (11, 1, later)
    assert {k: mid[k] for k in ("status", "queued", "sent", "failed", "skipped")} == {
        "status": "running",
        "queued": queued,
        "sent": first - 2,
        "failed": 1,
        "skipped": 1,
    }
    assert (mid["cancelled"], mid["pending"]) == (0, later)
    assert 0 < mid["rate_per_s"] <= first - 2  # all sent within the last minute

    final = status_json(env, campaign)
    assert {k: final[k] for k in ("sent", "failed", "skipped", "cancelled", "pending")} == {
        "sent": first - 2,
        "failed": 1,
        "skipped": 1,
        "cancelled": later,
        "pending": 0,
    }
    assert final["status"] == "cancelled"
    assert final["fanout_skipped"]["skipped_no_consent"] == 1
    # The JSON is the delivery results topic's own count.
    topic = latest_by_status(env, campaign, queued + 3)
    assert topic == Counter(
        {"sent": final["sent"], "permanent_failure": final["failed"],
         "skipped_optout": final["skipped"], "cancelled": final["cancelled"]}
    )  # fmt: skip

    # Settled: --watch prints one document and returns.
    watched = status_cli(env, campaign, "--json", "--watch", "--interval", "0.1")
    lines = watched.output.strip().splitlines()
    assert len(lines) == 1
    assert {k: v for k, v in json.loads(lines[0]).items() if k not in ("as_of", "rate_per_s")} == {
        k: v for k, v in final.items() if k not in ("as_of", "rate_per_s")
    }
    text = status_cli(env, campaign).output
    assert f"{queued}/{queued} (100%)" in text
    assert "━" in text
    assert "cancelled" in text
    assert "pending    0" in text

    # Unknown campaign: a clear error, not an empty status.
    unknown = CliRunner().invoke(campaigns, ["status", str(uuid.uuid4())], obj=env.settings)
    assert unknown.exit_code != 0
    assert "no progress yet" in str(unknown.exception)
