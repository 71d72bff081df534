"""The reconciliation rules, without a broker."""

from filas.admin.topic_plan import Action, LiveTopic, desired_config, plan
from filas.catalog import Catalog
from filas.catalog.ixc_state import SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING


def _live(spec_name: str, partitions: int, replication: int, config: dict[str, str]) -> LiveTopic:
    return LiveTopic(spec_name, partitions, replication, config)


def test_missing_topic_is_created_with_replication_clamped_to_the_cluster() -> None:
    [change] = plan([SUBSCRIBERS], {}, broker_count=1)
    assert change.action is Action.CREATE
    assert change.partitions == SUBSCRIBERS.partitions
    assert change.replication_factor == 1
    assert change.config["cleanup.policy"] == "compact"
    assert change.config["min.insync.replicas"] == "1"
    assert "clamped" in change.detail


def test_three_brokers_get_the_spec_unchanged() -> None:
    [change] = plan([ACCOUNTING], {}, broker_count=3)
    assert change.replication_factor == 3
    assert change.config["min.insync.replicas"] == "2"
    assert "clamped" not in change.detail


def test_in_sync_topic_yields_no_change() -> None:
    live = _live(ACCOUNTING.name, ACCOUNTING.partitions, 3, desired_config(ACCOUNTING, 3))
    [change] = plan([ACCOUNTING], {ACCOUNTING.name: live}, broker_count=3)
    assert change.action is Action.IN_SYNC


def test_shrinking_is_refused_and_growing_adds_partitions() -> None:
    conf = desired_config(ACCOUNTING, 1)
    bigger = _live(ACCOUNTING.name, ACCOUNTING.partitions + 4, 1, conf)
    smaller = _live(ACCOUNTING.name, 2, 1, conf)
    assert [c.action for c in plan([ACCOUNTING], {ACCOUNTING.name: bigger}, 1)] == [Action.REFUSED]
    grow = plan([ACCOUNTING], {ACCOUNTING.name: smaller}, 1)
    assert [c.action for c in grow] == [Action.ADD_PARTITIONS]
    assert grow[0].partitions == ACCOUNTING.partitions


def test_config_drift_is_reported_key_by_key() -> None:
    conf = desired_config(ACCOUNTING, 1) | {"retention.ms": "1000"}
    live = _live(ACCOUNTING.name, ACCOUNTING.partitions, 1, conf)
    [change] = plan([ACCOUNTING], {ACCOUNTING.name: live}, 1)
    assert change.action is Action.UPDATE_CONFIG
    assert dict(change.config) == {"retention.ms": str(ACCOUNTING.retention_ms)}
    assert "'1000' ->" in change.detail


def test_catalog_prefix_and_dead_letter_topics() -> None:
    catalog = Catalog.build("t1.")
    spec = catalog.resolve(SUBSCRIBERS)
    assert spec.name == "t1.ixc.subscribers"
    dlq = catalog.dead_letter_for(SUBSCRIBERS)
    assert dlq.name == "t1.ixc.subscribers.dlq"
    assert dlq.value_schema == "ixc.filas.dlq.DeadLetter"
    names = [t.name for t in catalog]
    assert len(names) == len(set(names))
    assert all(n.startswith("t1.") for n in names)


def test_only_keeps_the_prefix_and_accepts_specs_or_names() -> None:
    catalog = Catalog.build("t2.")
    only = catalog.only(SUBSCRIBERS, "radius.accounting")
    assert sorted(only.topics) == ["t2.ixc.subscribers", "t2.radius.accounting"]
    assert only.prefix == "t2."
    assert only.resolve(SUBSCRIBERS) is catalog.resolve(SUBSCRIBERS)
