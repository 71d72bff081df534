"""The local platform behind ``filas up``: Kafka (KRaft), Apicurio Registry and ClickHouse run as
plain processes fetched from Maven Central and Debian. Entry point: ``local.LocalPlatform``;
fault tests drive ``kafka.KafkaCluster`` directly. See docs/decisions/0001-0003."""
