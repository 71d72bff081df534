"""Network monitoring: ping results, alerts and automatic outage responses, keyed by device."""

from filas.catalog.spec import DAY_MS, GIB, TopicSpec

PING_RESULTS = TopicSpec(
    name="net.ping-results",
    value_schema="ixc.filas.network.PingResult",
    key_field="device_id",
    partitions=12,
    retention_ms=2 * DAY_MS,
    retention_bytes=4 * GIB,
    description="One result per device per ping round (rtt, jitter, loss).",
)

ALERTS = TopicSpec(
    name="net.alerts",
    value_schema="ixc.filas.network.Alert",
    key_field="root_device_id",
    partitions=6,
    retention_ms=30 * DAY_MS,
    retention_bytes=1 * GIB,
    description="Alert open/update/resolve events, keyed by the root-cause device.",
)

RESPONSES = TopicSpec(
    name="net.responses",
    value_schema="ixc.filas.network.OutageResponse",
    key_field="root_device_id",
    partitions=6,
    retention_ms=30 * DAY_MS,
    retention_bytes=1 * GIB,
    description=(
        "Automatic outage responses (NOC notify, one notice per subscriber, pause/resume "
        "marketing, ticket), keyed by the root-cause device."
    ),
)

TOPICS = (PING_RESULTS, ALERTS, RESPONSES)
