"""The ClickHouse sink: every event family into one ReplacingMergeTree table per topic."""
