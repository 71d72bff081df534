-- MTTR per POP and root device: alerts opened in the window, how many are resolved, and the
-- mean and worst time from open to resolve (seconds) of the resolved ones.
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    pop,
    root_device_id,
    count() AS alerts,
    countIf(is_resolved) AS resolved,
    round(avgIf(repair_s, is_resolved), 1) AS mttr_s,
    maxIf(repair_s, is_resolved) AS max_repair_s
FROM
(
    SELECT
        alert_id,
        any(root_device_id) AS root_device_id,
        argMax(ifNull(pop_name, ''), envelope_occurred_at) AS pop,
        countIf(action = 'resolve') > 0 AS is_resolved,
        toInt64(maxIf(toUInt32(assumeNotNull(resolved_at)), action = 'resolve'))
            - toInt64(toUInt32(min(opened_at))) AS repair_s
    FROM net_alerts FINAL
    WHERE opened_at >= toDateTime(%(start)s) AND opened_at < toDateTime(%(end)s)
    GROUP BY alert_id
    -- An alert folded into its parent's is closed by the merge, not repaired: not an MTTR sample.
    HAVING countIf(isNotNull(merged_into_alert_id)) = 0
)
GROUP BY pop, root_device_id
ORDER BY pop, root_device_id
