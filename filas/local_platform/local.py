"""``filas up`` / ``filas down``: the facade over the local Kafka, registry and ClickHouse.

Everything lives under ``settings.local.home`` (default ``.filas`` in the working directory):
configs, data, logs, pid files, and ``platform.env``, which scripts source to reach what runs:
``set -a; . .filas/platform.env; set +a``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filas.errors import PlatformError
from filas.local_platform import maven
from filas.local_platform.clickhouse import LocalClickHouse
from filas.local_platform.java import find_java
from filas.local_platform.kafka import SCRAM_MECHANISM, KafkaCluster, ScramUser
from filas.local_platform.processes import ServiceProcess
from filas.local_platform.registry import LocalRegistry
from filas.settings import (
    ClickHouseSettings,
    KafkaSettings,
    LocalPlatformSettings,
    SecurityProtocol,
)

Echo = Callable[[str], None]
# The newest Apicurio Registry built for Java 17 (3.1+ need Java 21); same ccompat API and
# kafkasql storage, checked with a schema surviving a restart.
JAVA17_APICURIO_VERSION = "3.0.9"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Layout:
    """What ``up`` was asked to run; kept in ``run/platform.json`` so ``down`` stops the same."""

    brokers: int = 1
    secure: bool = False
    registry: bool = True
    clickhouse: bool = True
    external_bootstrap: str | None = None


@dataclass(frozen=True)
class RunningPlatform:
    layout: Layout
    bootstrap_servers: str
    registry_url: str | None
    clickhouse_port: int | None
    clickhouse_http_port: int | None
    scram: ScramUser | None
    env_file: Path
    already_running: bool = False
    start_seconds: dict[str, float] = field(default_factory=dict)

    def kafka_settings(self, base: KafkaSettings | None = None) -> KafkaSettings:
        base = base or KafkaSettings()
        update: dict[str, object] = {"bootstrap_servers": self.bootstrap_servers}
        if self.scram is not None:
            update |= {
                "security_protocol": SecurityProtocol.SASL_PLAINTEXT,
                "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_username": self.scram.name,
                "sasl_password": self.scram.password,
            }
        return KafkaSettings.model_validate({**base.model_dump(), **update})

    def env(self, clickhouse: ClickHouseSettings, home: Path) -> dict[str, str]:
        """FILAS_* variables that make ``Settings()`` point at this platform."""
        env = {
            "FILAS_LOCAL__HOME": str(home.resolve()),
            "FILAS_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap_servers,
        }
        if self.scram is not None:
            env |= {
                "FILAS_KAFKA__SECURITY_PROTOCOL": SecurityProtocol.SASL_PLAINTEXT.value,
                "FILAS_KAFKA__SASL_MECHANISM": SCRAM_MECHANISM,
                "FILAS_KAFKA__SASL_USERNAME": self.scram.name,
                "FILAS_KAFKA__SASL_PASSWORD": self.scram.password,
            }
        if self.registry_url is not None:
            env["FILAS_REGISTRY__URL"] = self.registry_url
        if self.clickhouse_port is not None and self.clickhouse_http_port is not None:
            env |= {
                "FILAS_CLICKHOUSE__HOST": "127.0.0.1",
                "FILAS_CLICKHOUSE__PORT": str(self.clickhouse_port),
                "FILAS_CLICKHOUSE__HTTP_PORT": str(self.clickhouse_http_port),
                "FILAS_CLICKHOUSE__DATABASE": clickhouse.database,
                # users.xml has this user (filas/local_platform/clickhouse.py): the sink runs as it.
                "FILAS_CLICKHOUSE__SINK_USER": clickhouse.sink_user or LocalClickHouse.sink_user,
            }
        return env


class LocalPlatform:
    def __init__(
        self, local: LocalPlatformSettings, clickhouse: ClickHouseSettings | None = None
    ) -> None:
        # Absolute paths from here on: pid-file tokens and JVM classpaths must not depend on the
        # directory a later 'filas down' happens to run in.
        self.local = local.model_copy(
            update={
                "home": local.home.resolve(),
                "cache_dir": (local.cache_dir or local.home / "cache").resolve(),
            }
        )
        self.clickhouse_settings = clickhouse or ClickHouseSettings()
        self.home = self.local.home
        self.cache_dir: Path = self.local.cache_dir or self.home / "cache"

    # ---- paths and components -------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.home / "run" / "platform.json"

    @property
    def env_path(self) -> Path:
        return self.home / "platform.env"

    def _versions(self) -> maven.KafkaVersions:
        return maven.KafkaVersions(
            self.local.kafka_version, self.local.log4j_version, self.local.slf4j_version
        )

    def kafka(self, layout: Layout) -> KafkaCluster:
        libs = self.cache_dir / f"kafka-{self.local.kafka_version}" / "libs"
        return KafkaCluster.from_settings(
            self.local, libs, brokers=layout.brokers, secure=layout.secure
        )

    def registry_version(self) -> str:
        """The configured Apicurio, or the Java 17 build when no runtime can run the former.

        Apicurio 3.1+ needs Java 21, which Debian 12 does not package (docs/decisions/0003).
        """
        configured = self.local.apicurio_version
        app = self.cache_dir / f"apicurio-{configured}"
        if configured == JAVA17_APICURIO_VERSION or not maven.is_fetched(app):
            return configured
        try:
            find_java(
                LocalRegistry.from_settings(
                    self.local, app, bootstrap_servers="", scram=None
                ).required_java()
            )
        except PlatformError:
            return JAVA17_APICURIO_VERSION
        return configured

    def registry(self, layout: Layout) -> LocalRegistry:
        app = self.cache_dir / f"apicurio-{self.registry_version()}"
        bootstrap = layout.external_bootstrap or self.kafka(layout).bootstrap_servers
        return LocalRegistry.from_settings(
            self.local, app, bootstrap_servers=bootstrap, scram=self._scram(layout)
        )

    def clickhouse(self) -> LocalClickHouse:
        return LocalClickHouse.from_settings(self.local, self.clickhouse_settings)

    def _scram(self, layout: Layout) -> ScramUser | None:
        if not layout.secure:
            return None
        return ScramUser(self.local.scram_username, self.local.scram_password.get_secret_value())

    def read_layout(self) -> Layout | None:
        try:
            return Layout(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def processes(self, layout: Layout) -> list[ServiceProcess]:
        procs: list[ServiceProcess] = []
        if layout.registry:
            procs.append(self.registry(layout).process())
        if layout.external_bootstrap is None:
            kafka = self.kafka(layout)
            procs += [kafka.process(i) for i in range(layout.brokers)]
        if layout.clickhouse:
            procs.append(self.clickhouse().process())
        return procs

    def status(self) -> dict[str, bool]:
        """Each known service of the current layout and whether it runs."""
        layout = self.read_layout()
        if layout is None:
            return {}
        return {p.name: p.running() for p in self.processes(layout)}

    # ---- up / down -------------------------------------------------------------------------

    def up(
        self,
        brokers: int = 1,
        secure: bool = False,
        registry: bool = True,
        clickhouse: bool = True,
        *,
        external_bootstrap: str | None = None,
        echo: Echo = _quiet,
    ) -> RunningPlatform:
        """Start what is not running, wait until each service answers, write platform.env.

        Idempotent: when the same layout already runs it is checked and reported, not restarted.
        """
        layout = Layout(brokers, secure, registry, clickhouse, external_bootstrap)
        current = self.read_layout()
        if current is not None and any(self.status().values()):
            if current != layout:
                raise PlatformError(
                    f"a different local platform is running under {self.home} "
                    f"({_describe(current)}); run 'filas down' first"
                )
            echo("local platform already running; checking it answers")
            return self._start(layout, already_running=True, echo=echo)
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(asdict(layout)) + "\n")
        try:
            return self._start(layout, already_running=False, echo=echo)
        except BaseException:
            # Never leave half a platform behind: the next 'up' would find ports taken.
            self.down()
            raise

    def _start(self, layout: Layout, *, already_running: bool, echo: Echo) -> RunningPlatform:
        times: dict[str, float] = {}
        ch_port: int | None = None
        ch_http: int | None = None
        if layout.clickhouse:
            ch = self.clickhouse()
            times["clickhouse"] = ch.start()
            ch_port, ch_http = ch.tcp_port, ch.http_port
            echo(f"clickhouse  {ch.url}  ready in {times['clickhouse']:.1f}s")
        if layout.external_bootstrap is None:
            if not maven.is_fetched(self.cache_dir / f"kafka-{self.local.kafka_version}" / "libs"):
                echo(f"fetching Kafka from Maven Central (once; cached in {self.cache_dir})...")
            maven.fetch_kafka(self.cache_dir, self._versions())
            kafka = self.kafka(layout)
            times["kafka"] = kafka.start()
            bootstrap = kafka.bootstrap_servers
            mode = "SASL_PLAINTEXT/SCRAM-SHA-256" if layout.secure else "PLAINTEXT"
            echo(
                f"kafka       {bootstrap}  {layout.brokers} broker(s), {mode}, "
                f"ready in {times['kafka']:.1f}s"
            )
        else:
            bootstrap = layout.external_bootstrap
        registry_url: str | None = None
        if layout.registry:
            if not maven.is_fetched(self.cache_dir / f"apicurio-{self.local.apicurio_version}"):
                echo(f"fetching Apicurio Registry from Maven Central (once; {self.cache_dir})...")
            maven.fetch_apicurio(self.cache_dir, self.local.apicurio_version)
            version = self.registry_version()
            if version != self.local.apicurio_version:
                echo(
                    f"no Java runtime here can run Apicurio {self.local.apicurio_version}; "
                    f"using {version}, which runs on Java 17"
                )
                maven.fetch_apicurio(self.cache_dir, version)
            reg = self.registry(layout)
            times["registry"] = reg.start()
            registry_url = reg.url
            echo(f"registry    {registry_url}  ready in {times['registry']:.1f}s")
        running = RunningPlatform(
            layout=layout,
            bootstrap_servers=bootstrap,
            registry_url=registry_url,
            clickhouse_port=ch_port,
            clickhouse_http_port=ch_http,
            scram=self._scram(layout),
            env_file=self.env_path,
            already_running=already_running,
            start_seconds=times,
        )
        self._write_env(running)
        echo(f"environment {self.env_path}  (set -a; . {self.env_path}; set +a)")
        return running

    def _write_env(self, running: RunningPlatform) -> None:
        env = running.env(self.clickhouse_settings, self.home)
        lines = ["# Written by 'filas up'; source with: set -a; . <this file>; set +a"]
        lines += [f"{k}={shlex.quote(v)}" for k, v in env.items()]
        self.env_path.write_text("\n".join(lines) + "\n")
        # May hold the SCRAM password.
        self.env_path.chmod(0o600)

    @staticmethod
    def _stop_one(proc: ServiceProcess, stopped: list[str], echo: Echo) -> None:
        if proc.running():
            began = time.monotonic()
            proc.stop()
            stopped.append(proc.name)
            echo(f"stopped {proc.name} in {time.monotonic() - began:.1f}s")

    def down(self, echo: Echo = _quiet) -> list[str]:
        """Stop everything this home started (registry first: it is a Kafka client)."""
        layout = self.read_layout()
        stopped: list[str] = []
        if layout is not None:
            if layout.registry:
                self._stop_one(self.registry(layout).process(), stopped, echo)
            if layout.external_bootstrap is None:
                kafka = self.kafka(layout)
                names = [kafka.process(i).name for i in kafka.running_nodes()]
                if names:
                    began = time.monotonic()
                    # All nodes at once: stopped one by one, the last voter would wait for a
                    # quorum that is already gone until SIGKILL.
                    kafka.stop()
                    stopped += names
                    echo(f"stopped {', '.join(names)} in {time.monotonic() - began:.1f}s")
            if layout.clickhouse:
                self._stop_one(self.clickhouse().process(), stopped, echo)
        # Anything else with a pid file here (e.g. from a layout whose state file was lost).
        run_dir = self.home / "run"
        for pid_file in sorted(run_dir.glob("*.pid")) if run_dir.is_dir() else []:
            stray = _stray_process(pid_file)
            if stray is not None and stray.running():
                stray.stop()
                stopped.append(stray.name)
                echo(f"stopped {stray.name}")
        self.state_path.unlink(missing_ok=True)
        return stopped

    def purge(self, echo: Echo = _quiet) -> list[Path]:
        """Stop everything, then delete data, logs and state under home; keep the download cache."""
        self.down(echo)
        removed: list[Path] = []
        if not self.home.is_dir():
            return removed
        for entry in sorted(self.home.iterdir()):
            if entry == self.cache_dir or self.cache_dir.is_relative_to(entry):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
            echo(f"removed {entry}")
        return removed


def _describe(layout: Layout) -> str:
    parts = [f"{layout.brokers} broker(s)", "SCRAM" if layout.secure else "PLAINTEXT"]
    parts += ["registry"] if layout.registry else []
    parts += ["clickhouse"] if layout.clickhouse else []
    return ", ".join(parts)


def _stray_process(pid_file: Path) -> ServiceProcess | None:
    try:
        token = pid_file.read_text().split("\n", 1)[1].strip()
    except (OSError, IndexError):
        return None
    return ServiceProcess(
        name=pid_file.stem, argv=[], run_dir=pid_file.parent, log_path=Path(), token=token
    )
