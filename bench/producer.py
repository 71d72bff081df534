"""Producer throughput: Avro events/s through the Filas SDK vs Kafka's own ProducerPerformance.

Both write to the same broker in the same run, with the same record size (the SDK's encoded
Avro record, about 200 bytes), acks=all, idempotence, linger.ms, batch.size and compression.
The Java tool sends random payloads without keys; the SDK validates and Avro-encodes a record,
extracts its key and partitions by it, which is the work a Filas service really does.

Run: ``make bench-producer`` (or ``python -m bench.producer --records N``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from bench.common import report, services
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog
from filas.catalog.radius import ACCOUNTING
from filas.local_platform import maven
from filas.local_platform.java import find_java
from filas.settings import Settings

PEER = "kafka-ProducerPerformance"


def sample_records(count: int) -> list[dict[str, Any]]:
    """Realistic accounting records for ``count`` distinct logins (about 200 bytes encoded)."""
    now = datetime.now(UTC)
    return [
        {
            "envelope": {
                "event_id": str(uuid.uuid4()),
                "occurred_at": now,
                "source_system": "radius-gateway",
                "correlation_id": None,
            },
            "login": f"cliente{i:06d}@provedor-fibra",
            "status_type": "interim_update",
            "session_id": f"81{i:08X}",
            "unique_session_id": None,
            "nas_id": "nas-pop-centro-01",
            "nas_ip_address": "10.20.0.1",
            "nas_identifier": "bng-centro",
            "nas_port": 15728640 + i,
            "nas_port_id": "ether1-vlan100",
            "calling_station_id": f"AA:BB:CC:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}",
            "framed_ip_address": f"100.64.{i >> 8 & 255}.{i & 255}",
            "framed_ipv6_prefix": None,
            "delegated_ipv6_prefix": None,
            "input_octets": 123_456_789 + i,
            "output_octets": 987_654_321 + i,
            "input_packets": 123_456,
            "output_packets": 654_321,
            "session_time_s": 3600,
            "terminate_cause": None,
            "delay_s": 0,
            "event_at": now,
            "received_at": now,
        }
        for i in range(count)
    ]


def run_sdk(settings: Settings, catalog: Catalog, records: list[dict[str, Any]], n: int) -> float:
    serdes = build_serdes(settings)
    with build_producer(settings, catalog=catalog, serdes=serdes) as producer:
        producer.emit(ACCOUNTING, records[0])  # registers the schema: start-up, not measured
        producer.flush()
        pool = len(records)
        start = time.perf_counter()
        for i in range(n):
            producer.emit(ACCOUNTING, records[i % pool])
        producer.flush(120)
        elapsed = time.perf_counter() - start
    return n / elapsed


def run_java(settings: Settings, topic: str, n: int, record_size: int, classpath: str) -> float:
    kafka = settings.kafka
    props = [
        f"bootstrap.servers={kafka.bootstrap_servers}",
        "acks=all",
        "enable.idempotence=true",
        f"linger.ms={kafka.linger_ms}",
        f"batch.size={kafka.batch_size}",
        f"compression.type={kafka.compression_type}",
    ]
    out = subprocess.run(
        [
            find_java(17),
            "-Xmx512m",
            "-cp",
            classpath,
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(n),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--producer-props",
            *props,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    # Last line: "N records sent, X records/sec (Y MB/sec), ..."
    match = re.search(r"\d+ records sent, ([\d.]+) records/sec", out)
    if match is None:
        raise RuntimeError(f"unexpected ProducerPerformance output:\n{out[-2000:]}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    base = Settings()
    cache = (base.local.cache_dir or base.local.home / "cache").resolve()
    versions = maven.KafkaVersions(
        base.local.kafka_version, base.local.log4j_version, base.local.slf4j_version
    )
    tools = maven.fetch_kafka_tools(cache, versions)

    with services(registry=True) as settings:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        catalog = Catalog.build(prefix)
        sdk_topic = catalog.resolve(ACCOUNTING)
        java_topic = f"{prefix}java-perf"
        admin = AdminClient(settings.kafka.client_config())
        for future in admin.create_topics(
            [
                NewTopic(t, num_partitions=sdk_topic.partitions, replication_factor=1)
                for t in (sdk_topic.name, java_topic)
            ]
        ).values():
            future.result(30)

        records = sample_records(10_000)
        serde = build_serdes(settings)(sdk_topic)
        record_size = round(statistics.mean(len(serde.serialize(r)) for r in records[:1000]))
        print(f"record size: {record_size} bytes (Avro + 5-byte header); {args.records} records")

        java, sdk = [], []
        for run in range(args.runs):
            java.append(run_java(settings, java_topic, args.records, record_size, f"{tools}/*"))
            sdk.append(run_sdk(settings, catalog, records, args.records))
            print(f"run {run + 1}: java {java[-1]:,.0f} rec/s, sdk {sdk[-1]:,.0f} events/s")
        admin.delete_topics([sdk_topic.name, java_topic])

    java_median, sdk_median = statistics.median(java), statistics.median(sdk)
    report("producer_java_throughput", java_median, "records/s", 1.0, PEER)
    report("producer_sdk_throughput", sdk_median, "events/s", sdk_median / java_median, PEER)


if __name__ == "__main__":
    main()
