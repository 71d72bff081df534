"""KafkaDeadLetters: an unmappable IXC record becomes a valid ixc.filas.dlq.DeadLetter on the
source topic's .dlq, without the clear password; the CLI exposes the ixc commands."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from click.testing import CliRunner

from filas.catalog import Catalog, TopicSpec, ixc_state
from filas.cli.main import cli
from producers.ixc.dead_letters import KafkaDeadLetters
from producers.ixc.ports import DeadLetter
from schemas.catalog import SchemaCatalog

SCHEMAS = SchemaCatalog.load()


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[TopicSpec, Mapping[str, Any]]] = []

    async def emit(self, topic: TopicSpec, record: Mapping[str, Any]) -> None:
        SCHEMAS.validate(topic.value_schema, record)
        self.sent.append((topic, record))


async def test_dead_letter_goes_to_the_dlq_topic_redacted() -> None:
    sink = Sink()
    raw = {"id": "7", "login": "x@sim", "senha": "clear-password", "autenticacao": "??"}
    letter = DeadLetter(
        form="radusuarios",
        topic=ixc_state.SUBSCRIBERS,
        record_id="7",
        field="autenticacao",
        code="ixc_mapping",
        message="radusuarios id=7: field 'autenticacao': unknown authentication code '??'",
        record=DeadLetter.redacted(raw),
    )
    await KafkaDeadLetters(sink, Catalog.build("hml.")).dead_letter(letter)
    ((topic, record),) = sink.sent
    assert topic.name == "ixc.subscribers.dlq"  # the sink applies its own prefix
    assert record["source_topic"] == "hml.ixc.subscribers"
    assert record["raw_key"] == b"7"
    assert json.loads(record["raw_value"])["senha"] == "***"
    assert b"clear-password" not in record["raw_value"]
    assert record["processor"] == "ixc-adapter/radusuarios"


def test_cli_exposes_ixc_poll_and_simulate() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["ixc", "--help"])
    assert result.exit_code == 0, result.output
    assert "poll" in result.output
    assert "simulate" in result.output
    sim_help = runner.invoke(cli, ["ixc", "simulate", "--help"]).output
    assert "SIMULATOR" in sim_help
    assert "--customers" in sim_help
    assert "--once" in runner.invoke(cli, ["ixc", "poll", "--help"]).output
