"""Structured logs of every Filas process, on their way to ClickHouse."""

from filas.catalog.spec import DAY_MS, GIB, TopicSpec

LOGS = TopicSpec(
    name="filas.logs",
    value_schema="ixc.filas.log.LogRecord",
    key_field="service",
    partitions=6,
    retention_ms=3 * DAY_MS,
    retention_bytes=2 * GIB,
    # A log that cannot be decoded is not worth a second queue; the sink counts and skips it.
    dead_letter=False,
    description="Structured JSON logs from every Filas process.",
)

TOPICS = (LOGS,)
