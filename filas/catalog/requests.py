"""Service requests: client -> request -> processing queue (two priority lanes) -> IXC.

Both lanes carry ``ServiceRequest`` keyed by request id (a duplicate submit from two ingress
instances lands on the same partition, behind the first). ``requests.status`` is compacted:
the latest ``RequestStatus`` per request, read by the ingress's status URL and by the workers
as their idempotency ledger (docs/decisions/0080, 0081).

Lanes are declared here as two TopicSpecs (``lane`` field) until a generic lanes module exists.
"""

from filas.catalog.spec import DAY_MS, GIB, CleanupPolicy, TopicSpec

HIGH = "high"
BULK = "bulk"

REQUESTS_HIGH = TopicSpec(
    name="requests.high",
    value_schema="ixc.filas.request.ServiceRequest",
    key_field="request_id",
    partitions=6,
    retention_ms=7 * DAY_MS,
    retention_bytes=1 * GIB,
    lane=HIGH,
    description="Service requests on the high lane (payment confirmation, trust unblock, ...).",
)

REQUESTS_BULK = TopicSpec(
    name="requests.bulk",
    value_schema="ixc.filas.request.ServiceRequest",
    key_field="request_id",
    partitions=6,
    retention_ms=7 * DAY_MS,
    retention_bytes=2 * GIB,
    lane=BULK,
    description="Service requests on the bulk lane (invoice resends, scripted bulk work).",
)

REQUEST_STATUS = TopicSpec(
    name="requests.status",
    value_schema="ixc.filas.request.RequestStatus",
    key_field="request_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.COMPACT,
    dead_letter=False,
    description="Latest state per service request (queued/running/done/failed/dead-lettered).",
)

# Highest priority first: workers always drain the first lane before taking from the next.
LANES = (REQUESTS_HIGH, REQUESTS_BULK)

TOPICS = (REQUESTS_HIGH, REQUESTS_BULK, REQUEST_STATUS)
