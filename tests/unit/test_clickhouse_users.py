"""ClickHouse users: the settings and the local platform's env agree on who the sink is."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from filas.local_platform.clickhouse import LocalClickHouse
from filas.local_platform.local import Layout, RunningPlatform
from filas.settings import ClickHouseSettings


def test_local_platform_env_runs_the_sink_as_its_user(tmp_path: Path) -> None:
    running = RunningPlatform(
        layout=Layout(),
        bootstrap_servers="127.0.0.1:1",
        registry_url=None,
        clickhouse_port=1,
        clickhouse_http_port=2,
        scram=None,
        env_file=tmp_path / "platform.env",
    )
    env = running.env(ClickHouseSettings(), tmp_path)
    assert env["FILAS_CLICKHOUSE__SINK_USER"] == LocalClickHouse.sink_user
    assert not any("PASSWORD" in k for k in env if k.startswith("FILAS_CLICKHOUSE"))


def test_sink_and_analyst_credentials() -> None:
    base = ClickHouseSettings(user="admin", password=SecretStr("a"))
    assert base.as_sink() == base  # no sink user: the sink runs as the administrator
    sink = base.model_copy(update={"sink_user": "s", "sink_password": SecretStr("p")}).as_sink()
    assert (sink.user, sink.password.get_secret_value()) == ("s", "p")
    analyst = base.as_analyst()
    assert (analyst.user, analyst.password.get_secret_value()) == (
        "filas_analyst",
        "filas-analyst-local",
    )
    assert "filas-analyst-local" not in repr(base)


def test_users_xml_has_three_users_and_hashed_passwords(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    ch = LocalClickHouse(home=tmp_path, tcp_port=1, http_port=2, database="db")
    ch.write_config()
    text = (ch.directory / "users.xml").read_text()
    assert ch.sink_password not in text
    assert ch.analyst_password not in text
    root = ET.fromstring(text)  # noqa: S314 - our own file
    assert root.findtext("profiles/readonly/readonly") == "1"
    assert root.findtext(f"users/{ch.analyst_user}/profile") == "readonly"
    assert root.findtext(f"users/{ch.sink_user}/allow_databases/database") == "db"
    assert root.find("users/default/password_sha256_hex") is not None
