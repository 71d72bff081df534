"""A local ClickHouse server run in the foreground with a project-local config.

Debian 12 packages ClickHouse 18.16, whose post-install starts a system-wide service on the
default ports; we do not use that service. Instead ``clickhouse-server --config-file=...`` runs
under filas's own pid file with ports, data and logs taken from settings, so two checkouts (or a
test session next to ``filas up``) can each run their own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from xml.sax.saxutils import escape

from filas.errors import PlatformError
from filas.local_platform.processes import ServiceProcess, port_open, wait_until
from filas.settings import ClickHouseSettings, LocalPlatformSettings

HOST = "127.0.0.1"
SERVER_BINARY = "clickhouse-server"


def ensure_installed() -> str:
    """Path of ``clickhouse-server``, installing Debian's package with apt-get when missing."""
    found = shutil.which(SERVER_BINARY) or _sbin(SERVER_BINARY)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise PlatformError("clickhouse-server is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        [apt, "update"],
        [apt, "install", "-y", "--no-install-recommends", "clickhouse-server", "clickhouse-client"],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise PlatformError(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{tail}")
    found = shutil.which(SERVER_BINARY) or _sbin(SERVER_BINARY)
    if not found:
        raise PlatformError("apt-get installed clickhouse-server but the binary is not found")
    return found


def _sha256(password: str) -> str:
    """users.xml's ``password_sha256_hex``: the file never holds a password in clear."""
    return hashlib.sha256(password.encode()).hexdigest()


def _sbin(name: str) -> str | None:
    # root's PATH has /usr/sbin, a normal user's often does not; the package installs there.
    candidate = Path("/usr/sbin") / name
    return str(candidate) if candidate.exists() else None


@dataclass(frozen=True)
class LocalClickHouse:
    home: Path
    tcp_port: int
    http_port: int
    database: str
    user: str = "default"
    password: str = ""
    start_timeout_s: float = 60.0
    # The sink's and the analysts' users (docs/clickhouse.md#access), written into users.xml.
    sink_user: str = "filas_sink"
    sink_password: str = "filas-sink-local"  # noqa: S105 - loopback-only local default
    analyst_user: str = "filas_analyst"
    analyst_password: str = "filas-analyst-local"  # noqa: S105 - loopback-only local default

    @classmethod
    def from_settings(
        cls, local: LocalPlatformSettings, clickhouse: ClickHouseSettings
    ) -> LocalClickHouse:
        return cls(
            home=local.home,
            tcp_port=local.clickhouse_tcp_port,
            http_port=local.clickhouse_http_port,
            database=clickhouse.database,
            user=clickhouse.user,
            password=clickhouse.password.get_secret_value(),
            start_timeout_s=local.start_timeout_s,
            sink_user=clickhouse.sink_user or cls.sink_user,
            sink_password=clickhouse.sink_password.get_secret_value(),
            analyst_user=clickhouse.analyst_user,
            analyst_password=clickhouse.analyst_password.get_secret_value(),
        )

    @property
    def directory(self) -> Path:
        return self.home / "clickhouse"

    @property
    def config_path(self) -> Path:
        return self.directory / "config.xml"

    @property
    def url(self) -> str:
        return f"clickhouse://{HOST}:{self.tcp_port}/{self.database}"

    def write_config(self) -> None:
        data_dir = (self.directory / "data").resolve()
        log_dir = (self.home / "logs").resolve()
        for d in (data_dir / "tmp", data_dir / "user_files", data_dir / "format_schemas", log_dir):
            d.mkdir(parents=True, exist_ok=True)
        users_path = (self.directory / "users.xml").resolve()
        templates = resources.files("filas.local_platform") / "templates"
        config = Template((templates / "clickhouse-config.xml").read_text()).substitute(
            log_dir=escape(str(log_dir)),
            data_dir=escape(str(data_dir)),
            tcp_port=self.tcp_port,
            http_port=self.http_port,
            users_config=escape(str(users_path)),
        )
        users = Template((templates / "clickhouse-users.xml").read_text()).substitute(
            user=escape(self.user),
            password_sha256=_sha256(self.password),
            sink_user=escape(self.sink_user),
            sink_password_sha256=_sha256(self.sink_password),
            analyst_user=escape(self.analyst_user),
            analyst_password_sha256=_sha256(self.analyst_password),
            database=escape(self.database),
        )
        self.config_path.write_text(config)
        users_path.write_text(users)
        users_path.chmod(0o600)

    def process(self, binary: str = SERVER_BINARY) -> ServiceProcess:
        config = self.config_path.resolve()
        return ServiceProcess(
            name="clickhouse",
            argv=[binary, f"--config-file={config}"],
            run_dir=self.home / "run",
            log_path=self.home / "logs" / "clickhouse-stdout.log",
            token=str(config),
            cwd=self.directory.resolve(),
        )

    def running(self) -> bool:
        return self.process().running()

    def start(self) -> float:
        """Start (or find running), wait for ``SELECT 1``, create the database; return seconds."""
        binary = ensure_installed()
        self.write_config()
        proc = self.process(binary)
        if not proc.running():
            for port in (self.tcp_port, self.http_port):
                if port_open(HOST, port):
                    raise PlatformError(
                        f"port {port} for ClickHouse is already in use by another process; set "
                        "FILAS_LOCAL__CLICKHOUSE_TCP_PORT / FILAS_LOCAL__CLICKHOUSE_HTTP_PORT"
                    )
            proc.start()
        elapsed = wait_until(
            f"ClickHouse at {HOST}:{self.tcp_port}", self._answers, self.start_timeout_s, [proc]
        )
        self.query(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        return elapsed

    def stop(self, grace_s: float = 30.0) -> None:
        self.process().stop(grace_s)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        from clickhouse_driver import Client
        from clickhouse_driver.errors import Error as ClickHouseDriverError

        client = Client(
            host=HOST,
            port=self.tcp_port,
            user=self.user,
            password=self.password,
            connect_timeout=2,
            send_receive_timeout=10,
        )
        try:
            rows: list[tuple[object, ...]] = client.execute(sql)
        except (ClickHouseDriverError, OSError, EOFError) as exc:
            raise PlatformError(f"ClickHouse query failed: {exc}", retriable=True) from exc
        finally:
            client.disconnect()
        return rows

    def _answers(self) -> bool:
        if not port_open(HOST, self.tcp_port):
            return False
        try:
            return self.query("SELECT 1") == [(1,)]
        except PlatformError:
            return False
