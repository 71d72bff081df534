"""Frequency caps at send (decision 0074): the ledger's per-partition send history."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.delivery.ledger import DAY_MS, DONE, SENDING, Ledger, LedgerEntry, entry_of

KEY = ("100001", "email", "bulk")


def done(
    status: str, campaign: str | None = "A", at_ms: int = 1_000, lane: str = "bulk"
) -> LedgerEntry:
    return LedgerEntry(
        DONE, status, 1, campaign_id=campaign, recipient_id="100001", channel="email",
        lane=lane, at_ms=at_ms,
    )  # fmt: skip


def test_done_sends_count_for_other_campaigns_within_a_day() -> None:
    ledger = Ledger()
    ledger.record(3, "m1", done("sent", "A", at_ms=10 * DAY_MS))
    ledger.record(3, "m2", done("delivered", "B", at_ms=10 * DAY_MS + 5))
    ledger.record(3, "m3", done("permanent_failure", "C", at_ms=10 * DAY_MS))  # not a send
    ledger.record(3, "m4", done("sent", "D", at_ms=10 * DAY_MS, lane="transactional"))
    now = 10 * DAY_MS + 60_000
    assert ledger.sends.count(3, KEY, now, exclude_campaign="X") == 2
    assert ledger.sends.count(3, KEY, now, exclude_campaign="A") == 1  # its own do not count
    assert ledger.sends.count(4, KEY, now, exclude_campaign="X") == 0  # another partition
    # A day later they are forgotten.
    assert ledger.sends.count(3, KEY, 11 * DAY_MS + 1, exclude_campaign="X") == 1  # m2
    assert ledger.sends.count(3, KEY, 11 * DAY_MS + 5, exclude_campaign="X") == 0


def test_a_reservation_is_withdrawn_when_the_message_was_not_sent() -> None:
    ledger = Ledger()
    ledger.sends.add(0, KEY, "m1", "A", 5_000)  # the worker counts a send as it starts
    assert ledger.sends.count(0, KEY, 6_000, exclude_campaign="B") == 1
    ledger.record(0, "m1", LedgerEntry(SENDING, None, 1))  # markers change nothing
    assert ledger.sends.count(0, KEY, 6_000, exclude_campaign="B") == 1
    ledger.record(0, "m1", done("temporary_failure", "A", at_ms=7_000))
    assert ledger.sends.count(0, KEY, 8_000, exclude_campaign="B") == 0


def test_entries_written_before_the_fields_existed_do_not_count() -> None:
    ledger = Ledger()
    ledger.record(0, "m1", done("sent", campaign=None))
    assert ledger.sends.count(0, KEY, 2_000, exclude_campaign="B") == 0
    assert ledger.get(0, "m1") is not None  # still known as done (never resent)


def test_revoked_partitions_forget_their_history() -> None:
    ledger = Ledger()
    ledger.record(1, "m1", done("sent"))
    ledger.record(2, "m2", done("sent"))
    ledger.drop([1])
    assert ledger.sends.count(1, KEY, 2_000, exclude_campaign="X") == 0
    assert ledger.sends.count(2, KEY, 2_000, exclude_campaign="X") == 1


def test_entry_of_a_decoded_record() -> None:
    record = {
        "message_id": "m", "recipient_id": "100001", "channel": "email", "state": "done",
        "status": "sent", "attempt": 2, "worker": "h:1",
        "written_at": datetime.fromtimestamp(1.5, UTC), "campaign_id": "A", "lane": "bulk",
    }  # fmt: skip
    entry = entry_of(record)
    assert (entry.at_ms, entry.campaign_id, entry.lane, entry.attempt) == (1_500, "A", "bulk", 2)
    old = entry_of(record | {"campaign_id": None, "lane": None})
    assert old.campaign_id is None
