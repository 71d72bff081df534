"""Secrets are SecretStr: revealed only in client configs, never in reprs, logs or config."""

import logging

import pytest
from click.testing import CliRunner

from filas.cli.main import cli
from filas.settings import KafkaSettings, SecurityProtocol, Settings

SECRETS = ("kafka-pass-123", "registry-pass-456", "clickhouse-pass-789", "ixc-token-abc")


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILAS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FILAS_KAFKA__SASL_USERNAME", "filas")
    monkeypatch.setenv("FILAS_KAFKA__SASL_PASSWORD", SECRETS[0])
    monkeypatch.setenv("FILAS_REGISTRY__USERNAME", "reg")
    monkeypatch.setenv("FILAS_REGISTRY__PASSWORD", SECRETS[1])
    monkeypatch.setenv("FILAS_CLICKHOUSE__PASSWORD", SECRETS[2])
    monkeypatch.setenv("FILAS_IXC__TOKEN", SECRETS[3])


@pytest.mark.usefixtures("secret_env")
def test_secrets_never_appear_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("filas.test").info("settings: %s %r", settings, settings.model_dump())
    text = repr(settings) + str(settings) + caplog.text
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.usefixtures("secret_env")
def test_filas_config_masks_secrets() -> None:
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 0, result.output
    assert "FILAS_KAFKA__SASL_PASSWORD=(secret, set)" in result.output
    for secret in SECRETS:
        assert secret not in result.output


def test_sasl_password_is_revealed_only_in_the_client_config() -> None:
    kafka = KafkaSettings(
        security_protocol=SecurityProtocol.SASL_SSL,
        sasl_username="filas",
        sasl_password="s3cret",  # type: ignore[arg-type]
        sasl_mechanism="SCRAM-SHA-512",
    )
    conf = kafka.client_config()
    assert conf["sasl.password"] == "s3cret"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert "s3cret" not in repr(kafka)
