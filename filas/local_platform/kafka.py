"""A local Apache Kafka cluster in KRaft mode: N combined broker+controller JVMs on loopback.

Every node is both broker and controller so that one to three processes give a real quorum
without a separate controller tier. The quorum is static (``controller.quorum.voters``), which
lets every node be formatted alike, without the ``--standalone``/``--initial-controllers`` dance
a dynamic quorum needs. Listeners bind 127.0.0.1 only: this is a developer and test cluster.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from filas.errors import ConfigurationError, PlatformError
from filas.local_platform.java import find_java
from filas.local_platform.processes import ServiceProcess, log_tail, port_open, wait_until
from filas.settings import LocalPlatformSettings

HOST = "127.0.0.1"
KAFKA_MIN_JAVA = 17
CLIENT_LISTENER = "CLIENT"
CONTROLLER_LISTENER = "CONTROLLER"
SCRAM_MECHANISM = "SCRAM-SHA-256"
# Characters that would break the JAAS line or StorageTool's --add-scram parser; refusing them is
# simpler and safer than escaping for two different grammars.
_UNSAFE_SECRET_CHARS = set('"\\,[]=\n\r\t ')


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        for label, value in (("username", self.name), ("password", self.password)):
            if not value or _UNSAFE_SECRET_CHARS & set(value):
                raise ConfigurationError(
                    f"local SCRAM {label} must be non-empty and free of quotes, backslashes, "
                    "commas, brackets, '=' and whitespace"
                )


@dataclass(frozen=True)
class KafkaNode:
    index: int
    port: int
    controller_port: int
    directory: Path

    @property
    def node_id(self) -> int:
        return self.index + 1

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"


def new_cluster_id() -> str:
    """What ``StorageTool random-uuid`` prints: 16 random bytes, base64url, no padding (22 chars).
    Generated in Python to save a JVM start.

    An id starting with '-' (1 in 64) would be read as an option by ``format -t <id>``, and Kafka's
    own generator avoids it too, so draw again.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaCluster:
    """Start, stop and break a local KRaft cluster. Node indexes run from 0 to ``brokers - 1``."""

    def __init__(
        self,
        *,
        libs: Path,
        home: Path,
        brokers: int = 1,
        kafka_port: int = 19092,
        controller_port: int = 19093,
        heap: str = "512m",
        scram: ScramUser | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        if not 1 <= brokers <= 9:
            raise ConfigurationError(f"brokers must be between 1 and 9, not {brokers}")
        self.libs = libs
        self.home = home
        self.brokers = brokers
        self.heap = heap
        self.scram = scram
        self.start_timeout_s = start_timeout_s
        # One directory per layout: a 3-node or secure cluster never reuses the metadata of a
        # 1-node plaintext one (different voters or users would make the old log unreadable).
        layout = f"kafka-{brokers}n" + ("-scram" if scram else "")
        self.directory = home / layout
        self.nodes = [
            KafkaNode(
                index=i,
                port=kafka_port + 2 * i,
                controller_port=controller_port + 2 * i,
                directory=self.directory / f"node-{i}",
            )
            for i in range(brokers)
        ]

    @classmethod
    def from_settings(
        cls, local: LocalPlatformSettings, libs: Path, *, brokers: int = 1, secure: bool = False
    ) -> KafkaCluster:
        scram = (
            ScramUser(local.scram_username, local.scram_password.get_secret_value())
            if secure
            else None
        )
        return cls(
            libs=libs,
            home=local.home,
            brokers=brokers,
            kafka_port=local.kafka_port,
            controller_port=local.controller_port,
            heap=local.kafka_heap,
            scram=scram,
            start_timeout_s=local.start_timeout_s,
        )

    # ---- addresses -------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        return self.scram is not None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    def client_config(self) -> dict[str, str]:
        """librdkafka settings for a client of this cluster (with the SCRAM secret if secure)."""
        conf = {"bootstrap.servers": self.bootstrap_servers}
        if self.scram is not None:
            conf |= {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": self.scram.name,
                "sasl.password": self.scram.password,
            }
        return conf

    # ---- files -----------------------------------------------------------------------------

    @property
    def cluster_id_path(self) -> Path:
        return self.directory / "cluster.id"

    @property
    def log4j_path(self) -> Path:
        return self.directory / "log4j2.properties"

    def cluster_id(self) -> str:
        """Generated once and kept: every node and every restart must agree on it."""
        if self.cluster_id_path.exists():
            return self.cluster_id_path.read_text().strip()
        self.directory.mkdir(parents=True, exist_ok=True)
        cid = new_cluster_id()
        self.cluster_id_path.write_text(cid + "\n")
        return cid

    def server_properties(self, node: KafkaNode) -> dict[str, str]:
        n = self.brokers
        rf = str(min(3, n))
        min_isr = "2" if n >= 3 else "1"
        voters = ",".join(f"{m.node_id}@{HOST}:{m.controller_port}" for m in self.nodes)
        client_protocol = "SASL_PLAINTEXT" if self.secure else "PLAINTEXT"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": (
                f"{CLIENT_LISTENER}://{HOST}:{node.port},"
                f"{CONTROLLER_LISTENER}://{HOST}:{node.controller_port}"
            ),
            "advertised.listeners": f"{CLIENT_LISTENER}://{HOST}:{node.port}",
            "listener.security.protocol.map": (
                f"{CLIENT_LISTENER}:{client_protocol},{CONTROLLER_LISTENER}:PLAINTEXT"
            ),
            "controller.listener.names": CONTROLLER_LISTENER,
            "inter.broker.listener.name": CLIENT_LISTENER,
            "log.dirs": str(node.data_dir),
            "num.partitions": "3",
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            # 50 partitions (the default) makes the first consumer group join slow on a laptop.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            # Tests join groups constantly; the 3 s default delay only slows them down.
            "group.initial.rebalance.delay.ms": "0",
            # Topics are declared in the catalog and created on purpose, never by a typo.
            "auto.create.topics.enable": "false",
        }
        if self.scram is not None:
            lname = CLIENT_LISTENER.lower()
            props |= {
                "sasl.enabled.mechanisms": SCRAM_MECHANISM,
                "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
                f"listener.name.{lname}.scram-sha-256.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{self.scram.name}" password="{self.scram.password}";'
                ),
            }
        return props

    def write_configs(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        template = resources.files("filas.local_platform") / "templates" / "kafka-log4j2.properties"
        self.log4j_path.write_text(template.read_text())
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            text = "".join(f"{k}={v}\n" for k, v in self.server_properties(node).items())
            node.config_path.write_text(text)
            # May hold the SCRAM password.
            node.config_path.chmod(0o600)

    # ---- processes -------------------------------------------------------------------------

    def _jvm(self, heap: str) -> list[str]:
        return [
            find_java(KAFKA_MIN_JAVA),
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            f"{self.libs}/*",
        ]

    def process(self, index: int) -> ServiceProcess:
        node = self.nodes[index]
        return ServiceProcess(
            name=f"kafka-{node.index}",
            argv=[*self._jvm(self.heap), "kafka.Kafka", str(node.config_path)],
            run_dir=self.home / "run",
            log_path=self.home / "logs" / f"kafka-{node.index}.log",
            token=str(node.config_path),
        )

    def _format(self) -> None:
        """Format every unformatted node (in parallel: each is a JVM start)."""
        cid = self.cluster_id()
        pending: list[tuple[KafkaNode, subprocess.Popen[str]]] = []
        for node in self.nodes:
            if (node.data_dir / "meta.properties").exists():
                continue
            argv = [
                *self._jvm("256m"),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cid,
                "-c",
                str(node.config_path),
            ]
            if self.scram is not None:
                # SCRAM users live in the metadata log; adding them at format time means the
                # brokers can authenticate to each other from the very first start.
                argv += [
                    "--add-scram",
                    self._scram_arg(self.scram),
                ]
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            pending.append((node, proc))
        for node, proc in pending:
            out, _ = proc.communicate(timeout=self.start_timeout_s)
            if proc.returncode != 0:
                raise PlatformError(
                    f"formatting Kafka storage for node {node.node_id} failed "
                    f"(exit {proc.returncode}):\n{out[-4000:]}"
                )

    @staticmethod
    def _scram_arg(user: ScramUser) -> str:
        return f"{SCRAM_MECHANISM}=[name={user.name},password={user.password}]"

    def running_nodes(self) -> list[int]:
        return [i for i in range(self.brokers) if self.process(i).running()]

    def start(self) -> float:
        """Start every node that is not running and wait for the cluster; return seconds taken."""
        began = time.monotonic()
        self.write_configs()
        self._format()
        for i in range(self.brokers):
            self._check_port_free(i)
            self.process(i).start()
        self.wait_ready()
        return time.monotonic() - began

    def _check_port_free(self, index: int) -> None:
        node = self.nodes[index]
        if self.process(index).running():
            return
        for port in (node.port, node.controller_port):
            if port_open(HOST, port):
                raise PlatformError(
                    f"port {port} for Kafka node {node.node_id} is already in use by another "
                    "process; choose other ports (FILAS_LOCAL__KAFKA_PORT / CONTROLLER_PORT)"
                )

    def wait_ready(self, expected_brokers: int | None = None) -> float:
        """Wait until a metadata request lists ``expected_brokers`` (default: all) brokers."""
        want = self.brokers if expected_brokers is None else expected_brokers
        procs = [self.process(i) for i in self.running_nodes_or_all()]
        return wait_until(
            f"Kafka ({want} broker(s) at {self.bootstrap_servers})",
            lambda: self.metadata_brokers() >= want,
            self.start_timeout_s,
            procs,
        )

    def running_nodes_or_all(self) -> list[int]:
        running = self.running_nodes()
        return running or list(range(self.brokers))

    def metadata_brokers(self, timeout_s: float = 3.0) -> int:
        """How many brokers a metadata request reports (0 when none answers)."""
        if not any(port_open(HOST, n.port) for n in self.nodes):
            # Skip the client entirely: librdkafka would log a connection error per attempt.
            return 0
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        conf: dict[str, str | int] = {**self.client_config(), "log_level": 0}
        try:
            md = AdminClient(conf).list_topics(timeout=timeout_s)
        except KafkaException:
            return 0
        return len(md.brokers)

    def stop(self, grace_s: float = 60.0) -> None:
        """Graceful stop of every node (SIGTERM, SIGKILL after ``grace_s``)."""
        # Signal all first so the nodes shut down together instead of one grace period each.
        for i in range(self.brokers):
            self.process(i).signal(signal.SIGTERM)
        for i in range(self.brokers):
            self.process(i).stop(grace_s)

    # ---- fault injection -------------------------------------------------------------------

    def kill_node(self, index: int) -> None:
        """SIGKILL one node: a crash, no controlled shutdown."""
        self.process(index).kill()

    def stop_node(self, index: int, grace_s: float = 60.0) -> None:
        """SIGTERM one node: controlled shutdown, leadership moves away first."""
        self.process(index).stop(grace_s)

    def start_node(self, index: int, wait: bool = True) -> float:
        """Start one node again and (by default) wait until the cluster lists it."""
        began = time.monotonic()
        self._check_port_free(index)
        self.process(index).start()
        if wait:
            node_id = self.nodes[index].node_id
            proc = self.process(index)
            wait_until(
                f"Kafka node {node_id} to rejoin",
                # Ask the restarted node itself: the others may still list it from before the
                # crash until its broker session times out.
                lambda: node_id in self._broker_ids(f"{HOST}:{self.nodes[index].port}"),
                self.start_timeout_s,
                [proc],
            )
        return time.monotonic() - began

    def _broker_ids(self, bootstrap: str) -> set[int]:
        host, _, port = bootstrap.rpartition(":")
        if not port_open(host, int(port)):
            return set()
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        conf: dict[str, str | int] = {
            **self.client_config(),
            "bootstrap.servers": bootstrap,
            "log_level": 0,
        }
        try:
            md = AdminClient(conf).list_topics(timeout=3.0)
        except KafkaException:
            return set()
        return set(md.brokers)

    def logs(self) -> Mapping[int, str]:
        return {i: log_tail(self.process(i).log_path) for i in range(self.brokers)}
