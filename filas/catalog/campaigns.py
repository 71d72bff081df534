"""Campaigns: definitions, one message per recipient, delivery results."""

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

MESSAGES = TopicSpec(
    name="campaign.messages",
    value_schema="ixc.filas.campaign.CampaignMessage",
    key_field="recipient_id",
    partitions=12,
    retention_ms=7 * DAY_MS,
    retention_bytes=4 * GIB,
    description="One message per recipient and channel, fanned out from a campaign.",
)

DELIVERY_RESULTS = TopicSpec(
    name="campaign.delivery-results",
    value_schema="ixc.filas.campaign.DeliveryResult",
    key_field="recipient_id",
    partitions=12,
    retention_ms=30 * DAY_MS,
    retention_bytes=4 * GIB,
    description="What the SMTP relay or SMS gateway answered for each message.",
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

TOPICS = (CAMPAIGNS, MESSAGES, DELIVERY_RESULTS, PROGRESS, OPT_OUTS)
