"""``filas topics render --k8s``: KafkaTopics and KEDA scaling generated from the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
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
        assert topic["metadata"]["name"] == spec.name
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
        (trigger,) = spec["triggers"]
        assert trigger["metadata"]["consumerGroup"] == workload.group
        if len(topics) == 1:
            assert trigger["metadata"]["topic"] == topics[0].name
        reason = scaled[workload.name]["metadata"]["annotations"]["filas/max-replicas-reason"]
        assert f"has {spec['maxReplicaCount']} partitions" in reason


def test_the_cap_follows_the_catalog() -> None:
    """More partitions in the catalog raise the cap on the next render (no hand edit)."""
    catalog = Catalog.build()
    coa = next(w for w in WORKLOADS if w.name == "radius-coa")
    (topic,) = k8s_render.workload_topics(coa, catalog)
    from dataclasses import replace
    from types import MappingProxyType

    wider = Catalog(
        MappingProxyType({**catalog.topics, topic.name: replace(topic, partitions=24)}), ""
    )
    assert k8s_render.scaled_object(coa, wider)["spec"]["maxReplicaCount"] == 24


def test_every_workload_runs_a_real_filas_command() -> None:
    for workload in WORKLOADS:
        command: click.Command = cli
        for word in workload.command:
            assert isinstance(command, click.Group), (workload.name, word)
            sub = command.commands.get(word)
            assert sub is not None, f"{workload.name}: no 'filas {' '.join(workload.command)}'"
            command = sub
        assert not isinstance(command, click.Group), workload.name


def test_workload_names_and_groups_are_unique() -> None:
    names = [w.name for w in WORKLOADS]
    groups = [w.group for w in WORKLOADS if w.group is not None]
    assert len(names) == len(set(names))
    assert len(groups) == len(set(groups))
    for w in WORKLOADS:
        assert (w.scaling is Scaling.LAG) == (w.group is not None), w.name


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
