"""NOC webhook delivery rules (no network): retries on outages and 5xx/429, refusal on 4xx."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from streams.network.noc_webhook import WebhookError, deliver, payload


class FakeEndpoint:
    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[bytes, str]] = []

    def __call__(self, body: bytes, key: str) -> int:
        self.calls.append((body, key))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_retries_outages_and_server_errors_then_succeeds() -> None:
    down = WebhookError("refused", retriable=True)
    hook = FakeEndpoint(down, 503, 429, 204)
    deliver(hook, b"{}", "r-1", retries=3, backoff_s=0)
    assert [key for _, key in hook.calls] == ["r-1"] * 4


def test_gives_up_after_the_retries_retriable() -> None:
    hook = FakeEndpoint(500, 500, 500)
    with pytest.raises(WebhookError) as failed:
        deliver(hook, b"{}", "r-1", retries=2, backoff_s=0)
    assert failed.value.retriable
    assert len(hook.calls) == 3


def test_a_refusal_is_not_retried() -> None:
    hook = FakeEndpoint(400)
    with pytest.raises(WebhookError) as refused:
        deliver(hook, b"{}", "r-1", retries=5, backoff_s=0)
    assert not refused.value.retriable
    assert len(hook.calls) == 1


def test_payload_is_json_with_times_as_iso() -> None:
    body = json.loads(
        payload(
            {
                "response_id": "r",
                "alert_id": "a",
                "root_device_id": "olt-1",
                "affected_subscriber_count": 812,
                "outage_started_at": datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
                "outage_ended_at": None,
                "summary": "OLT-1 down",
            }
        )
    )
    assert body["outage_started_at"] == "2026-03-01T10:00:00+00:00"
    assert body["resolved"] is False
    assert body["affected_subscriber_count"] == 812
    assert body["root_device_name"] is None
