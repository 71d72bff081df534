"""Priority lanes against real Kafka: a higher lane overtakes a lower lane's backlog, and each
lane's group resumes from its own committed offsets."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog
from filas.catalog.campaigns import MESSAGE_LANES
from filas.lanes import LaneConsumer
from filas.settings import Settings

pytestmark = pytest.mark.integration

# Work per lower-lane batch of 50 (2,500 records/s): the backlog takes over a second to drain.
WORK_S = 0.02


def test_higher_lane_overtakes_a_lower_backlog_and_groups_resume(
    platform: Settings, unique_name: str
) -> None:
    catalog = Catalog.build(unique_name)
    high, bulk = (catalog.resolve(s) for s in MESSAGE_LANES)
    TopicAdmin(platform.kafka).apply(catalog.only(high, bulk))
    producer = Producer(dict(platform.kafka.client_config()))
    for i in range(5000):
        producer.produce(bulk.name, key=str(i), value=b"bulk")
    producer.flush(30)
    group = f"{unique_name}lanes"
    lanes = LaneConsumer(platform.kafka.client_config(), group, (high, bulk))
    lanes.subscribe()
    bulk_seen = 0
    try:
        deadline = time.monotonic() + 60
        # A long-running worker: both lanes' groups have their partitions and the higher lane
        # has started fetching (offset lookup done) a while ago.
        assigned_at: float | None = None
        while bulk_seen < 200 or assigned_at is None or time.monotonic() - assigned_at < 1.0:
            if assigned_at is None and lanes.assignment(0):
                assigned_at = time.monotonic()
            assert time.monotonic() < deadline, "bulk lane never delivered"
            batch = lanes.poll([500, 50], timeout_s=0.5)
            if batch is not None:
                assert batch.lane == 1
                bulk_seen += len(batch.messages)
                time.sleep(WORK_S)
        for i in range(5):
            producer.produce(high.name, key=f"h{i}", value=b"urgent")
        producer.flush(10)
        urgent = 0
        bulk_before_urgent = 0
        while urgent < 5:
            assert time.monotonic() < deadline, "higher lane never delivered"
            batch = lanes.poll([500, 50], timeout_s=0.5)
            if batch is None:
                continue
            if batch.lane == 0:
                urgent += len(batch.messages)
            else:
                bulk_before_urgent += len(batch.messages)
                time.sleep(WORK_S)
        # The backlog (thousands left, seconds of work) did not stand in front: a few lower
        # batches at most while the higher lane's fetch arrived.
        assert bulk_before_urgent < 1000
        lanes.commit(1, {0: 1})  # lane-local offsets: only the bulk group moves
    finally:
        lanes.close()
    again = LaneConsumer(platform.kafka.client_config(), group, (high, bulk))
    again.subscribe()
    urgent_again = 0
    first_bulk_p0: int | None = None
    try:
        deadline = time.monotonic() + 30
        while urgent_again < 5 or first_bulk_p0 is None:
            assert time.monotonic() < deadline, "the groups did not resume"
            batch = again.poll([500, 500], timeout_s=0.5)
            if batch is None:
                continue
            if batch.lane == 0:
                urgent_again += len(batch.messages)
            elif first_bulk_p0 is None:
                offsets = [m.offset() for m in batch.messages if m.partition() == 0]
                first_bulk_p0 = min(offsets) if offsets else None
    finally:
        again.close()
    # Nothing was committed on the high lane: its five records come again; the bulk group
    # resumes partition 0 from its own commit.
    assert urgent_again == 5
    assert first_bulk_p0 == 1
