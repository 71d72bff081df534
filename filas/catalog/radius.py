"""RADIUS traffic: every request, decision and accounting record, keyed by login."""

from filas.catalog.spec import DAY_MS, GIB, TopicSpec

AUTH_REQUESTS = TopicSpec(
    name="radius.auth-requests",
    value_schema="ixc.filas.radius.AuthRequest",
    key_field="login",
    partitions=12,
    retention_ms=3 * DAY_MS,
    retention_bytes=4 * GIB,
    description="Access-Requests as received by the gateway (never the password).",
)

AUTH_DECISIONS = TopicSpec(
    name="radius.auth-decisions",
    value_schema="ixc.filas.radius.AuthDecision",
    key_field="login",
    partitions=12,
    retention_ms=3 * DAY_MS,
    retention_bytes=4 * GIB,
    description="Accept/reject decisions with reason and latency.",
)

ACCOUNTING = TopicSpec(
    name="radius.accounting",
    value_schema="ixc.filas.radius.AccountingRecord",
    key_field="login",
    partitions=12,
    retention_ms=7 * DAY_MS,
    retention_bytes=8 * GIB,
    description="Accounting Start/Interim-Update/Stop records.",
)

COA_RESULTS = TopicSpec(
    name="radius.coa-results",
    value_schema="ixc.filas.radius.CoaResult",
    key_field="contract_id",
    partitions=6,
    retention_ms=14 * DAY_MS,
    retention_bytes=1 * GIB,
    description="CoA/Disconnect results (ACK/NAK/timeout); the CoA idempotency ledger.",
)

TOPICS = (AUTH_REQUESTS, AUTH_DECISIONS, ACCOUNTING, COA_RESULTS)
