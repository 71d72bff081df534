"""``filas topics render --k8s``: KafkaTopics and KEDA scaling generated from the catalog."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from filas.admin import k8s_render
from filas.admin.k8s_render import WORKLOADS, Scaling
from filas.catalog import Catalog
from filas.catalog.spec import CleanupPolicy
from filas.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("relative", sorted(k8s_render.render_files(Catalog.build())))
def test_committed_manifests_equal_the_render(relative: str) -> None:
    rendered = k8s_render.render_files(Catalog.build())[relative]
    committed = (BASE / relative).read_text(encoding="utf-8")
    assert committed == rendered, (
        f"deploy/base/{relative} is out of date with the topic catalog or the workload table: "
        "run `make k8s-topics` and commit the result"
    )


def test_every_catalog_topic_and_dlq_becomes_a_kafka_topic() -> None:
    catalog = Catalog.build()
    topics = {
        d["spec"]["topicName"]: d for d in map(dict, _docs(k8s_render.render_topics(catalog)))
    }
    assert set(topics) == {s.name for s in catalog}
    assert any(name.endswith(".dlq") for name in topics)
    for spec in catalog:
        topic = topics[spec.name]
        assert topic["metadata"]["name"] == k8s_render.resource_name(spec.name)
        assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", topic["metadata"]["name"])
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "filas"
        body = topic["spec"]
        assert body["partitions"] == spec.partitions
        assert body["replicas"] == spec.replication_factor == 3
        config = body["config"]
        assert config == spec.kafka_config()
        assert config["min.insync.replicas"] == "2"
        assert config["cleanup.policy"] == spec.cleanup_policy.value
        if spec.cleanup_policy is CleanupPolicy.DELETE:
            assert config["retention.ms"] == str(spec.retention_ms)


def test_lag_scaling_is_capped_at_the_partition_count() -> None:
    catalog = Catalog.build()
    docs = _docs(k8s_render.render_workloads(catalog))
    scaled = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    lag_workloads = [w for w in WORKLOADS if w.scaling is Scaling.LAG]
    assert set(scaled) == {w.name for w in lag_workloads}
    for workload in lag_workloads:
        spec = scaled[workload.name]["spec"]
        topics = k8s_render.workload_topics(workload, catalog)
        assert spec["maxReplicaCount"] == max(t.partitions for t in topics)
        triggers = spec["triggers"]
        assert [t["metadata"]["consumerGroup"] for t in triggers] == list(workload.groups)
        for trigger, source in zip(triggers, workload.lag, strict=True):
            source_topics = k8s_render.source_topics(source, catalog)
            if len(source_topics) == 1:
                assert trigger["metadata"]["topic"] == source_topics[0].name
            else:
                assert "topic" not in trigger["metadata"]
        reason = scaled[workload.name]["metadata"]["annotations"]["filas/max-replicas-reason"]
        assert f"has {spec['maxReplicaCount']} partitions" in reason


def test_cpu_scaled_group_members_are_capped_at_their_partitions() -> None:
    catalog = Catalog.build()
    docs = _docs(k8s_render.render_workloads(catalog))
    hpas = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    cpu = [w for w in WORKLOADS if w.scaling is Scaling.CPU]
    assert set(hpas) == {w.name for w in cpu}
    for workload in cpu:
        spec = hpas[workload.name]["spec"]
        assert spec["minReplicas"] <= spec["maxReplicas"]
        reason = hpas[workload.name]["metadata"]["annotations"]["filas/scaling-reason"]
        assert reason == workload.scaling_reason != ""
        assert spec["maxReplicas"] == k8s_render.max_cpu_replicas(workload, catalog)
        if workload.partition_cap is not None:
            assert spec["maxReplicas"] <= catalog.resolve(workload.partition_cap).partitions


def test_a_cpu_cap_follows_the_partitions() -> None:
    """The pinger asks for 12; ixc.devices with 4 partitions would cap it at 4."""
    from dataclasses import replace
    from types import MappingProxyType

    catalog = Catalog.build()
    pinger = next(w for w in WORKLOADS if w.name == "pinger")
    assert pinger.partition_cap is not None
    devices = catalog.resolve(pinger.partition_cap)
    narrow = Catalog(
        MappingProxyType({**catalog.topics, devices.name: replace(devices, partitions=4)}), ""
    )
    assert k8s_render.cpu_autoscaler(pinger, narrow)["spec"]["maxReplicas"] == 4


def test_lane_groups_match_the_lane_consumers() -> None:
    """Delivery and request workers read one group per lane: KEDA must watch each of them."""
    by_name = {w.name: w for w in WORKLOADS}
    assert by_name["delivery-email"].groups == (
        "filas-delivery-email.transactional",
        "filas-delivery-email.bulk",
    )
    assert by_name["ixc-requests"].groups == ("filas-ixc-requests.high", "filas-ixc-requests.bulk")


def test_the_cap_follows_the_catalog() -> None:
    """More partitions in the catalog raise the cap on the next render (no hand edit)."""
    catalog = Catalog.build()
    coa = next(w for w in WORKLOADS if w.name == "radius-coa")
    (topic,) = k8s_render.workload_topics(coa, catalog)
    assert k8s_render.scaled_object(coa, catalog)["spec"]["maxReplicaCount"] == topic.partitions
    from dataclasses import replace
    from types import MappingProxyType

    wider = Catalog(
        MappingProxyType({**catalog.topics, topic.name: replace(topic, partitions=24)}), ""
    )
    assert k8s_render.scaled_object(coa, wider)["spec"]["maxReplicaCount"] == 24


def test_every_workload_runs_a_real_filas_command() -> None:
    from tests.unit.test_deploy_container import _resolve

    for workload in WORKLOADS:
        command = _resolve(list(workload.command))
        options = {o for p in command.params for o in getattr(p, "opts", ())}
        given = [w for w in workload.command if w.startswith("--")]
        assert set(given) <= options, (workload.name, given)


def test_workload_names_and_groups_are_unique() -> None:
    names = [w.name for w in WORKLOADS]
    groups = [g for w in WORKLOADS for g in w.groups]
    assert len(names) == len(set(names))
    assert len(groups) == len(set(groups))
    for w in WORKLOADS:
        assert w.scaling is not Scaling.LAG or w.lag, w.name
        assert w.scaling is Scaling.LAG or w.scaling_reason, w.name


def test_cli_prints_the_topics_and_writes_the_base(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["topics", "render", "--k8s"], env={"FILAS_TOPICS__PREFIX": "x."})
    assert result.exit_code == 0, result.output
    assert result.output == k8s_render.render_topics(Catalog.build())  # prefix-free on purpose
    result = runner.invoke(cli, ["topics", "render", "--k8s", "--write", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for relative, text in k8s_render.render_files(Catalog.build()).items():
        assert (tmp_path / relative).read_text(encoding="utf-8") == text


def test_render_requires_a_format() -> None:
    result = CliRunner().invoke(cli, ["topics", "render"])
    assert result.exit_code != 0
    assert "--k8s" in result.output


def test_the_deploy_guide_lists_every_workload() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for workload in WORKLOADS:
        assert f"| `{workload.name}` | `filas {' '.join(workload.command)}`" in guide, (
            f"docs/deploy.md's 'What runs' table lacks {workload.name}"
        )


def test_readiness_uses_a_port_the_container_declares() -> None:
    for workload in WORKLOADS:
        container = k8s_render.deployment(workload)["spec"]["template"]["spec"]["containers"][0]
        port = container["readinessProbe"]["httpGet"]["port"]
        assert port in {p["name"] for p in container["ports"]}, workload.name


def test_keda_counts_lag_from_where_each_group_starts() -> None:
    """CoA's group starts at the end (old blocks never replayed); KEDA must not count history."""
    from filas.settings import RadiusSettings

    coa = next(w for w in WORKLOADS if w.name == "radius-coa")
    (trigger,) = k8s_render.scaled_object(coa, Catalog.build())["spec"]["triggers"]
    assert trigger["metadata"]["offsetResetPolicy"] == RadiusSettings().coa_start_from == "latest"
    sink = next(w for w in WORKLOADS if w.name == "clickhouse-sink")
    (trigger,) = k8s_render.scaled_object(sink, Catalog.build())["spec"]["triggers"]
    assert trigger["metadata"]["offsetResetPolicy"] == "earliest"


def test_resource_names_are_valid_kubernetes_names() -> None:
    assert k8s_render.resource_name("radius.auth-requests") == "radius.auth-requests"
    assert k8s_render.resource_name("Billing_Invoices.dlq") == "billing-invoices.dlq"
