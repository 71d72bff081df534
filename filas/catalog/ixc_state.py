"""IXC records as compacted state topics, fed by the IXC adapter (latest value per key)."""

from filas.catalog.spec import GIB, CleanupPolicy, TopicSpec

CUSTOMERS = TopicSpec(
    name="ixc.customers",
    value_schema="ixc.filas.customer.Customer",
    key_field="customer_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.COMPACT,
    retention_bytes=-1,
    description="IXC clients (cliente): contact data, timezone and consent, latest per customer.",
)

CONTRACTS = TopicSpec(
    name="ixc.contracts",
    value_schema="ixc.filas.contract.Contract",
    key_field="contract_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.COMPACT,
    description="IXC contracts (cliente_contrato): plan and status, latest per contract.",
)

CONTRACT_STATUS = TopicSpec(
    name="ixc.contract-status",
    value_schema="ixc.filas.contract.ContractStatusChanged",
    key_field="contract_id",
    partitions=6,
    retention_bytes=1 * GIB,
    description="Contract status changes (block for non-payment, trust unblock, plan change).",
)

SUBSCRIBERS = TopicSpec(
    name="ixc.subscribers",
    value_schema="ixc.filas.subscriber.SubscriberLogin",
    key_field="login",
    partitions=12,
    cleanup_policy=CleanupPolicy.COMPACT,
    description="RADIUS logins (radusuarios): PPPoE/IPoE/hotspot credentials and policy.",
)

NAS = TopicSpec(
    name="ixc.nas",
    value_schema="ixc.filas.nas.Nas",
    key_field="nas_id",
    partitions=3,
    cleanup_policy=CleanupPolicy.COMPACT,
    description="Network access servers (concentrators); secret by reference only.",
)

DEVICES = TopicSpec(
    name="ixc.devices",
    value_schema="ixc.filas.device.NetworkDevice",
    key_field="device_id",
    partitions=12,
    cleanup_policy=CleanupPolicy.COMPACT,
    description="Network devices (POP/OLT/switch/CPE/ONU) with their parent in the topology.",
)

TOPICS = (CUSTOMERS, CONTRACTS, CONTRACT_STATUS, SUBSCRIBERS, NAS, DEVICES)
