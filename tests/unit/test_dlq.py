"""DLQ views and the CLI wiring, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

from click.testing import CliRunner

from filas.catalog import Catalog
from filas.catalog.radius import ACCOUNTING
from filas.cli.main import cli
from filas.dlq import DeadLetterView, replay_group
from filas.errors import DecodeError
from schemas.dead_letter import SourceRecord, dead_letter


def test_view_of_a_dead_letter_shows_source_error_time_and_size() -> None:
    letter = dead_letter(
        SourceRecord("radius.accounting", 3, 99, None, b"ana", b"\x00bad"),
        DecodeError("cannot decode"),
        "sink",
        failed_at_ms=1_700_000_000_123,
    )
    view = DeadLetterView.of(0, 7, letter)
    assert (view.dlq_partition, view.dlq_offset) == (0, 7)
    assert (view.source_topic, view.source_partition, view.source_offset) == (
        "radius.accounting",
        3,
        99,
    )
    assert (view.error_code, view.error_type, view.retriable) == ("decode", "DecodeError", False)
    assert view.failed_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert view.size == 3 + 4


def test_replay_group_is_stable_and_carries_the_prefix() -> None:
    spec = Catalog.build("t1-").resolve(ACCOUNTING)
    assert replay_group(spec) == "filas-dlq-replay.t1-radius.accounting"


def test_dlq_commands_are_registered() -> None:
    result = CliRunner().invoke(cli, ["dlq", "--help"])
    assert result.exit_code == 0
    assert "list" in result.output
    assert "replay" in result.output


def test_a_topic_without_dlq_is_refused() -> None:
    result = CliRunner().invoke(cli, ["dlq", "list", "filas.logs"])
    assert result.exit_code != 0
    assert "no dead-letter queue" in result.output
