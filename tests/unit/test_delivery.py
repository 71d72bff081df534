"""Delivery without a network: rate/concurrency arithmetic, backoff, HTTP request rendering and
answer classification, SMTP classification, the commit tracker and the ledger."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from consumers.delivery.channels import Outcome, OutgoingMessage, SendResult
from consumers.delivery.http_gateway import HttpChannel, json_path, parse_retry_after
from consumers.delivery.ledger import DONE, SENDING, Ledger, LedgerEntry
from consumers.delivery.limits import ConcurrencyLimit, RateLimiter, backoff_delay, share
from consumers.delivery.load import balanced_recipients, murmur2_partition
from consumers.delivery.smtp import build_email, classify_code, header_safe
from consumers.delivery.worker import PartitionOffsets
from filas.settings import HttpChannelSettings, SmtpChannelSettings

MESSAGE = OutgoingMessage(
    message_id="0b6c5a34-1111-4aaa-8bbb-123456789abc",
    campaign_id="c1",
    recipient_id="42",
    address="+5567999990000",
    subject="Fatura",
    body='Olá "Ana", sua fatura vence amanhã.',
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_shares_of_all_instances_add_up_to_the_limit() -> None:
    assert share(500, 4, 12) + share(500, 4, 12) + share(500, 4, 12) == pytest.approx(500)
    assert share(500, 5, 12) + share(500, 7, 12) == pytest.approx(500)
    assert share(500, 0, 12) == 0
    assert share(500, 3, 0) == 0


def test_rate_limiter_spaces_sends_on_a_virtual_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock)
    waits = [limiter.reserve() for _ in range(5)]
    # 10/s: slots 0.1 s apart, whatever the callers' timing.
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    clock.now += 10  # idle: no credit beyond the burst (1)
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(0.1)


def test_rate_limiter_burst_and_rate_changes() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, burst=3.0, clock=clock)
    clock.now += 5
    assert [limiter.reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])
    limiter.set_rate(0.0)
    assert limiter.reserve() is None  # no partitions: no sends
    assert limiter.tokens() == 0
    limiter.set_rate(None)
    assert limiter.reserve() == 0.0  # unlimited


def test_rate_limiter_acquire_holds_the_rate_in_real_time() -> None:
    async def run() -> float:
        limiter = RateLimiter(200.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(41):
            await limiter.acquire()
        return loop.time() - start

    elapsed = asyncio.run(run())
    assert elapsed >= 0.2 - 0.005  # 40 intervals of 5 ms


def test_concurrency_limit_resizes_while_held() -> None:
    async def run() -> list[int]:
        limit = ConcurrencyLimit(2)
        peaks: list[int] = []

        async def job() -> None:
            async with limit:
                peaks.append(limit.held)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(job() for _ in range(6)))
        limit.resize(1)
        await asyncio.gather(*(job() for _ in range(3)))
        return peaks

    peaks = asyncio.run(run())
    assert max(peaks[:6]) == 2
    assert max(peaks[6:]) == 1


def test_backoff_is_exponential_with_jitter_capped_and_honours_retry_after() -> None:
    low = [backoff_delay(a, 1.0, 30.0, lambda: 0.0) for a in range(1, 8)]
    high = [backoff_delay(a, 1.0, 30.0, lambda: 1.0) for a in range(1, 8)]
    assert low == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert high == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_delay(1, 1.0, 30.0, lambda: 0.5, retry_after_s=7) == 7


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    later = (now + timedelta(seconds=20)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(later, now) == pytest.approx(20)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_http_channel_renders_a_whatsapp_style_request_from_configuration() -> None:
    settings = HttpChannelSettings(
        provider="whatsapp-business",
        url="https://graph.example/v19.0/123/messages",
        headers={"Authorization": "Bearer {{ token }}", "Content-Type": "application/json"},
        body_template=(
            '{"messaging_product": "whatsapp", "to": {{ to|tojson }}, '
            '"type": "text", "text": {"body": {{ body|tojson }}}, "biz_opaque_callback_data": '
            "{{ message_id|tojson }}}"
        ),
        token=SecretStr("tok-123"),
        provider_id_path="messages.0.id",
    )
    channel = HttpChannel(settings, dependency="whatsapp")
    url, headers, body = channel.render(MESSAGE)
    assert url == "https://graph.example/v19.0/123/messages"
    assert headers["Authorization"] == "Bearer tok-123"
    doc = json.loads(body)
    assert doc["text"]["body"] == MESSAGE.body  # quotes escaped by tojson
    assert doc["biz_opaque_callback_data"] == MESSAGE.message_id
    assert json_path({"messages": [{"id": "wamid.1"}]}, "messages.0.id") == "wamid.1"
    assert json_path({"messages": []}, "messages.0.id") is None


def test_http_answers_are_classified_by_status_and_body() -> None:
    channel = HttpChannel(
        HttpChannelSettings(permanent_body_pattern=r'"status":\s*"INVALID_NUMBER"')
    )
    assert channel.classify(201, "{}") is Outcome.SENT
    assert channel.classify(429, "") is Outcome.TEMPORARY
    assert channel.classify(503, "") is Outcome.TEMPORARY
    assert channel.classify(400, "") is Outcome.PERMANENT
    assert channel.classify(401, "") is Outcome.PERMANENT
    assert channel.classify(200, '{"status": "INVALID_NUMBER"}') is Outcome.PERMANENT


def test_a_broken_template_fails_the_message_not_the_worker() -> None:
    channel = HttpChannel(HttpChannelSettings(body_template="{{ nope }}"))
    result = asyncio.run(channel.send(MESSAGE))
    assert result.outcome is Outcome.PERMANENT
    assert "template" in (result.text or "")


def test_smtp_codes_and_deterministic_message_id() -> None:
    assert classify_code(421) is Outcome.TEMPORARY
    assert classify_code(451) is Outcome.TEMPORARY
    assert classify_code(550) is Outcome.PERMANENT
    settings = SmtpChannelSettings(message_id_domain="isp.example")
    mail = email.message_from_bytes(build_email(MESSAGE, settings), policy=email.policy.default)
    assert mail["Message-ID"] == f"<{MESSAGE.message_id}@isp.example>"
    assert mail["To"] == MESSAGE.address
    assert mail.get_content().strip() == MESSAGE.body  # UTF-8 round trip
    accented = replace(MESSAGE, subject="Aviso de manutenção")
    parsed = email.message_from_bytes(build_email(accented, settings), policy=email.policy.default)
    assert parsed["Subject"] == "Aviso de manutenção"
    assert not header_safe(replace(MESSAGE, subject="x\r\nBcc: all@isp.example"))
    assert SendResult(Outcome.SENT, text="x" * 5000).text == "x" * 1024


def test_commits_advance_over_the_contiguous_finished_prefix_only() -> None:
    offsets = PartitionOffsets()
    key = (1, 3)
    for o in (10, 11, 12):
        offsets.add(key, o)
    offsets.done(key, 11)
    assert offsets.ready() == {}  # 10 still in flight holds 11 back
    offsets.done(key, 10)
    assert offsets.ready() == {key: 12}
    offsets.done(key, 12)
    assert offsets.ready() == {key: 13}
    assert len(offsets) == 0


def test_ledger_outcome_is_final() -> None:
    ledger = Ledger()
    ledger.record(3, "m1", LedgerEntry(SENDING, None, 1))
    ledger.record(3, "m1", LedgerEntry(DONE, "sent", 1))
    ledger.record(3, "m1", LedgerEntry(SENDING, None, 1))
    entry = ledger.get(3, "m1")
    assert entry is not None
    assert entry.state == DONE
    ledger.drop([3])
    assert ledger.get(3, "m1") is None


def test_balanced_recipients_fill_every_partition_equally() -> None:
    numbers = balanced_recipients(5, 12)
    counts = [0] * 12
    for n in numbers:
        counts[murmur2_partition(str(100_000 + n), 12)] += 1
    assert counts == [5] * 12


def test_rate_limiter_catches_up_a_late_loop_within_its_burst_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100.0, burst_s=0.05, clock=clock)  # 5 tokens
    assert limiter.reserve() == 0.0
    clock.now += 0.03  # the loop came back 30 ms late: 3 slots were due
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.0])
    assert limiter.reserve() == pytest.approx(0.01)  # then back on the 10 ms schedule


def test_rate_limiter_wakes_paced_sends_on_tick_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends due within one tick share a wake-up; none wakes before its slot or a tick late."""
    clock = FakeClock()
    limiter = RateLimiter(100.0, tick_s=0.025, clock=clock)
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def run() -> None:
        for _ in range(10):
            await limiter.acquire()

    asyncio.run(run())
    slots = [0.01 * i for i in range(1, 10)]  # the first send needs no sleep
    assert len(slept) == len(slots)
    for slot, delay in zip(slots, slept, strict=True):
        wake = clock.now + delay
        assert slot - 1e-9 <= delay < slot + 0.025
        assert round(wake / 0.025, 6) == round(wake / 0.025)
    # Ten sends 10 ms apart wake at four tick boundaries, not nine times.
    assert len({round(clock.now + d, 6) for d in slept}) == 4
