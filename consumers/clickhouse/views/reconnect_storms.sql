-- Reconnect storms: minutes in which one NAS saw a burst of Access-Requests from many logins.
-- A (NAS, minute) is a storm when at least min_logins distinct logins asked and the requests are
-- at least factor times that NAS's average requests per minute over the whole window.
-- params: start, end (DateTime, UTC; end excluded), min_logins (e.g. 50), factor (e.g. 3)
SELECT
    nas_ip_address,
    minute,
    requests,
    logins,
    round(baseline_per_minute, 2) AS baseline_per_minute,
    round(requests / baseline_per_minute, 2) AS times_baseline
FROM
(
    SELECT
        nas_ip_address,
        toStartOfMinute(envelope_occurred_at) AS minute,
        count() AS requests,
        uniqExact(login) AS logins
    FROM radius_auth_requests FINAL
    WHERE envelope_occurred_at >= toDateTime(%(start)s)
      AND envelope_occurred_at < toDateTime(%(end)s)
    GROUP BY nas_ip_address, minute
)
ANY LEFT JOIN
(
    SELECT
        nas_ip_address,
        count() / ((toUInt32(toDateTime(%(end)s)) - toUInt32(toDateTime(%(start)s))) / 60)
            AS baseline_per_minute
    FROM radius_auth_requests FINAL
    WHERE envelope_occurred_at >= toDateTime(%(start)s)
      AND envelope_occurred_at < toDateTime(%(end)s)
    GROUP BY nas_ip_address
) USING nas_ip_address
WHERE logins >= %(min_logins)s AND requests >= %(factor)s * baseline_per_minute
ORDER BY minute, nas_ip_address
