"""deploy/: every kustomization builds, validates and references only what exists.

CI has no kubectl, so ``build`` resolves the kustomize subset deploy/ uses (resources, namespace,
labels, images, strategic-merge patches) in Python; its output was checked against
``kubectl kustomize`` (v5.5) when it was written. Core kinds are validated against the
Kubernetes JSON schemas bundled by kubernetes-validate (offline); Strimzi, KEDA and Altinity
resources are checked structurally (the fields their operators require).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = ("base", "overlays/homologation", "overlays/production")
OVERLAYS = ("overlays/homologation", "overlays/production")
KUBERNETES_VERSION = "1.30"
# Kinds served by Kubernetes itself (validated against its schemas); the rest are CRDs.
CORE_API_GROUPS = {"v1", "apps/v1", "policy/v1", "autoscaling/v2", "batch/v1"}
CLUSTER_SCOPED = {"Namespace"}
# The keys of the Secret Strimzi's user operator writes for each SCRAM KafkaUser (same name).
STRIMZI_USER_SECRET_KEYS = {"password", "sasl.jaas.config"}

Manifest = dict[str, Any]


# --- a small kustomize --------------------------------------------------------------------------


def _load_docs(path: Path) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _merge(base: Any, patch: Any, *, by_name: bool) -> Any:
    """Strategic merge for built-in kinds (lists of named items merge by name), JSON merge
    patch for custom resources (lists are replaced): what kustomize does without CRD schemas."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value, by_name=by_name)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if (
        by_name
        and isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        merged = {i["name"]: i for i in base}
        for item in patch:
            merged[item["name"]] = _merge(merged.get(item["name"], {}), item, by_name=True)
        return list(merged.values())
    return copy.deepcopy(patch)


def _is_core(doc: Manifest) -> bool:
    return str(doc["apiVersion"]) in CORE_API_GROUPS


def _set_images(node: Any, images: list[dict[str, str]]) -> None:
    if isinstance(node, dict):
        for key in ("containers", "initContainers"):
            for container in node.get(key, []) if isinstance(node.get(key), list) else []:
                name = re.split(r"[:@]", container.get("image", ""), maxsplit=1)[0]
                for image in images:
                    if image["name"] == name:
                        container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
        for value in node.values():
            _set_images(value, images)
    elif isinstance(node, list):
        for value in node:
            _set_images(value, images)


def build(directory: Path) -> list[Manifest]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    allowed = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
    unknown = set(kustomization) - allowed
    assert not unknown, f"{directory}: kustomize fields this test does not model: {unknown}"
    docs: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        docs += build(path) if path.is_dir() else _load_docs(path)
    for patch in kustomization.get("patches", []):
        for body in _load_docs(directory / patch["path"]):
            targets = [
                d
                for d in docs
                if d["kind"] == body["kind"] and d["metadata"]["name"] == body["metadata"]["name"]
            ]
            assert len(targets) == 1, f"{patch['path']} matches {len(targets)} resources"
            index = docs.index(targets[0])
            docs[index] = _merge(targets[0], body, by_name=_is_core(targets[0]))
    for label in kustomization.get("labels", []):
        assert not label.get("includeSelectors", False)
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    if "images" in kustomization:
        for doc in docs:
            _set_images(doc, kustomization["images"])
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


@pytest.fixture(scope="module")
def builds() -> dict[str, list[Manifest]]:
    return {k: build(DEPLOY / k) for k in KUSTOMIZATIONS}


def _all(builds: dict[str, list[Manifest]]) -> Iterator[tuple[str, Manifest]]:
    for name, docs in builds.items():
        for doc in docs:
            yield name, doc


def _by_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_spec(doc: Manifest) -> Manifest:
    spec: Manifest = doc["spec"]["template"]["spec"]
    return spec


# --- the small kustomize itself -----------------------------------------------------------------


def test_merge_is_strategic_for_core_kinds_and_json_merge_for_crds() -> None:
    base = {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}
    patch = {"spec": {"containers": [{"name": "b", "image": "z"}]}}
    assert _merge(base, patch, by_name=True)["spec"]["containers"] == [
        {"name": "a", "image": "x"},
        {"name": "b", "image": "z"},
    ]
    assert _merge(base, patch, by_name=False)["spec"]["containers"] == [{"name": "b", "image": "z"}]
    assert _merge({"a": 1, "b": 2}, {"b": None}, by_name=True) == {"a": 1}


# --- every kustomization -----------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomization_builds_without_duplicates(
    builds: dict[str, list[Manifest]], kustomization: str
) -> None:
    docs = builds[kustomization]
    keys = [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs]
    duplicates = {k for k in keys if keys.count(k) > 1}
    assert not duplicates
    kinds = {d["kind"] for d in docs}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Deployment", "ScaledObject"} <= kinds
    assert {"ClickHouseInstallation", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_put_everything_in_their_namespace(
    builds: dict[str, list[Manifest]], overlay: str
) -> None:
    namespaces = _by_kind(builds[overlay], "Namespace")
    assert len(namespaces) == 1
    (namespace,) = namespaces
    for doc in builds[overlay]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]


def test_core_manifests_validate_against_the_kubernetes_schemas(
    builds: dict[str, list[Manifest]],
) -> None:
    validated = 0
    for name, doc in _all(builds):
        if not _is_core(doc):
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
        validated += 1
    assert validated > 30


def test_the_validator_rejects_a_broken_deployment() -> None:
    """The schema check above can fail: a misspelt field is refused in strict mode."""
    docs = build(DEPLOY / "base")
    deployment = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    _pod_spec(deployment)["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- custom resources, structurally ------------------------------------------------------------


def _require(doc: Manifest, *paths: str) -> None:
    for path in paths:
        node: Any = doc
        for part in path.split("."):
            where = f"{doc['kind']}/{doc['metadata']['name']}: missing {path}"
            assert isinstance(node, dict), where
            assert part in node, where
            node = node[part]


def test_strimzi_resources(builds: dict[str, list[Manifest]]) -> None:
    for name, docs in builds.items():
        (kafka,) = _by_kind(docs, "Kafka").values()
        cluster = kafka["metadata"]["name"]
        assert kafka["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
        assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
        _require(kafka, "spec.kafka.version", "spec.kafka.listeners", "spec.entityOperator")
        assert "zookeeper" not in kafka["spec"]
        for listener in kafka["spec"]["kafka"]["listeners"]:
            assert {"name", "port", "type", "tls"} <= set(listener)
        config = kafka["spec"]["kafka"]["config"]
        assert config["default.replication.factor"] == 3
        assert config["min.insync.replicas"] == 2
        assert config["auto.create.topics.enable"] is False
        pools = _by_kind(docs, "KafkaNodePool").values()
        assert sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]) == 3
        for pool in pools:
            assert pool["metadata"]["labels"]["strimzi.io/cluster"] == cluster
            assert set(pool["spec"]["roles"]) <= {"broker", "controller"}
            _require(pool, "spec.storage.type")
        assert any("controller" in p["spec"]["roles"] for p in pools), name
        for kind in ("KafkaTopic", "KafkaUser"):
            for doc in _by_kind(docs, kind).values():
                assert doc["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        for topic in _by_kind(docs, "KafkaTopic").values():
            spec = topic["spec"]
            assert isinstance(spec["partitions"], int)
            assert spec["partitions"] >= 1
            assert spec["replicas"] == 3
            assert spec["config"]["min.insync.replicas"] == "2"


def test_keda_resources(builds: dict[str, list[Manifest]]) -> None:
    for docs in builds.values():
        deployments = _by_kind(docs, "Deployment")
        auths = _by_kind(docs, "TriggerAuthentication")
        secrets = _by_kind(docs, "Secret")
        groups = []
        for scaled in _by_kind(docs, "ScaledObject").values():
            spec = scaled["spec"]
            assert spec["scaleTargetRef"]["name"] in deployments
            assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
            assert "filas/max-replicas-reason" in scaled["metadata"]["annotations"]
            for trigger in spec["triggers"]:
                assert trigger["type"] == "kafka"
                meta = trigger["metadata"]
                assert {"bootstrapServers", "consumerGroup", "lagThreshold"} <= set(meta)
                assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata is strings"
                assert meta["allowIdleConsumers"] == "false"
                assert trigger["authenticationRef"]["name"] in auths
                groups.append(meta["consumerGroup"])
        assert len(groups) == len(set(groups)), "one ScaledObject per consumer group"
        users = _user_secrets(docs)
        for auth in auths.values():
            for ref in auth["spec"]["secretTargetRef"]:
                assert {"parameter", "name", "key"} <= set(ref)
                if ref["name"] in users:
                    assert ref["key"] in users[ref["name"]]
                else:
                    assert ref["key"] in secrets[ref["name"]]["stringData"]


def test_clickhouse_installation(builds: dict[str, list[Manifest]]) -> None:
    for docs in builds.values():
        (chi,) = _by_kind(docs, "ClickHouseInstallation").values()
        assert chi["apiVersion"] == "clickhouse.altinity.com/v1"
        _require(chi, "spec.configuration.clusters", "spec.defaults.templates", "spec.templates")
        for cluster in chi["spec"]["configuration"]["clusters"]:
            assert {"shardsCount", "replicasCount"} <= set(cluster["layout"])
        templates = chi["spec"]["templates"]
        wanted = chi["spec"]["defaults"]["templates"]
        assert wanted["podTemplate"] in {t["name"] for t in templates["podTemplates"]}
        claims = {t["name"] for t in templates["volumeClaimTemplates"]}
        assert wanted["dataVolumeClaimTemplate"] in claims
        password = chi["spec"]["configuration"]["users"]["filas/password"]
        assert password == {
            "valueFrom": {"secretKeyRef": {"name": "filas-clickhouse", "key": "password"}}
        }


# --- references between manifests ---------------------------------------------------------------


def _user_secrets(docs: list[Manifest]) -> dict[str, set[str]]:
    """The Secrets Strimzi writes: one per KafkaUser, named after it."""
    return dict.fromkeys(_by_kind(docs, "KafkaUser"), STRIMZI_USER_SECRET_KEYS)


def _production_external_secrets() -> dict[str, set[str]]:
    docs = _load_docs(DEPLOY / "overlays/production/secrets.example.yaml")
    return {d["metadata"]["name"]: set(d["stringData"]) for d in docs}


def test_every_reference_resolves(builds: dict[str, list[Manifest]]) -> None:
    external = _production_external_secrets()
    for name, docs in builds.items():
        config_maps = _by_kind(docs, "ConfigMap")
        secrets = {n: set(d.get("stringData", {})) for n, d in _by_kind(docs, "Secret").items()}
        # Strimzi owns its users' Secrets: no other Secret may have one of their names.
        assert not set(_user_secrets(docs)) & (set(secrets) | set(external)), name
        secrets |= _user_secrets(docs)
        if name != "overlays/homologation":
            secrets |= external  # created out of band before `kubectl apply -k`
        for deployment in _by_kind(docs, "Deployment").values():
            for container in _pod_spec(deployment)["containers"]:
                for source in container.get("envFrom", []):
                    assert source["configMapRef"]["name"] in config_maps
                values = {e["name"]: e for e in container.get("env", [])}
                if "FILAS_KAFKA__SASL_PASSWORD" in values:  # its own user, and its password
                    user = values["FILAS_KAFKA__SASL_USERNAME"]["value"]
                    password = values["FILAS_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
                    assert password == {"name": user, "key": "password"}
                    assert user in _by_kind(docs, "KafkaUser")
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref is None:
                        continue
                    assert ref["key"] in secrets.get(ref["name"], set()), (
                        f"{name}: {deployment['metadata']['name']} needs secret "
                        f"{ref['name']}/{ref['key']}"
                    )
            for volume in _pod_spec(deployment).get("volumes", []):
                claim = volume.get("persistentVolumeClaim")
                if claim is not None:
                    assert claim["claimName"] in _by_kind(docs, "PersistentVolumeClaim")
        deployments = _by_kind(docs, "Deployment")
        pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
        for kind in ("Service", "PodDisruptionBudget"):
            for doc in _by_kind(docs, kind).values():
                selector = doc["spec"]["selector"]
                selector = selector.get("matchLabels", selector)
                assert any(selector.items() <= labels.items() for labels in pod_labels), (
                    f"{name}: {kind}/{doc['metadata']['name']} selects no pod"
                )
        for hpa in _by_kind(docs, "HorizontalPodAutoscaler").values():
            assert hpa["spec"]["scaleTargetRef"]["name"] in deployments


def test_filas_workloads_are_production_shaped(builds: dict[str, list[Manifest]]) -> None:
    for docs in builds.values():
        pdbs = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
                for d in _by_kind(docs, "PodDisruptionBudget").values()}  # fmt: skip
        scaled = {
            d["spec"]["scaleTargetRef"]["name"] for d in _by_kind(docs, "ScaledObject").values()
        }
        scaled |= {
            d["spec"]["scaleTargetRef"]["name"]
            for d in _by_kind(docs, "HorizontalPodAutoscaler").values()
        }
        for name, deployment in _by_kind(docs, "Deployment").items():
            pod = _pod_spec(deployment)
            for container in pod["containers"]:
                assert container["resources"]["requests"], name
                assert container["resources"]["limits"]["memory"], name
                assert "readinessProbe" in container, name
                assert "livenessProbe" in container, name
                assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            if container["image"].startswith("ghcr.io/ixc-filas/filas") and name != "ixc-simulator":
                assert name in pdbs, f"{name} has no PodDisruptionBudget"
                probe = container["livenessProbe"]["httpGet"]
                assert probe == {"path": "/metrics", "port": "metrics"}
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                assert ports["metrics"] == 9400
                replicas = deployment["spec"]["replicas"]
                assert name in scaled or replicas == 1, f"{name}: neither autoscaled nor single"


def test_radius_gateway_is_behind_a_udp_load_balancer(builds: dict[str, list[Manifest]]) -> None:
    for docs in builds.values():
        service = _by_kind(docs, "Service")["radius-gateway"]["spec"]
        assert service["type"] == "LoadBalancer"
        assert service["externalTrafficPolicy"] == "Local"  # the NAS's source address survives
        assert {p["protocol"] for p in service["ports"]} == {"UDP"}
        assert {p["port"] for p in service["ports"]} == {1812, 1813}
        hpa = _by_kind(docs, "HorizontalPodAutoscaler")["radius-gateway"]["spec"]
        assert hpa["metrics"][0]["resource"]["name"] == "cpu"


def test_secrets_in_git_are_placeholders(builds: dict[str, list[Manifest]]) -> None:
    for name, doc in _all(builds):
        if doc["kind"] != "Secret" or doc["metadata"]["name"] == "filas-keda-kafka":
            continue
        assert name == "overlays/homologation", f"{name} carries Secret {doc['metadata']['name']}"
        for value in doc["stringData"].values():
            assert "homologation-only" in value
    for values in _production_external_secrets().values():
        assert values
    for doc in _load_docs(DEPLOY / "overlays/production/secrets.example.yaml"):
        assert all("REPLACE-ME" in v for v in doc["stringData"].values())


def test_images_are_pinned(builds: dict[str, list[Manifest]]) -> None:
    for _, doc in _all(builds):
        if doc["kind"] != "Deployment":
            continue
        for container in _pod_spec(doc)["containers"]:
            image = container["image"]
            assert re.search(r":[\w.-]+$|@sha256:", image), image
            assert not image.endswith(":latest"), image


def _gibibytes(quantity: str) -> float:
    units = {"Gi": 1.0, "Ti": 1024.0, "Mi": 1 / 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_production_broker_disks_hold_every_queue_at_its_size_ceiling(
    builds: dict[str, list[Manifest]],
) -> None:
    from filas.catalog import Catalog

    catalog = Catalog.build()
    docs = builds["overlays/production"]
    pools = [p for p in _by_kind(docs, "KafkaNodePool").values() if "broker" in p["spec"]["roles"]]
    brokers = sum(p["spec"]["replicas"] for p in pools)
    ceiling = sum(
        s.retention_bytes * s.partitions * s.replication_factor
        for s in catalog
        if s.retention_bytes > 0
    )
    per_broker_gib = ceiling / brokers / 1024**3
    for pool in pools:
        disk = sum(_gibibytes(v["size"]) for v in pool["spec"]["storage"]["volumes"])
        assert per_broker_gib <= 0.9 * disk, (
            f"the catalog's queues may grow to {per_broker_gib:.0f} GiB per broker but "
            f"{pool['metadata']['name']} has {disk:.0f} GiB: raise "
            "deploy/overlays/production/patches/kafka-storage.yaml (docs/capacity.md)"
        )


def test_every_filas_container_runs_a_real_command(builds: dict[str, list[Manifest]]) -> None:
    from tests.unit.test_deploy_container import _resolve

    seen = set()
    for _, doc in _all(builds):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in _pod_spec(doc)["containers"]:
            if container["image"].startswith("ghcr.io/ixc-filas/filas:"):
                _resolve(container["args"])
                seen.add(doc["metadata"]["name"])
    assert {"filas-schemas", "clickhouse-sink", "radius-gateway", "ixc-simulator"} <= seen


def test_json_secrets_parse_and_cover_the_simulated_nas(builds: dict[str, list[Manifest]]) -> None:
    import json

    docs = builds["overlays/homologation"]
    secrets = _by_kind(docs, "Secret")
    json_values = (
        ("filas-radius", "nas-secrets"),
        ("filas-ingress", "tokens"),
        ("filas-ingress", "webhook-secrets"),
    )
    example_docs = _load_docs(DEPLOY / "overlays/production/secrets.example.yaml")
    examples = {d["metadata"]["name"]: d for d in example_docs}
    for source in (secrets, examples):
        for name, key in json_values:
            value = json.loads(source[name]["stringData"][key])
            assert isinstance(value, dict), (name, key)
            assert value, (name, key)
    simulator = _pod_spec(_by_kind(docs, "Deployment")["ixc-simulator"])["containers"][0]
    args = simulator["args"]
    nas_count = int(args[args.index("--nas") + 1])
    refs = json.loads(secrets["filas-radius"]["stringData"]["nas-secrets"])
    assert set(refs) == {f"ixc/nas/{i}/radius-secret" for i in range(1, nas_count + 1)}


def test_optional_prometheus_rules_use_real_metrics_and_runbooks() -> None:
    docs = build(DEPLOY / "optional/prometheus-rules")
    (rule,) = docs
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    sources = [ROOT / "filas/metrics.py", ROOT / "filas/monitoring/exporters.py"]
    defined = set()
    for source in sources:
        defined |= set(re.findall(r'"(filas_[a-z_]+)"', source.read_text(encoding="utf-8")))
    assert "filas_consumer_lag" in defined
    runbooks = (ROOT / "docs/runbooks.md").read_text(encoding="utf-8")
    alerts = []
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            alerts.append(alert["alert"])
            assert alert["labels"]["severity"] in {"warning", "critical"}
            for metric in re.findall(r"\b(filas_[a-z_]+)", alert["expr"]):
                assert metric in defined or metric.removesuffix("_total") in defined, metric
            anchor = alert["annotations"]["runbook_url"].rsplit("#", 1)[1]
            headings = re.findall(r"^## (.+)$", runbooks, re.M)
            assert anchor in {h.lower().replace(" ", "-") for h in headings}, anchor
    assert len(alerts) == len(set(alerts)) >= 4


def _strict(schema: Any) -> Any:
    """Refuse unknown fields wherever the CRD lists properties and does not preserve unknowns."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validator(name: str) -> Any:
    import json

    import jsonschema

    schema = json.loads((DEPLOY / "crd-schemas" / name).read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(_strict(schema))


def test_keda_resources_validate_against_the_keda_crds(builds: dict[str, list[Manifest]]) -> None:
    validators = {
        "ScaledObject": _crd_validator("keda/scaledobject-v1alpha1.json"),
        "TriggerAuthentication": _crd_validator("keda/triggerauthentication-v1alpha1.json"),
    }
    checked = 0
    for name, doc in _all(builds):
        validator = validators.get(doc["kind"])
        if validator is None:
            continue
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, f"{name}: {doc['kind']}/{doc['metadata']['name']}: {errors}"
        checked += 1
    assert checked >= 6
    broken = copy.deepcopy(next(d for d in build(DEPLOY / "base") if d["kind"] == "ScaledObject"))
    broken["spec"]["maxReplicasCount"] = broken["spec"].pop("maxReplicaCount")
    assert list(validators["ScaledObject"].iter_errors(broken)), "a misspelt field must fail"


def test_kafka_users_validate_against_the_strimzi_model(builds: dict[str, list[Manifest]]) -> None:
    validator = _crd_validator("strimzi/kafkauser-v1beta2.json")
    checked = 0
    for name, doc in _all(builds):
        if doc["kind"] != "KafkaUser":
            continue
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, f"{name}: KafkaUser/{doc['metadata']['name']}: {errors}"
        checked += 1
    assert checked >= 12
    user = next(d for d in build(DEPLOY / "base") if d["kind"] == "KafkaUser")
    for breaking in (
        lambda u: u["spec"]["authorization"]["acls"][0].update(operations=["Reed"]),
        lambda u: u["spec"]["authorization"]["acls"][0]["resource"].update(patternType="prefixed"),
        lambda u: u["spec"].update(acls=[]),
    ):
        broken = copy.deepcopy(user)
        breaking(broken)
        assert list(validator.iter_errors(broken)), "a misspelt field or value must fail"


def test_kafka_authorization_is_on_and_every_process_has_its_own_user(
    builds: dict[str, list[Manifest]],
) -> None:
    for name, docs in builds.items():
        (kafka,) = _by_kind(docs, "Kafka").values()
        assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}, name  # no super user
        for listener in kafka["spec"]["kafka"]["listeners"]:
            assert listener["authentication"]["type"] == "scram-sha-512", listener["name"]
        users = _by_kind(docs, "KafkaUser")
        registry = _pod_spec(_by_kind(docs, "Deployment")["apicurio-registry"])["containers"][0]
        env = {e["name"]: e for e in registry["env"]}
        jaas = env["apicurio.kafka.common.sasl.jaas.config"]["valueFrom"]["secretKeyRef"]
        assert jaas == {"name": "filas-registry", "key": "sasl.jaas.config"}
        assert jaas["name"] in users
        prefix = env["apicurio.kafkasql.consumer.group-prefix"]["value"]
        granted = [a["resource"] for a in users["filas-registry"]["spec"]["authorization"]["acls"]]
        assert {"type": "group", "name": prefix, "patternType": "prefix"} in granted
        seen = set()
        for deployment in _by_kind(docs, "Deployment").values():
            for container in _pod_spec(deployment)["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                user = env.get("FILAS_KAFKA__SASL_USERNAME")
                if user is None:
                    continue
                assert user in users, f"{name}: {deployment['metadata']['name']}"
                assert user not in seen, f"{name}: {user} shared"
                seen.add(user)
                assert users[user]["spec"]["authorization"]["acls"], user


def test_prometheus_rules_validate_against_the_operator_crd() -> None:
    validator = _crd_validator("prometheus-operator/prometheusrule-v1.json")
    (rule,) = build(DEPLOY / "optional/prometheus-rules")
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(rule)]
    assert not errors
