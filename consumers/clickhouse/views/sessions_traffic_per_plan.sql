-- Sessions and traffic per plan: sessions seen in accounting (start, interim or stop) in the
-- window, the logins behind them, and their traffic (octets are per-session counters: the
-- highest value reported is the session's total). Plan: the login's contract's plan_name, from
-- the latest ixc.subscribers and ixc.contracts records; '(unknown)' when IXC has not told us.
-- params: start, end (DateTime, UTC; end excluded)
SELECT
    if(plan_name = '', '(unknown)', plan_name) AS plan,
    count() AS sessions,
    uniqExact(login) AS logins,
    sum(upload) AS upload_bytes,
    sum(download) AS download_bytes
FROM
(
    SELECT
        login,
        nas_ip_address,
        session_id,
        max(input_octets) AS upload,
        max(output_octets) AS download
    FROM radius_accounting FINAL
    WHERE envelope_occurred_at >= toDateTime(%(start)s)
      AND envelope_occurred_at < toDateTime(%(end)s)
      AND status_type IN ('start', 'interim_update', 'stop')
    GROUP BY login, nas_ip_address, session_id
)
ANY LEFT JOIN
(
    SELECT login, plan_name
    FROM
    (
        SELECT login, argMax(contract_id, envelope_occurred_at) AS contract_id
        FROM ixc_subscribers FINAL
        GROUP BY login
    )
    ANY LEFT JOIN
    (
        SELECT contract_id, argMax(plan_name, envelope_occurred_at) AS plan_name
        FROM ixc_contracts FINAL
        GROUP BY contract_id
    ) USING contract_id
) USING login
GROUP BY plan
ORDER BY download_bytes DESC, plan
