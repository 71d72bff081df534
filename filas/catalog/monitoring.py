"""Queue monitoring history: lag samples and bottleneck findings, landed in ClickHouse by the sink.

Written by ``filas monitor serve`` every pass. Both are history, not commands: a record that
cannot be decoded is not worth a second queue (the sink counts and skips it, like logs).
"""

from filas.catalog.spec import DAY_MS, GIB, TopicSpec

LAG_SAMPLES = TopicSpec(
    name="filas.monitoring.lag",
    value_schema="ixc.filas.monitoring.LagSample",
    key_field="consumer_group",
    partitions=3,
    retention_ms=3 * DAY_MS,
    retention_bytes=GIB,
    dead_letter=False,
    description="Per consumer group / topic / partition: committed and end offsets, lag, rates.",
)

FINDINGS = TopicSpec(
    name="filas.monitoring.findings",
    value_schema="ixc.filas.monitoring.BottleneckFinding",
    key_field="consumer_group",
    partitions=1,
    retention_ms=7 * DAY_MS,
    retention_bytes=GIB,
    dead_letter=False,
    description="Bottleneck findings (stalled group, scale out, hot key, dependency) per pass.",
)

TOPICS = (LAG_SAMPLES, FINDINGS)
