"""``filas schemas list|register`` with the in-process mock registry."""

from __future__ import annotations

import uuid

from click.testing import CliRunner

from filas.cli.schema_cmds import schemas
from filas.settings import RegistrySettings, Settings, TopicsSettings


def test_list_shows_every_schema_with_fingerprint() -> None:
    result = CliRunner().invoke(schemas, ["list"], obj=Settings())
    assert result.exit_code == 0, result.output
    assert "ixc.filas.dlq.DeadLetter" in result.output
    assert "ixc.filas.radius.AuthRequest" in result.output


def test_register_prints_subject_and_id() -> None:
    settings = Settings(
        registry=RegistrySettings(url=f"mock://{uuid.uuid4()}"),
        topics=TopicsSettings(prefix="cli."),
    )
    result = CliRunner().invoke(schemas, ["register"], obj=settings)
    assert result.exit_code == 0, result.output
    assert "cli.radius.auth-requests-value -> " in result.output
    assert "cli.net.alerts.dlq-value -> " in result.output
