"""The generated KafkaUser ACLs (deploy/base/kafka/users.yaml, decision 0112) on a real broker
with an authorizer: a private single-node Kafka (SCRAM, StandardAuthorizer, nothing allowed but
what is granted) gets the ingress's and the request worker's users and exactly the ACLs
``k8s_render.kafka_user`` renders for them. ``filas ingress serve`` and ``filas requests work``
(the Deployments' commands, logs shipped to ``filas.logs``) then carry a service request from
the HTTP API to the IXC simulator and back to ``done``; the ingress's user is refused the
topics it has no business with (subscriber passwords, contract status); ``filas sink run``
as its own user lands the request's status rows in ClickHouse and dead-letters an unreadable
record; ``filas radius serve`` as its own user loads its replica and turns ``/ready``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from bench.requests_payment import SIM_TOKEN, SimThread
from consumers.clickhouse.client import ClickHouse, quote
from consumers.clickhouse.tables import table_name
from filas.admin import k8s_render
from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACT_STATUS, SUBSCRIBERS
from filas.catalog.network import ALERTS
from filas.catalog.requests import REQUEST_STATUS
from filas.local_platform.java import find_java, required_java
from filas.local_platform.kafka import SCRAM_MECHANISM, KafkaCluster, KafkaNode
from filas.local_platform.maven import KafkaVersions, fetch_apicurio, fetch_kafka, quarkus_launcher
from filas.local_platform.processes import free_port
from filas.local_platform.testing import local_settings
from filas.settings import (
    KafkaSettings,
    LocalPlatformSettings,
    SecurityProtocol,
    Settings,
    TopicsSettings,
)
from producers.ixc.simulator import SimulatedIsp

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

TOKEN = "acl-test-token"
PASSWORD = "acl-test-password"


class AuthorizingCluster(KafkaCluster):
    """The local cluster with Kafka's StandardAuthorizer: no ACL, no access (the admin user and
    the controller listener's ANONYMOUS are super users)."""

    def server_properties(self, node: KafkaNode) -> dict[str, str]:
        assert self.scram is not None
        return super().server_properties(node) | {
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{self.scram.name};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, platform_cache_dir: Path
) -> Iterator[AuthorizingCluster]:
    local = local_settings(
        tmp_path_factory.mktemp("kafka-acl"), platform_cache_dir, start_timeout_s=240.0
    )
    libs = fetch_kafka(
        platform_cache_dir,
        KafkaVersions(local.kafka_version, local.log4j_version, local.slf4j_version),
    )
    base = KafkaCluster.from_settings(local, libs, secure=True)
    cluster = AuthorizingCluster(
        libs=libs,
        home=local.home,
        kafka_port=local.kafka_port,
        controller_port=local.controller_port,
        heap=local.kafka_heap,
        scram=base.scram,
        start_timeout_s=local.start_timeout_s,
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop(grace_s=20)


def kafka_as(cluster: KafkaCluster, user: str, password: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=cluster.bootstrap_servers,
        security_protocol=SecurityProtocol.SASL_PLAINTEXT,
        sasl_mechanism=SCRAM_MECHANISM,
        sasl_username=user,
        sasl_password=SecretStr(password),
    )


_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}


def acl_bindings(user: dict[str, Any]) -> list[AclBinding]:
    """The Strimzi KafkaUser's ACLs as Kafka ACL bindings (what Strimzi's user operator sets)."""
    principal = f"User:{user['metadata']['name']}"
    bindings = []
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] == "cluster":
            kind, name, pattern = ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL
        else:
            kind, name = _RESOURCE[resource["type"]], resource["name"]
            pattern = _PATTERN[resource.get("patternType", "literal")]
        for operation in acl["operations"]:
            bindings.append(
                AclBinding(
                    kind,
                    name,
                    pattern,
                    principal,
                    acl.get("host", "*"),
                    AclOperation[re.sub(r"(?<!^)(?=[A-Z])", "_", operation).upper()],
                    AclPermissionType.ALLOW,
                )
            )
    return bindings


def grant(cluster: KafkaCluster, catalog: Catalog, *names: str) -> dict[str, str]:
    """SCRAM users and the rendered ACLs for these workloads; returns workload -> user."""
    admin = AdminClient(cluster.client_config())
    users = {}
    bindings: list[AclBinding] = []
    for workload in k8s_render.WORKLOADS:
        if workload.name not in names:
            continue
        user = k8s_render.kafka_user(workload, catalog)
        users[workload.name] = user["metadata"]["name"]
        bindings += acl_bindings(user)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    upserts = [UserScramCredentialUpsertion(u, info, PASSWORD.encode()) for u in users.values()]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(30)
    for future in admin.create_acls(bindings).values():
        future.result(30)
    return users


def refused(kafka: KafkaSettings, action: str, topic: str) -> bool:
    """Does the broker refuse this user reading (or writing) ``topic``?"""
    conf = kafka.client_config() | {"client.id": "acl-probe"}
    if action == "read":
        consumer = Consumer(conf | {"group.id": f"filas-acl-probe-{uuid.uuid4().hex[:6]}"})
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is not None and msg.error() is not None:
                    return msg.error().code() in (
                        KafkaError.TOPIC_AUTHORIZATION_FAILED,
                        KafkaError.GROUP_AUTHORIZATION_FAILED,
                    )
            return False
        finally:
            consumer.close()
    errors: list[KafkaError] = []
    producer = Producer(conf | {"message.timeout.ms": 15000})
    producer.produce(topic, b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(30)
    return (
        bool(errors)
        and errors[0] is not None
        and (errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED)
    )


def cli_env(settings: Settings, kafka: KafkaSettings, extra: dict[str, str]) -> dict[str, str]:
    """A ``filas`` process's environment: this cluster as ``kafka``'s user, the session's
    registry, the test's prefix (and nothing from the developer's shell)."""
    assert kafka.sasl_username is not None
    assert kafka.sasl_password is not None
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FILAS_")}
    return env | {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FILAS_KAFKA__SECURITY_PROTOCOL": kafka.security_protocol.value,
        "FILAS_KAFKA__SASL_MECHANISM": kafka.sasl_mechanism,
        "FILAS_KAFKA__SASL_USERNAME": kafka.sasl_username,
        "FILAS_KAFKA__SASL_PASSWORD": kafka.sasl_password.get_secret_value(),
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_TOPICS__PREFIX": settings.topics.prefix,
        "FILAS_METRICS__PORT": str(free_port()),
        **extra,
    }


def wait_for(what: str, check: Callable[[], bool], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            assert proc.poll() is None, f"a process exited with {proc.returncode}"
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within 90 s")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}  # /ready answers plain text
    return value if isinstance(value, dict) else {}


def http_json(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - the test's ingress on 127.0.0.1
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), _json(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), _json(exc.read())
    except OSError:
        return 0, {}


def test_ingress_and_workers_work_with_only_their_generated_acls(
    cluster: AuthorizingCluster, platform: Settings, unique_name: str, tmp_path: Path
) -> None:
    catalog = Catalog.build(unique_name)
    assert cluster.scram is not None
    TopicAdmin(kafka_as(cluster, cluster.scram.name, cluster.scram.password)).apply(catalog)
    users = grant(cluster, catalog, "ingress", "ixc-requests", "clickhouse-sink", "radius-gateway")
    isp = SimulatedIsp(seed=1, customers=50, devices=0, nas=1)
    blocked = next(r["id"] for r in isp.records("cliente_contrato") if r["status_internet"] == "CA")
    sim = SimThread(isp)
    settings = platform.model_copy(update={"topics": TopicsSettings(prefix=unique_name)})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ingress_env = cli_env(
        settings,
        kafka_as(cluster, users["ingress"], PASSWORD),
        {"FILAS_INGRESS__PORT": str(port), "FILAS_INGRESS__TOKENS": json.dumps({"noc": TOKEN})},
    )
    worker_env = cli_env(
        settings,
        kafka_as(cluster, users["ixc-requests"], PASSWORD),
        {
            "FILAS_IXC__BASE_URL": sim.url,
            "FILAS_IXC__TOKEN": SIM_TOKEN,
            "FILAS_IXC__MIN_REQUEST_INTERVAL_S": "0",
            "FILAS_IXC__WATERMARK_PATH": str(tmp_path / "watermarks.json"),
        },
    )
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("ingress", "worker")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "filas.cli.main", *args],
            env=env,
            stdout=logs[name],
            stderr=subprocess.STDOUT,
        )
        for name, args, env in (
            ("ingress", ("ingress", "serve"), ingress_env),
            ("worker", ("requests", "work"), worker_env),
        )
    ]
    try:
        wait_for("ingress ready", lambda: http_json(f"{base}/healthz")[0] == 200, procs)
        worker_log = tmp_path / "worker.log"
        wait_for("worker up", lambda: b"ixc requests worker up" in worker_log.read_bytes(), procs)
        status, body = http_json(
            f"{base}/v1/requests", {"type": "trust_unblock", "params": {"contract_id": blocked}}
        )
        assert status == 202, body
        state: list[str] = []

        def final() -> bool:
            state[:] = [str(http_json(body["status_url"])[1].get("state"))]
            return state[0] in ("done", "failed", "dead_lettered")

        wait_for("request final", final, procs)
        assert state == ["done"], (tmp_path / "worker.log").read_text()[-3000:]
        request_id = str(body["request_id"])
        assert isp.get("cliente_contrato", blocked)["status_internet"] == "A"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for handle in logs.values():
            handle.close()
        sim.stop()
    # What the ingress's user may not touch ...
    ingress_kafka = kafka_as(cluster, users["ingress"], PASSWORD)
    assert refused(ingress_kafka, "read", catalog.resolve(SUBSCRIBERS).name)
    assert refused(ingress_kafka, "write", catalog.resolve(CONTRACT_STATUS).name)
    # ... and what it may: the control is the same probe on its own status topic.
    assert not refused(ingress_kafka, "write", catalog.resolve(REQUEST_STATUS).name)
    assert_the_sink_lands_and_dead_letters(cluster, settings, catalog, users, request_id, tmp_path)
    assert_the_radius_gateway_loads_its_replica(cluster, settings, users, tmp_path)


def assert_the_radius_gateway_loads_its_replica(
    cluster: AuthorizingCluster, settings: Settings, users: dict[str, str], tmp_path: Path
) -> None:
    """``filas radius serve`` as its own user reads its replica (assigned readers with
    throwaway group ids: the prefix ACL) and says so on ``/ready`` (decision 0113)."""
    metrics = free_port()
    env = cli_env(
        settings,
        kafka_as(cluster, users["radius-gateway"], PASSWORD),
        {
            "FILAS_METRICS__PORT": str(metrics),
            "FILAS_RADIUS__BIND_HOST": "127.0.0.1",
            "FILAS_RADIUS__AUTH_PORT": str(free_port()),
            "FILAS_RADIUS__ACCT_PORT": str(free_port()),
        },
    )
    with (tmp_path / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "filas.cli.main", "radius", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            ready = f"http://127.0.0.1:{metrics}/ready"
            wait_for("gateway ready", lambda: http_json(ready)[0] == 200, [gateway])
        finally:
            gateway.send_signal(signal.SIGINT)
            try:
                gateway.wait(30)
            except subprocess.TimeoutExpired:
                gateway.kill()
                gateway.wait(10)
    assert "radius gateway up" in (tmp_path / "gateway.log").read_text()


def assert_the_sink_lands_and_dead_letters(
    cluster: AuthorizingCluster,
    settings: Settings,
    catalog: Catalog,
    users: dict[str, str],
    request_id: str,
    tmp_path: Path,
) -> None:
    """The sink (every topic, every dead-letter topic) as its own user: the request's status
    rows land in ClickHouse, and an unreadable record goes to its topic's .dlq."""
    assert cluster.scram is not None
    alerts = catalog.resolve(ALERTS).name
    admin = Producer(cluster.client_config())
    admin.produce(alerts, b"not an avro record", key=b"k")
    admin.flush(30)
    ch = settings.clickhouse
    env = cli_env(
        settings,
        kafka_as(cluster, users["clickhouse-sink"], PASSWORD),
        {
            "FILAS_CLICKHOUSE__HOST": ch.host,
            "FILAS_CLICKHOUSE__PORT": str(ch.port),
            "FILAS_CLICKHOUSE__HTTP_PORT": str(ch.http_port),
            "FILAS_CLICKHOUSE__DATABASE": ch.database,
            "FILAS_CLICKHOUSE__USER": ch.user,
            "FILAS_CLICKHOUSE__PASSWORD": ch.password.get_secret_value(),
            "FILAS_CLICKHOUSE__SINK_PASSWORD": ch.sink_password.get_secret_value(),
        }
        | ({"FILAS_CLICKHOUSE__SINK_USER": ch.sink_user} if ch.sink_user else {}),
    )
    group = k8s_render.workload_groups(
        next(w for w in k8s_render.WORKLOADS if w.name == "clickhouse-sink"), catalog
    )[0]
    table = table_name(catalog.resolve(REQUEST_STATUS).name)
    clickhouse = ClickHouse(ch)
    with (tmp_path / "sink.log").open("wb") as log:
        sink = subprocess.Popen(
            [sys.executable, "-m", "filas.cli.main", "sink", "run", "--group", group],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def landed() -> bool:
                try:
                    rows = clickhouse.query(
                        f"SELECT count() FROM {quote(table)} "  # noqa: S608
                        "WHERE request_id = %(id)s AND state = 'DONE'",
                        {"id": request_id},
                    )
                except Exception:  # the table is created when the sink starts
                    return False
                return bool(rows) and int(rows[0][0]) >= 1

            wait_for("status rows in ClickHouse", landed, [sink])
            dlq = catalog.dead_letter_for(catalog.resolve(ALERTS)).name
            wait_for("dead letter", lambda: records(cluster, dlq) >= 1, [sink])
        finally:
            clickhouse.close()
            sink.send_signal(signal.SIGINT)
            try:
                sink.wait(30)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait(10)
    assert "Traceback" not in (tmp_path / "sink.log").read_text()


def records(cluster: KafkaCluster, topic: str) -> int:
    consumer = Consumer(cluster.client_config() | {"group.id": "unused"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def test_the_schema_registry_stores_schemas_with_only_its_generated_acls(
    cluster: AuthorizingCluster, platform_cache_dir: Path, tmp_path: Path
) -> None:
    """Apicurio (kafkasql) configured exactly as registry/apicurio.yaml's environment says
    (SCRAM through dotted pass-through variables, its group prefix), as the KafkaUser
    filas-registry with only its rendered ACLs: it becomes ready and stores a schema."""
    admin = AdminClient(cluster.client_config())
    user = k8s_render.registry_user()
    name = user["metadata"]["name"]
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    upsert = UserScramCredentialUpsertion(name, info, PASSWORD.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(30)
    for future in admin.create_acls(acl_bindings(user)).values():
        future.result(30)
    manifest = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy/base/registry/apicurio.yaml").read_text())
        if d and d["kind"] == "Deployment"
    )
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("FILAS_", "APICURIO"))}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:  # the JAAS line Strimzi writes in the user's Secret
            assert item["valueFrom"]["secretKeyRef"] == {"name": name, "key": "sasl.jaas.config"}
            env[item["name"]] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{name}" password="{PASSWORD}";'
            )
    env["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"] = cluster.bootstrap_servers
    env["apicurio.kafka.common.sasl.mechanism"] = SCRAM_MECHANISM  # this broker's (Strimzi: 512)
    env.pop("JAVA_OPTS_APPEND", None)
    app = fetch_apicurio(platform_cache_dir, LocalPlatformSettings().apicurio_version)
    port, management = free_port(), free_port()
    argv = [
        find_java(max(17, required_java(next(app.rglob("apicurio-registry-app-*.jar"))))),
        "-Xmx384m",
        "-Dquarkus.http.host=127.0.0.1",
        f"-Dquarkus.http.port={port}",
        "-Dquarkus.management.host=127.0.0.1",
        f"-Dquarkus.management.port={management}",
        f"-Dapicurio.storage.snapshot.location={tmp_path / 'snapshots'}",
        "-jar",
        str(quarkus_launcher(app)),
    ]
    with (tmp_path / "registry.log").open("wb") as log:
        registry = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=app)
        try:
            ready = f"http://127.0.0.1:{management}/health/ready"
            wait_for("registry ready", lambda: http_json(ready)[0] == 200, [registry])
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/apis/ccompat/v7/subjects/acl-test-value/versions",
                data=json.dumps({"schema": '{"type": "string"}'}).encode(),
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                assert "id" in json.loads(response.read())
        finally:
            registry.terminate()
            try:
                registry.wait(30)
            except subprocess.TimeoutExpired:
                registry.kill()
                registry.wait(10)
    assert records(cluster, "kafkasql-journal") >= 1
