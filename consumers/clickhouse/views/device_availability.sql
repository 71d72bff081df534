-- Device availability: per probed device, the share of ping rounds with at least one reply,
-- its mean round trip, and the POP it belongs to (latest ixc.devices record).
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    device_id,
    pop_id,
    rounds,
    up_rounds,
    round(up_rounds / rounds, 4) AS availability,
    rtt_avg_ms
FROM
(
    SELECT
        device_id,
        count() AS rounds,
        countIf(probes_received > 0) AS up_rounds,
        round(avg(rtt_avg_ms), 3) AS rtt_avg_ms
    FROM net_ping_results FINAL
    WHERE envelope_occurred_at >= toDateTime(%(start)s)
      AND envelope_occurred_at < toDateTime(%(end)s)
    GROUP BY device_id
)
ANY LEFT JOIN
(
    SELECT device_id, argMax(ifNull(pop_id, ''), envelope_occurred_at) AS pop_id
    FROM ixc_devices FINAL
    GROUP BY device_id
) USING device_id
ORDER BY availability, device_id
