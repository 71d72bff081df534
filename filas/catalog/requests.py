"""Service requests: client -> request -> processing queue (two priority lanes) -> IXC.

Both lanes carry ``ServiceRequest`` keyed by request id (a duplicate submit from two ingress
instances lands on the same partition, behind the first). ``requests.status`` is compacted:
the latest ``RequestStatus`` per request, read by the ingress's status URL and by the workers
as their idempotency ledger (docs/decisions/0080, 0081).

Lanes come from the generic helper (``filas.catalog.lanes``, decision 0075).
"""

from filas.catalog.lanes import lanes
from filas.catalog.spec import DAY_MS, GIB, CleanupPolicy, TopicSpec

HIGH = "high"
BULK = "bulk"

# The family's template: the topics are its lanes, requests.high and requests.bulk.
REQUESTS = TopicSpec(
    name="requests",
    value_schema="ixc.filas.request.ServiceRequest",
    key_field="request_id",
    partitions=6,
    retention_ms=7 * DAY_MS,
    retention_bytes=1 * GIB,
    description="Service requests for IXC (payment confirmation, trust unblock, resends...).",
)
# Highest priority first: workers always drain the first lane before taking from the next.
LANES = lanes(REQUESTS, (HIGH, BULK))
REQUESTS_HIGH, REQUESTS_BULK = LANES

REQUEST_STATUS = TopicSpec(
    name="requests.status",
    value_schema="ixc.filas.request.RequestStatus",
    key_field="request_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.COMPACT,
    dead_letter=False,
    description="Latest state per service request (queued/running/done/failed/dead-lettered).",
)

TOPICS = (REQUESTS_HIGH, REQUESTS_BULK, REQUEST_STATUS)
