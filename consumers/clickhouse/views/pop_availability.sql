-- POP availability: per POP, the share of all its devices' ping rounds answered, and how many
-- devices were probed and how many never answered in the window. Devices without a POP in
-- ixc.devices are grouped under ''.
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    pop_id,
    count() AS devices,
    countIf(device_up_rounds = 0) AS devices_never_up,
    sum(device_rounds) AS rounds,
    round(sum(device_up_rounds) / rounds, 4) AS availability
FROM
(
    SELECT
        device_id,
        count() AS device_rounds,
        countIf(probes_received > 0) AS device_up_rounds
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
GROUP BY pop_id
ORDER BY availability, pop_id
