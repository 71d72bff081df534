"""Local platform pieces that need no running service: configs, ids, env file, pid files."""

from __future__ import annotations

import base64
import os
import shutil
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from filas.errors import ConfigurationError, PlatformError
from filas.local_platform import clickhouse as ch_mod
from filas.local_platform import local as local_mod
from filas.local_platform.clickhouse import LocalClickHouse
from filas.local_platform.kafka import KafkaCluster, ScramUser, new_cluster_id
from filas.local_platform.local import Layout, RunningPlatform
from filas.local_platform.maven import KafkaVersions, broker_artifacts, render_pom, tools_artifacts
from filas.local_platform.processes import ServiceProcess, free_port_block, wait_until
from filas.settings import ClickHouseSettings, LocalPlatformSettings, SecurityProtocol


def _cluster(tmp_path: Path, brokers: int, scram: ScramUser | None = None) -> KafkaCluster:
    return KafkaCluster(
        libs=tmp_path / "libs",
        home=tmp_path,
        brokers=brokers,
        kafka_port=30000,
        controller_port=30001,
        scram=scram,
    )


def test_single_node_properties(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, 1)
    props = cluster.server_properties(cluster.nodes[0])
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:30001"
    assert props["listeners"] == "CLIENT://127.0.0.1:30000,CONTROLLER://127.0.0.1:30001"
    assert props["listener.security.protocol.map"] == "CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
        "min.insync.replicas",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1", key
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "3"
    assert cluster.bootstrap_servers == "127.0.0.1:30000"


def test_three_node_layout(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, 3)
    assert [n.port for n in cluster.nodes] == [30000, 30002, 30004]
    assert [n.controller_port for n in cluster.nodes] == [30001, 30003, 30005]
    props = cluster.server_properties(cluster.nodes[2])
    assert props["node.id"] == "3"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:30001,2@127.0.0.1:30003,3@127.0.0.1:30005"
    )
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["advertised.listeners"] == "CLIENT://127.0.0.1:30004"
    assert cluster.bootstrap_servers == "127.0.0.1:30000,127.0.0.1:30002,127.0.0.1:30004"


def test_secure_properties_and_client_config(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, 1, ScramUser("alice", "pw-1"))
    props = cluster.server_properties(cluster.nodes[0])
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-256"
    jaas = props["listener.name.client.scram-sha-256.sasl.jaas.config"]
    assert 'username="alice" password="pw-1";' in jaas
    conf = cluster.client_config()
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.username"] == "alice"
    # A secure layout never shares metadata with a plaintext one.
    assert cluster.directory != _cluster(tmp_path, 1).directory


def test_scram_secret_is_hidden_from_repr() -> None:
    assert "pw-1" not in repr(ScramUser("alice", "pw-1"))


@pytest.mark.parametrize("password", ["", 'a"b', "a b", "a,b", "a]b", "a\\b"])
def test_unsafe_scram_password_is_refused(password: str) -> None:
    with pytest.raises(ConfigurationError):
        ScramUser("alice", password)


def test_cluster_id_is_kafka_uuid_shaped(tmp_path: Path) -> None:
    cid = new_cluster_id()
    assert len(cid) == 22
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16
    cluster = _cluster(tmp_path, 1)
    assert cluster.cluster_id() == cluster.cluster_id()


def test_config_files_are_written_private(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, 1, ScramUser("alice", "pw-1"))
    cluster.write_configs()
    config = cluster.nodes[0].config_path
    assert "node.id=1\n" in config.read_text()
    assert config.stat().st_mode & 0o077 == 0
    assert "STDOUT" in cluster.log4j_path.read_text()


def test_pom_pins_slf4j_2_and_tools_are_separate() -> None:
    versions = KafkaVersions("4.1.0", "2.24.3", "2.0.17")
    pom = render_pom("kafka", broker_artifacts(versions))
    root = ET.fromstring(pom)  # noqa: S314 - our own generated POM
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    deps = {
        (d.findtext("m:artifactId", namespaces=ns), d.findtext("m:version", namespaces=ns))
        for d in root.iterfind(".//m:dependency", ns)
    }
    assert ("slf4j-api", "2.0.17") in deps
    assert ("kafka_2.13", "4.1.0") in deps
    assert ("log4j-slf4j2-impl", "2.24.3") in deps
    assert all(a.name != "kafka-tools" for a in broker_artifacts(versions))
    assert any(a.name == "kafka-tools" for a in tools_artifacts(versions))


def test_clickhouse_config_is_local_and_parses(tmp_path: Path) -> None:
    ch = LocalClickHouse(home=tmp_path, tcp_port=31000, http_port=31123, database="db")
    ch.write_config()
    root = ET.parse(ch.config_path).getroot()  # noqa: S314 - our own generated file
    assert root.tag == "yandex"
    assert root.findtext("listen_host") == "127.0.0.1"
    assert root.findtext("tcp_port") == "31000"
    assert root.findtext("http_port") == "31123"
    assert root.find("interserver_http_port") is None
    assert root.findtext("path", "").startswith(str(tmp_path.resolve()))
    users = ET.parse(root.findtext("users_config", "")).getroot()  # noqa: S314
    assert users.find("users/default") is not None


def test_env_for_secure_platform(tmp_path: Path) -> None:
    running = RunningPlatform(
        layout=Layout(secure=True),
        bootstrap_servers="127.0.0.1:1",
        registry_url="http://127.0.0.1:2/apis/ccompat/v7",
        clickhouse_port=3,
        clickhouse_http_port=4,
        scram=ScramUser("u", "p"),
        env_file=tmp_path / "platform.env",
    )
    env = running.env(ClickHouseSettings(database="x"), tmp_path)
    assert env["FILAS_KAFKA__BOOTSTRAP_SERVERS"] == "127.0.0.1:1"
    assert env["FILAS_KAFKA__SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["FILAS_KAFKA__SASL_PASSWORD"] == "p"
    assert env["FILAS_CLICKHOUSE__PORT"] == "3"
    assert env["FILAS_CLICKHOUSE__DATABASE"] == "x"
    kafka = running.kafka_settings()
    assert kafka.security_protocol is SecurityProtocol.SASL_PLAINTEXT
    assert kafka.client_config()["sasl.password"] == "p"


def _sleeper(tmp_path: Path, marker: str = "filas-test-sleeper") -> ServiceProcess:
    code = f"import time  # {marker}\ntime.sleep(60)"
    return ServiceProcess(
        name="sleeper",
        argv=[sys.executable, "-c", code],
        run_dir=tmp_path / "run",
        log_path=tmp_path / "logs" / "sleeper.log",
        token=marker,
    )


def test_process_start_is_idempotent_and_stop_cleans_up(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path)
    pid = proc.start()
    try:
        assert proc.running()
        assert proc.start() == pid
    finally:
        proc.stop(grace_s=5)
    assert not proc.running()
    assert not proc.pid_path.exists()


def test_pid_file_of_another_process_is_not_trusted(tmp_path: Path) -> None:
    proc = _sleeper(tmp_path)
    proc.run_dir.mkdir(parents=True)
    # Our own pid: alive, but its command line does not carry the token.
    proc.pid_path.write_text(f"{os.getpid()}\nsome-other-token\n")
    assert proc.pid() is None
    assert not proc.pid_path.exists()


def test_wait_until_fails_fast_with_log_tail_when_process_dies(tmp_path: Path) -> None:
    proc = ServiceProcess(
        name="dies",
        argv=[sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
        run_dir=tmp_path / "run",
        log_path=tmp_path / "logs" / "dies.log",
        token="boom",
    )
    proc.start()
    with pytest.raises(PlatformError, match="boom: bad config"):
        wait_until("never", lambda: False, timeout_s=30, processes=[proc])


def test_wait_until_times_out(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="not ready after"):
        wait_until("never", lambda: False, timeout_s=0.3)


def test_free_port_block_is_consecutive() -> None:
    base = free_port_block(4)
    assert 1024 < base <= 65535 - 4


def _fake_apicurio(cache: Path, version: str, class_major: int) -> None:
    """A fetched-looking Apicurio app whose one class has the given class file version."""
    app = cache / f"apicurio-{version}"
    (app / "app").mkdir(parents=True)
    (app / "quarkus-run.jar").write_bytes(b"")
    with zipfile.ZipFile(app / "app" / f"apicurio-registry-app-{version}.jar", "w") as zf:
        zf.writestr("X.class", b"\xca\xfe\xba\xbe\x00\x00" + class_major.to_bytes(2, "big"))
    (app / ".complete").write_text("done\n")


def test_registry_falls_back_to_java17_build_without_java21(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_apicurio(tmp_path / "cache", "3.3.3", 65)  # class file 65 = Java 21
    platform = local_mod.LocalPlatform(
        LocalPlatformSettings(home=tmp_path, cache_dir=tmp_path / "cache", apicurio_version="3.3.3")
    )

    def only_java17(release: int) -> str:
        if release > 17:
            raise PlatformError("no Java 21")
        return "/usr/bin/java"

    monkeypatch.setattr(local_mod, "find_java", only_java17)
    assert platform.registry_version() == local_mod.JAVA17_APICURIO_VERSION

    monkeypatch.setattr(local_mod, "find_java", lambda release: "/opt/jdk21/bin/java")
    assert platform.registry_version() == "3.3.3"


def test_clickhouse_is_installed_with_apt_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "apt-calls.log"
    installed = tmp_path / "installed"
    fake_apt = tmp_path / "apt-get"
    fake_apt.write_text(
        "#!/bin/sh\n"
        f'echo "$DEBIAN_FRONTEND $*" >> {calls}\n'
        f'[ "$1" = install ] && touch {installed}\n'
        "exit 0\n"
    )
    fake_apt.chmod(0o755)

    def which(name: str) -> str | None:
        if name == "apt-get":
            return str(fake_apt)
        if name == ch_mod.SERVER_BINARY and installed.exists():
            return "/usr/bin/clickhouse-server"
        return None

    monkeypatch.setattr(shutil, "which", which)
    monkeypatch.setattr(ch_mod, "_sbin", lambda name: None)
    assert ch_mod.ensure_installed() == "/usr/bin/clickhouse-server"
    lines = calls.read_text().splitlines()
    assert lines[0] == "noninteractive update"
    assert lines[1].startswith("noninteractive install -y")
    assert lines[1].endswith("clickhouse-server clickhouse-client")


def test_clickhouse_install_failure_is_a_platform_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_apt = tmp_path / "apt-get"
    fake_apt.write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    fake_apt.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake_apt) if name == "apt-get" else None)
    monkeypatch.setattr(ch_mod, "_sbin", lambda name: None)
    with pytest.raises(PlatformError, match="Unable to locate package"):
        ch_mod.ensure_installed()


def test_purge_keeps_the_download_cache(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for path in ("cache/kafka-4.1.0/libs/x.jar", "kafka-1n/node-0/data/x", "logs/kafka-0.log"):
        (home / path).parent.mkdir(parents=True, exist_ok=True)
        (home / path).write_text("x")
    (home / "platform.env").write_text("X=1\n")
    platform = local_mod.LocalPlatform(LocalPlatformSettings(home=home))
    platform.purge()
    assert sorted(p.name for p in home.iterdir()) == ["cache"]
    assert (home / "cache/kafka-4.1.0/libs/x.jar").exists()


def test_cluster_ids_never_start_with_a_dash() -> None:
    from filas.local_platform.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(2_000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
