-- Auth success rate and latency per NAS per minute.
-- One row per (NAS, minute) with at least one decision: decisions, accepts, rejects, the share
-- accepted, and the gateway's latency (packet in -> reply out) in milliseconds.
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    nas_ip_address,
    toStartOfMinute(envelope_occurred_at) AS minute,
    count() AS decisions,
    countIf(decision = 'accept') AS accepts,
    countIf(decision = 'reject') AS rejects,
    round(accepts / decisions, 4) AS success_rate,
    round(avg(latency_us) / 1000, 3) AS latency_avg_ms,
    quantileExact(0.5)(latency_us) / 1000 AS latency_p50_ms,
    quantileExact(0.99)(latency_us) / 1000 AS latency_p99_ms
FROM radius_auth_decisions FINAL
WHERE envelope_occurred_at >= toDateTime(%(start)s)
  AND envelope_occurred_at < toDateTime(%(end)s)
GROUP BY nas_ip_address, minute
ORDER BY nas_ip_address, minute
