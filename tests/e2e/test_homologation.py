"""A small homologation run (300 subscribers, 60 devices, 4 NAS) against the session platform,
as a subprocess like an operator runs it; its summary is held to facts read independently from
ClickHouse and Kafka, and every process it started must be gone afterwards."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumers.clickhouse.client import ClickHouse
from consumers.ixc_requests.notices import payment_campaign_id
from filas.local_platform.testing import child_env
from filas.settings import Settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def run_env(settings: Settings, prefix: str, home: Path) -> dict[str, str]:
    return child_env(settings, prefix, home)


def topic_records(settings: Settings, topic: str) -> int:
    consumer = Consumer(settings.kafka.client_config() | {"group.id": "unused"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def table_of(prefix: str, topic: str) -> str:
    return f"{prefix}{topic}".replace("-", "_").replace(".", "_")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_small_homologation_run_matches_clickhouse_and_kafka(
    platform: Settings, unique_name: str, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    octet = random.randrange(100, 250)  # NAS addresses of their own: runs never collide
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "filas.cli.main",
            "homologation",
            "run",
            "--use-running-platform",
            "--exit",
            "--customers",
            "300",
            "--devices",
            "60",
            "--nas",
            "4",
            "--loopback-octet",
            str(octet),
            "--login-rate",
            "300",
            "--summary-json",
            str(summary_path),
        ],
        env=run_env(platform, unique_name, tmp_path / "home"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "homologation summary" in out
    if os.geteuid() != 0:
        assert "SKIPPED (left out: needs root" in out  # a skipped step says why
    document: dict[str, Any] = json.loads(summary_path.read_text())
    facts, summary = document["facts"], document["summary"]

    # Every process the run started is gone.
    assert document["running_after_stop"] == []
    for name, pid in document["pids"].items():
        assert not _alive(pid), f"{name} (pid {pid}) still runs"
    died = dict(facts["exited_early"])
    assert died == {}

    # Logins: the summary's figures are ClickHouse's, and equal what the NAS fleet saw.
    ch = ClickHouse(platform.clickhouse)
    table = f"{unique_name}radius.auth-decisions".replace("-", "_").replace(".", "_")
    try:
        [(accepts, rejects)] = ch.query(
            f"SELECT countIf(decision = 'accept'), countIf(decision = 'reject') "  # noqa: S608
            f"FROM `{table}` FINAL"
        )
        coa_table = f"{unique_name}radius.coa-results".replace("-", "_").replace(".", "_")
        payment_acks = dict(
            ch.query(
                f"SELECT contract_id, count() FROM `{coa_table}` FINAL "  # noqa: S608
                "WHERE outcome = 'ACK' AND reason = 'PAYMENT_CONFIRMED' GROUP BY contract_id"
            )
        )
        requests_rows = ch.query(
            f"SELECT request_id, groupUniqArray(state), any(error_code) "  # noqa: S608
            f"FROM `{table_of(unique_name, 'requests.status')}` GROUP BY request_id"
        )
        paid_ids = [
            str(rid)
            for (rid,) in ch.query(
                f"SELECT DISTINCT request_id "  # noqa: S608
                f"FROM `{table_of(unique_name, 'requests.status')}` "
                "WHERE request_type = 'PAYMENT_CONFIRMATION' AND state = 'DONE'"
            )
        ]
        [(notices_sent,)] = ch.query(
            f"SELECT count() FROM `{table_of(unique_name, 'campaign.delivery-results')}` "  # noqa: S608
            "WHERE campaign_id IN %(ids)s AND status = 'sent'",
            {"ids": tuple(payment_campaign_id(r) for r in paid_ids) or ("none",)},
        )
        status_rows = ch.query(
            f"SELECT contract_id, reason, new_status "  # noqa: S608
            f"FROM `{table_of(unique_name, 'ixc.contract-status')}` FINAL "
            "WHERE reason IN ('PAYMENT_CONFIRMED', 'TRUST_UNBLOCK')"
        )
    finally:
        ch.close()
    assert summary["accepts"] > 250
    assert summary["accepts"] == accepts == facts["accepts"]
    assert summary["rejects"] == rejects == facts["rejects"] > 0  # wrong passwords, blocked
    assert summary["auth_decisions"] <= topic_records(
        platform, f"{unique_name}radius.auth-decisions"
    )

    # Payments: one CoA ACK per unblocked contract that had a live session, none for the others.
    with_session = facts["unblocked_with_session"]
    assert len(with_session) >= 5
    assert len(facts["unblocked_contracts"]) > len(with_session)
    unblock_acks = sum(payment_acks.get(c, 0) for c in with_session)
    assert summary["coa_unblock_acks"] == unblock_acks == len(with_session)
    assert facts["coa_requests_at_nas"] == 2 * len(with_session)  # block, then unblock

    # Service requests: what requests.status landed in ClickHouse, not the run's own counters.
    states = {str(rid): set(found) for rid, found, _ in requests_rows}
    error_of = {str(rid): code for rid, _, code in requests_rows}
    ids = set(facts["request_ids"])
    assert len(facts["requests_paid_contracts"]) >= 5
    assert len(facts["requests_trust_contracts"]) == 5
    assert facts["requests_tickets"] == 5
    assert facts["requests_replayed_same_id"] is True  # a gateway retry is the same request
    assert len(ids) == facts["requests_accepted"] == facts["requests_sent"]
    assert ids <= set(states)  # every accepted request has its status rows
    [refused] = facts["requests_expected_failed"]
    done = {rid for rid in ids if "DONE" in states[rid]}
    assert done == ids - {refused}  # the payments, trust unblocks and tickets reached IXC
    assert "FAILED" in states[refused]
    assert error_of[refused] == "CONTRATO_NAO_BLOQUEADO"
    assert all("QUEUED" in states[rid] for rid in ids)  # queued by the ingress first
    assert summary["requests_accepted"] == len(ids)
    assert summary["requests_done"] == len(done)
    assert summary["requests_failed"] == 1
    assert summary["requests_accept_to_done_p99_ms"] > 0
    # One record per accepted request on the lane (the replayed webhook enqueued nothing).
    assert topic_records(platform, f"{unique_name}requests.high") == len(ids)
    # IXC's effect, read back by the next poll: each unblock is a contract-status event.
    reasons = {(str(c), str(r)) for c, r, new in status_rows if new == "ACTIVE"}
    for contract in facts["requests_paid_contracts"]:
        assert (contract, "PAYMENT_CONFIRMED") in reasons
    for contract in facts["requests_trust_contracts"]:
        assert (contract, "TRUST_UNBLOCK") in reasons
    # ... and a paying contract with a live session got its rate back at the NAS (CoA ACK).
    paid_online = facts["requests_paid_with_session"]
    assert paid_online
    assert summary["requests_coa_acks"] == len(paid_online)
    assert all(payment_acks.get(c, 0) >= 1 for c in paid_online)

    # Each payment that reached IXC was confirmed to its subscriber: the confirmations the
    # sinks got before the outage (the campaign's excluded) were sent for those payments.
    assert len(paid_ids) == len(facts["requests_paid_contracts"])
    assert 0 < facts["other_messages_at_sinks"] <= notices_sent

    # Campaign: what the sinks received is what the delivery results say was sent.
    messages = summary["messages"]
    assert facts["sms_at_sink"] > 0
    assert messages.get("sms:sent", 0) == facts["sms_at_sink"]
    assert messages.get("email:sent", 0) == facts["emails_at_sink"]
    assert summary["lag_total"] is not None

    # Outage: the POP's devices went dark in a namespace; an alert landed and notices went out.
    if os.geteuid() == 0:
        assert facts["outage_devices"] > 0
        assert facts["outage_alerts"] >= 1
        assert summary["alerts"] >= 1
        assert facts["notices_at_sinks"] > 0
        [namespace] = re.findall(r"\(namespace (flns\w+)\)", out)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
        assert namespace not in listed.stdout  # deleted when the run stopped
