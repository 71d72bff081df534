"""Lag/rate arithmetic and the bottleneck rules on hand-made snapshots (no Kafka)."""

from __future__ import annotations

import json

from filas.monitoring.report import document
from filas.monitoring.rules import Thresholds, evaluate
from filas.monitoring.samples import (
    GroupOffsets,
    GroupTopicStatus,
    PartitionLag,
    Snapshot,
    compute_status,
    lag_of,
    rate,
)


def _snap(
    t: float,
    ends: dict[int, int],
    committed: dict[int, int],
    members: int = 1,
    topic: str = "radius.accounting",
    group: str = "sink",
) -> Snapshot:
    return Snapshot(
        taken_at=t,
        wall_time=1_700_000_000 + t,
        partitions={topic: len(ends)},
        end_offsets={(topic, p): o for p, o in ends.items()},
        groups={
            group: GroupOffsets(
                group, "STABLE", members, {(topic, p): o for p, o in committed.items()}
            )
        },
    )


def _status(
    lags: list[int],
    *,
    lag_rate: float | None,
    consume_rate: float | None,
    members: int,
    partitions: int | None = None,
) -> GroupTopicStatus:
    return GroupTopicStatus(
        group="g",
        topic="t",
        state="STABLE",
        members=members,
        partitions=partitions if partitions is not None else len(lags),
        lag=sum(lags),
        lag_rate=lag_rate,
        consume_rate=consume_rate,
        partition_lags=tuple(PartitionLag("t", p, 0, lag, lag, None) for p, lag in enumerate(lags)),
    )


def test_rate_and_lag_edge_cases() -> None:
    assert rate(100, 150, 10) == 5.0
    assert rate(100, 150, 0) is None
    assert lag_of(committed=90, end_offset=100) == 10
    assert lag_of(committed=120, end_offset=100) == 0  # never negative


def test_single_snapshot_has_lag_but_no_rates() -> None:
    status = compute_status(None, _snap(0, {0: 100, 1: 50}, {0: 40, 1: 50}))
    [group] = status.groups
    assert group.lag == 60
    assert group.lag_rate is None
    assert group.consume_rate is None
    assert status.topics[0].end_offset == 150
    assert status.topics[0].produce_rate is None
    assert evaluate(status.groups) == []  # no rates, no verdict


def test_rates_between_two_snapshots() -> None:
    before = _snap(0, {0: 100, 1: 100}, {0: 100, 1: 100})
    after = _snap(10, {0: 600, 1: 600}, {0: 300, 1: 300})
    status = compute_status(before, after)
    assert status.interval_s == 10
    assert status.topics[0].produce_rate == 100.0  # 1000 records in 10 s
    [group] = status.groups
    assert group.consume_rate == 40.0  # 400 commits in 10 s
    assert group.lag == 600
    assert group.lag_rate == 60.0  # 0 -> 600 in 10 s
    assert [p.lag for p in group.partition_lags] == [300, 300]


def test_partition_never_committed_counts_from_log_start() -> None:
    before = _snap(0, {0: 100, 1: 300}, {0: 100})
    after = _snap(2, {0: 100, 1: 400}, {0: 100})
    after = Snapshot(
        after.taken_at,
        after.wall_time,
        after.partitions,
        after.end_offsets,
        after.groups,
        start_offsets={("radius.accounting", 1): 50},
    )
    [group] = compute_status(before, after).groups
    never = group.partition_lags[1]
    assert never.committed is None
    assert never.lag == 350  # 400 - log start 50
    assert group.lag == 350
    assert group.consume_rate == 0.0


def test_new_partition_does_not_inflate_produce_rate() -> None:
    before = _snap(0, {0: 100}, {0: 100})
    after = _snap(1, {0: 110, 1: 5000}, {0: 110})
    assert compute_status(before, after).topics[0].produce_rate == 10.0


def test_stalled_group_is_named_with_evidence() -> None:
    before = _snap(0, {0: 1000, 1: 1000}, {0: 500, 1: 500}, members=0)
    after = _snap(5, {0: 1500, 1: 1500}, {0: 500, 1: 500}, members=0)
    [finding] = evaluate(compute_status(before, after).groups)
    assert finding.rule == "group_stalled"
    assert finding.group == "sink"
    assert finding.topic == "radius.accounting"
    assert finding.evidence["lag"] == 2000
    assert finding.evidence["lag_rate"] == 200.0
    assert "no member is running" in finding.fix


def test_caught_up_idle_group_is_not_stalled() -> None:
    before = _snap(0, {0: 1000}, {0: 1000})
    after = _snap(5, {0: 1000}, {0: 1000})
    assert evaluate(compute_status(before, after).groups) == []


def test_saturated_group_with_spare_partitions_scales_out() -> None:
    s = _status([500] * 6, lag_rate=50.0, consume_rate=200.0, members=2)
    [finding] = evaluate([s], peaks={("g", "t"): 205.0})
    assert finding.rule == "scale_out"
    assert "up to 6 partitions" in finding.fix
    assert finding.evidence["members"] == 2


def test_saturated_group_with_a_consumer_per_partition_adds_partitions() -> None:
    s = _status([500] * 3, lag_rate=50.0, consume_rate=200.0, members=3)
    [finding] = evaluate([s])
    assert finding.rule == "add_partitions"


def test_group_consuming_below_its_peak_is_not_called_saturated() -> None:
    s = _status([500] * 6, lag_rate=50.0, consume_rate=100.0, members=2)
    assert evaluate([s], peaks={("g", "t"): 400.0}) == []


def test_slowly_growing_lag_is_noise() -> None:
    s = _status([500] * 6, lag_rate=0.5, consume_rate=200.0, members=2)
    assert evaluate([s]) == []


def test_hot_key_names_the_partition() -> None:
    s = _status([0, 5, 4000, 2], lag_rate=0.0, consume_rate=100.0, members=4)
    [finding] = evaluate([s])
    assert finding.rule == "hot_key"
    assert finding.partition == 2
    assert "partition 2" in finding.fix


def test_evenly_spread_lag_is_not_a_hot_key() -> None:
    s = _status([4000, 3500, 4200], lag_rate=0.0, consume_rate=100.0, members=3)
    assert evaluate([s]) == []
    small = _status([0, 0, 200], lag_rate=0.0, consume_rate=100.0, members=3)
    assert evaluate([small], thresholds=Thresholds(hot_min_lag=1000)) == []


def test_document_is_plain_json() -> None:
    before = _snap(0, {0: 1000}, {0: 500})
    after = _snap(2, {0: 1200}, {0: 500})
    status = compute_status(before, after)
    doc = json.loads(json.dumps(document(status, evaluate(status.groups))))
    [group] = doc["groups"]
    assert group["group"] == "sink"
    assert group["lag"] == 700
    assert group["partitions_detail"][0]["committed"] == 500
    assert doc["findings"][0]["rule"] == "group_stalled"
    assert doc["topics"][0]["produce_rate"] == 100.0


def test_status_tables_render_groups_and_findings() -> None:
    from rich.console import Console

    from filas.cli.status_cmd import _render

    before = _snap(0, {0: 1000}, {0: 500}, members=0)
    after = _snap(2, {0: 1200}, {0: 500}, members=0)
    status = compute_status(before, after)
    console = Console(width=200, record=True)
    console.print(_render(status, evaluate(status.groups)))
    text = console.export_text()
    assert "radius.accounting" in text
    assert "700" in text
    assert "group_stalled" in text
    assert "100.0/s" in text  # produce and lag rate
