-- Top reject reasons: why Access-Requests were refused, most frequent first, with their share of
-- all rejects and how many logins and NASes each touched.
-- params: start, end (DateTime, UTC; end excluded), limit (e.g. 10)
SELECT
    reason,
    count() AS rejects,
    round(rejects / (
        SELECT count() FROM radius_auth_decisions FINAL
        WHERE decision = 'reject'
          AND envelope_occurred_at >= toDateTime(%(start)s)
          AND envelope_occurred_at < toDateTime(%(end)s)
    ), 4) AS share,
    uniqExact(login) AS logins,
    uniqExact(nas_ip_address) AS nases
FROM radius_auth_decisions FINAL
WHERE decision = 'reject'
  AND envelope_occurred_at >= toDateTime(%(start)s)
  AND envelope_occurred_at < toDateTime(%(end)s)
GROUP BY reason
ORDER BY rejects DESC, reason
LIMIT %(limit)s
