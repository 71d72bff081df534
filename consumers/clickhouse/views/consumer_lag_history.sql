-- Consumer lag history: per consumer group, topic and minute, the lag summed over partitions
-- (each partition's last sample in the minute) and the consume and produce rates (records/s),
-- from the lag collector's samples (filas.monitoring.lag).
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    consumer_group,
    topic,
    minute,
    sum(partition_lag) AS lag,
    round(sum(partition_consume_rate), 3) AS consume_rate,
    round(sum(partition_produce_rate), 3) AS produce_rate,
    count() AS partitions
FROM
(
    SELECT
        consumer_group,
        topic,
        `partition`,
        toStartOfMinute(envelope_occurred_at) AS minute,
        argMax(lag, envelope_occurred_at) AS partition_lag,
        argMax(ifNull(consume_rate, 0), envelope_occurred_at) AS partition_consume_rate,
        argMax(ifNull(produce_rate, 0), envelope_occurred_at) AS partition_produce_rate
    FROM filas_monitoring_lag FINAL
    WHERE envelope_occurred_at >= toDateTime(%(start)s)
      AND envelope_occurred_at < toDateTime(%(end)s)
    GROUP BY consumer_group, topic, `partition`, minute
)
GROUP BY consumer_group, topic, minute
ORDER BY consumer_group, topic, minute
