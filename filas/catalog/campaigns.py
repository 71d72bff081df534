"""Campaigns: definitions, one message per recipient, delivery results."""

from filas.catalog.lanes import lanes
from filas.catalog.spec import DAY_MS, GIB, CleanupPolicy, TopicSpec

CAMPAIGNS = TopicSpec(
    name="campaign.definitions",
    value_schema="ixc.filas.campaign.Campaign",
    key_field="campaign_id",
    partitions=3,
    retention_ms=90 * DAY_MS,
    retention_bytes=GIB // 4,
    description="Campaign definitions and their pause/resume/cancel commands.",
)

# The family's template: the topics are its lanes, MESSAGE_LANES (transactional drained first).
MESSAGES = TopicSpec(
    name="campaign.messages",
    value_schema="ixc.filas.campaign.CampaignMessage",
    key_field="recipient_id",
    partitions=12,
    retention_ms=7 * DAY_MS,
    retention_bytes=4 * GIB,
    description="One message per recipient and channel, fanned out from a campaign.",
)
# campaign.messages.transactional, campaign.messages.bulk: route with filas.lanes.LaneRouter on
# the record's `lane` field; delivery workers drain transactional first (docs/queues-lanes.md).
MESSAGE_LANES = lanes(MESSAGES, ("transactional", "bulk"))
TRANSACTIONAL_MESSAGES, BULK_MESSAGES = MESSAGE_LANES

DELIVERY_RESULTS = TopicSpec(
    name="campaign.delivery-results",
    value_schema="ixc.filas.campaign.DeliveryResult",
    key_field="recipient_id",
    partitions=12,
    retention_ms=30 * DAY_MS,
    retention_bytes=4 * GIB,
    description="What the SMTP relay or SMS gateway answered for each message.",
)

# Delivery idempotency ledger (docs/decisions/0077): keyed like the messages (recipient_id, same
# partition count), so lane partition p's entries are all in ledger partition p. Kept one day
# longer than the messages it guards.
DELIVERY_LEDGER = TopicSpec(
    name="campaign.delivery-ledger",
    value_schema="ixc.filas.campaign.DeliveryLedgerEntry",
    key_field="recipient_id",
    partitions=MESSAGES.partitions,
    retention_ms=MESSAGES.retention_ms + DAY_MS,
    retention_bytes=1 * GIB,
    dead_letter=False,
    description="Delivery idempotency ledger: 'sending' before and the outcome after each send.",
)

PROGRESS = TopicSpec(
    name="campaign.progress",
    value_schema="ixc.filas.campaign.CampaignProgress",
    key_field="campaign_id",
    partitions=3,
    retention_ms=90 * DAY_MS,
    retention_bytes=GIB // 4,
    description="Fan-out progress per campaign: status, queued and skipped counts, resume cursor.",
)

OPT_OUTS = TopicSpec(
    name="campaign.opt-outs",
    value_schema="ixc.filas.campaign.CampaignOptOut",
    key_field="customer_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.COMPACT,
    description="LGPD opt-outs (marketing, per channel), latest per customer; read at fan-out.",
)

TOPICS = (CAMPAIGNS, *MESSAGE_LANES, DELIVERY_RESULTS, DELIVERY_LEDGER, PROGRESS, OPT_OUTS)
