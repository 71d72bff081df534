-- Alerts per root cause: per root-cause device, the alerts opened in the window, how many were
-- outages (state down at open), and the subscribers affected (each alert's peak, summed).
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    root_device_id,
    any(root_device_name) AS root_device_name,
    any(pop) AS pop,
    count() AS alerts,
    countIf(opened_state = 'down') AS down_alerts,
    sum(peak_subscribers) AS subscribers_affected,
    max(peak_devices) AS max_devices_affected
FROM
(
    SELECT
        alert_id,
        any(root_device_id) AS root_device_id,
        any(ifNull(root_device_name, '')) AS root_device_name,
        any(ifNull(pop_name, '')) AS pop,
        argMin(state, envelope_occurred_at) AS opened_state,
        max(affected_subscriber_count) AS peak_subscribers,
        max(affected_device_count) AS peak_devices
    FROM net_alerts FINAL
    WHERE opened_at >= toDateTime(%(start)s) AND opened_at < toDateTime(%(end)s)
    GROUP BY alert_id
)
GROUP BY root_device_id
ORDER BY alerts DESC, subscribers_affected DESC, root_device_id
