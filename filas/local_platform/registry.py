"""A local Apicurio Registry 3.x, storing schemas in Kafka (``kafkasql``).

Apicurio publishes a ready-to-run Quarkus app on Maven Central; Confluent's registry is not
there and Karapace is not on PyPI. Its ``/apis/ccompat/v7`` API is what confluent-kafka's
``SchemaRegistryClient`` speaks, so production can point at any Confluent-compatible registry.
Storage is a Kafka topic rather than the default in-memory H2 so that schemas (and their ids,
which are written into every record) survive a registry restart.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from filas.errors import PlatformError
from filas.local_platform.java import find_java, required_java
from filas.local_platform.kafka import SCRAM_MECHANISM, ScramUser
from filas.local_platform.maven import quarkus_launcher
from filas.local_platform.processes import ServiceProcess, port_open, wait_until
from filas.settings import LocalPlatformSettings

HOST = "127.0.0.1"
CCOMPAT_PATH = "/apis/ccompat/v7"


@dataclass(frozen=True)
class LocalRegistry:
    app_dir: Path
    home: Path
    port: int
    # Quarkus serves health and metrics on a separate management port; it defaults to 9000 for
    # every instance, so two registries side by side (filas up + a test session) would collide.
    management_port: int
    bootstrap_servers: str
    heap: str = "384m"
    scram: ScramUser | None = None
    start_timeout_s: float = 120.0

    @classmethod
    def from_settings(
        cls,
        local: LocalPlatformSettings,
        app_dir: Path,
        *,
        bootstrap_servers: str,
        scram: ScramUser | None,
    ) -> LocalRegistry:
        return cls(
            app_dir=app_dir,
            home=local.home,
            port=local.registry_port,
            management_port=local.registry_management_port,
            bootstrap_servers=bootstrap_servers,
            heap=local.registry_heap,
            scram=scram,
            start_timeout_s=local.start_timeout_s,
        )

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL (what ``RegistrySettings.url`` expects)."""
        return f"http://{HOST}:{self.port}{CCOMPAT_PATH}"

    def system_properties(self) -> dict[str, str]:
        props = {
            "quarkus.http.host": HOST,
            "quarkus.http.port": str(self.port),
            "quarkus.management.host": HOST,
            "quarkus.management.port": str(self.management_port),
            "apicurio.storage.kind": "kafkasql",
            "apicurio.kafkasql.bootstrap.servers": self.bootstrap_servers,
            # No apicurio.kafkasql.topic.replication.factor: 3.3.3 forwards it to CreateTopics as
            # a topic config, which Kafka rejects ("Unknown topic config name"). The journal
            # topic then gets the broker's default.replication.factor, min(3, brokers).
            # Snapshots default to /tmp, shared between every registry on the machine.
            "apicurio.storage.snapshot.location": str((self.home / "registry").resolve()),
            # No request logs to stdout for every schema lookup.
            "quarkus.log.level": "INFO",
        }
        if self.scram is not None:
            # Apicurio's own sasl switch only knows OAUTHBEARER; SCRAM goes in as plain Kafka
            # client properties through the apicurio.kafka.common.* pass-through prefix.
            props |= {
                "apicurio.kafkasql.security.protocol": "SASL_PLAINTEXT",
                "apicurio.kafka.common.security.protocol": "SASL_PLAINTEXT",
                "apicurio.kafka.common.sasl.mechanism": SCRAM_MECHANISM,
                "apicurio.kafka.common.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{self.scram.name}" password="{self.scram.password}";'
                ),
            }
        return props

    def process(self) -> ServiceProcess:
        try:
            jar = quarkus_launcher(self.app_dir)
            java = find_java(self.required_java())
        except PlatformError:
            # status/down only need the pid-file token (the cache may even be gone); start()
            # checks both and reports what is missing.
            jar, java = self.app_dir / "quarkus-run.jar", "java"
        argv = [java, f"-Xmx{self.heap}", "-XX:+ExitOnOutOfMemoryError"]
        argv += [f"-D{k}={v}" for k, v in self.system_properties().items()]
        # Identifies this home's registry in the process table (see ServiceProcess.token).
        argv += [f"-Dfilas.home={self.home.resolve()}", "-jar", str(jar)]
        return ServiceProcess(
            name="registry",
            argv=argv,
            run_dir=self.home / "run",
            log_path=self.home / "logs" / "registry.log",
            token=f"-Dfilas.home={self.home.resolve()}",
            cwd=self.app_dir,
        )

    def required_java(self) -> int:
        """The Java release this Apicurio build needs (21 for 3.1+, 17 for 3.0.x)."""
        app_jars = sorted(self.app_dir.rglob("apicurio-registry-app-*.jar"))
        return max(17, required_java(app_jars[0])) if app_jars else 17

    def running(self) -> bool:
        return self.process().running()

    def start(self) -> float:
        """Start (or find running) and wait until the ccompat API answers; return seconds."""
        proc = self.process()
        if not proc.running():
            for port in (self.port, self.management_port):
                if port_open(HOST, port):
                    raise PlatformError(
                        f"port {port} for the registry is already in use by another process; set "
                        "FILAS_LOCAL__REGISTRY_PORT / FILAS_LOCAL__REGISTRY_MANAGEMENT_PORT"
                    )
            quarkus_launcher(self.app_dir)
            find_java(self.required_java())  # a clear error instead of UnsupportedClassVersion
            (self.home / "registry").mkdir(parents=True, exist_ok=True)
            proc.start()
        return wait_until(f"registry at {self.url}", self.answers, self.start_timeout_s, [proc])

    def stop(self, grace_s: float = 30.0) -> None:
        self.process().stop(grace_s)

    def answers(self) -> bool:
        """The ccompat API answers and Apicurio says it is ready: with kafkasql storage the API
        answers before the journal is replayed (an empty registry for seconds after a restart),
        and the readiness check (PersistenceSimpleReadinessCheck) waits for that replay."""
        if not port_open(HOST, self.port):
            return False
        ready = f"http://{HOST}:{self.management_port}/health/ready"
        try:
            for url in (f"{self.url}/subjects", ready):
                with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310
                    if resp.status != 200:
                        return False
        except (urllib.error.URLError, OSError):  # HTTPError (503 while not ready) included
            return False
        return True
