"""Lag and throughput history for the status page, read from the sink's ClickHouse lag table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from filas.catalog import Catalog
from filas.catalog.monitoring import LAG_SAMPLES

# Points per chart: the window is cut into this many buckets (at least one second each).
POINTS = 120


class Queryable(Protocol):
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    at: int
    """Bucket start, epoch seconds (UTC)."""
    group: str
    lag: float
    """Mean over the bucket's passes of the group's total lag (all its topics and partitions)."""
    consume_rate: float
    """Mean over the bucket's passes of the group's commit growth, records/s."""


def lag_table(catalog: Catalog) -> str:
    """The ClickHouse table the sink lands ``filas.monitoring.lag`` in (sink naming rule)."""
    from consumers.clickhouse.tables import table_name

    return table_name(catalog.resolve(LAG_SAMPLES).name)


def bucket_seconds(minutes: int) -> int:
    return max(1, minutes * 60 // POINTS)


# Valid on ClickHouse 18.16: no window functions, no toStartOfInterval. The inner query sums one
# pass (same occurred_at) per group; the outer one averages the passes of a bucket.
_SQL = """
SELECT bucket, consumer_group, avg(pass_lag), avg(pass_consume)
FROM (
    SELECT
        intDiv(toUInt32(envelope_occurred_at), %(bucket)s) * %(bucket)s AS bucket,
        envelope_occurred_at AS at,
        consumer_group,
        sum(lag) AS pass_lag,
        sum(ifNull(consume_rate, 0)) AS pass_consume
    FROM {table} FINAL
    WHERE envelope_occurred_at >= now() - %(seconds)s
    GROUP BY bucket, at, consumer_group
)
GROUP BY bucket, consumer_group
ORDER BY consumer_group, bucket
"""


def lag_history(clickhouse: Queryable, table: str, minutes: int) -> list[HistoryPoint]:
    """Per group, lag and consume rate over the last ``minutes`` in about POINTS buckets."""
    from consumers.clickhouse.client import quote

    rows: Sequence[tuple[Any, ...]] = clickhouse.query(
        _SQL.format(table=quote(table)),
        {"bucket": bucket_seconds(minutes), "seconds": minutes * 60},
    )
    return [HistoryPoint(int(b), str(g), float(lag), float(c)) for b, g, lag, c in rows]
