"""RADIUS gateway: answers NAS Access/Accounting-Requests from a local replica, never from Kafka."""
