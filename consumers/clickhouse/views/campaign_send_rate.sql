-- Campaign send rate: per campaign and minute, messages the providers accepted for the first
-- time (status sent or delivered; a later 'delivered' of the same message is not a second send),
-- and the rate in messages per second. Failures and skips are in campaign_funnel.
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    campaign_id,
    toStartOfMinute(accepted_at) AS minute,
    count() AS sent,
    round(sent / 60, 3) AS sent_per_s
FROM
(
    SELECT
        campaign_id,
        message_id,
        minIf(finished_at, status IN ('sent', 'delivered')) AS accepted_at
    FROM campaign_delivery_results FINAL
    WHERE finished_at >= toDateTime(%(start)s) AND finished_at < toDateTime(%(end)s)
    GROUP BY campaign_id, message_id
    HAVING countIf(status IN ('sent', 'delivered')) > 0
)
GROUP BY campaign_id, minute
ORDER BY campaign_id, minute
