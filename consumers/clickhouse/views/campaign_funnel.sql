-- Campaign funnel: per campaign, messages queued (both priority lanes) in the window, and the
-- latest delivery status of each: sent (accepted by the provider, delivered included),
-- delivered (provider confirmed), failed (temporary, permanent, expired, unknown: an ambiguous
-- send not retried), skipped (opt-out, window, frequency cap, invalid address), cancelled
-- (withdrawn by a campaign cancel). queued - sent - failed - skipped - cancelled = pending.
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    campaign_id,
    queued,
    sent,
    delivered,
    failed,
    skipped,
    cancelled,
    queued - sent - failed - skipped - cancelled AS pending,
    round(sent / queued, 4) AS sent_ratio
FROM
(
    SELECT campaign_id, uniqExact(message_id) AS queued
    FROM
    (
        SELECT campaign_id, message_id FROM campaign_messages_transactional
        WHERE envelope_occurred_at >= toDateTime(%(start)s)
          AND envelope_occurred_at < toDateTime(%(end)s)
        UNION ALL
        SELECT campaign_id, message_id FROM campaign_messages_bulk
        WHERE envelope_occurred_at >= toDateTime(%(start)s)
          AND envelope_occurred_at < toDateTime(%(end)s)
    )
    GROUP BY campaign_id
)
ANY LEFT JOIN
(
    SELECT
        campaign_id,
        countIf(status IN ('sent', 'delivered')) AS sent,
        countIf(status = 'delivered') AS delivered,
        countIf(status IN ('temporary_failure', 'permanent_failure', 'expired', 'unknown')) AS failed,
        countIf(startsWith(status, 'skipped_')) AS skipped,
        countIf(status = 'cancelled') AS cancelled
    FROM
    (
        SELECT campaign_id, message_id, argMax(status, finished_at) AS status
        FROM campaign_delivery_results FINAL
        WHERE finished_at >= toDateTime(%(start)s)
        GROUP BY campaign_id, message_id
    )
    GROUP BY campaign_id
) USING campaign_id
ORDER BY campaign_id
