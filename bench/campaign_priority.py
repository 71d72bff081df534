"""Transactional latency under a bulk backlog (issue 5 goal: p99 < 2 s).

``--bulk`` e-mail messages are queued on the bulk lane (default 20,000; the issue's figure is
``--bulk 50000``), then a delivery worker (the code of ``filas delivery serve``) starts draining
them at ``--rate`` msgs/s into an aiosmtpd sink (its own process); meanwhile ``--transactional``
messages are published on the transactional lane, ``--every`` seconds apart. Latency is from
just before a transactional message is produced to the sink accepting it (matched by Message-
ID). The peer is the bulk backlog's own drain time: how long the message would wait without
lanes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import report, services
from consumers.delivery.load import campaign_messages, delivery_catalog, publish_messages
from consumers.delivery.peers import SmtpSinkProcess
from consumers.delivery.smtp import message_id_header
from consumers.delivery.worker import DeliveryWorker
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.settings import DeliverySettings, Settings, SmtpChannelSettings, TopicsSettings
from producers.sdk import EventProducer

DOMAIN = "bench.filas"


async def run(
    settings: Settings,
    catalog: Catalog,
    producer: EventProducer,
    sink: SmtpSinkProcess,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Deliver while publishing the transactional messages; Message-ID -> produce time."""
    worker = DeliveryWorker(settings, "email")
    await worker.start()
    sent_at: dict[str, float] = {}

    async def publisher() -> None:
        await asyncio.sleep(2.0)  # the bulk drain is under way
        records = campaign_messages(
            args.transactional, lane="transactional", domain=DOMAIN, first_recipient=args.bulk
        )
        for record in records:
            sent_at[message_id_header(record["message_id"], DOMAIN)] = time.time()
            await asyncio.to_thread(publish_messages, producer, catalog, iter([record]))
            await asyncio.sleep(args.every)

    task = asyncio.create_task(publisher())
    next_check = 0.0
    try:
        while True:
            await worker.run_once(0.1)
            if task.done() and time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.2
                if set(sent_at) <= set(sink.by_message_id()):
                    break
        await task
    finally:
        await worker.close()
    return sent_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--transactional", type=int, default=40)
    parser.add_argument("--every", type=float, default=0.25)
    args = parser.parse_args()
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    with (
        tempfile.TemporaryDirectory() as tmp,
        services() as base,
        SmtpSinkProcess(Path(tmp) / "sink.log") as sink,
    ):
        settings = base.model_copy(
            update={
                "topics": TopicsSettings(prefix=prefix),
                "delivery": DeliverySettings(
                    email=SmtpChannelSettings(
                        port=sink.port,
                        rate_per_s=args.rate,
                        concurrency=32,
                        message_id_domain=DOMAIN,
                    )
                ),
            }
        )
        catalog = delivery_catalog(prefix)
        TopicAdmin(settings.kafka).apply(catalog)
        with build_producer(settings, catalog=catalog) as producer:
            publish_messages(producer, catalog, campaign_messages(args.bulk, domain=DOMAIN))
            sent_at = asyncio.run(run(settings, catalog, producer, sink, args))
        received = sink.first_seen()
        latencies = sorted(received[m] - t for m, t in sent_at.items())
        backlog_left = args.bulk - (sink.count() - len(latencies))
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        drain_s = args.bulk / args.rate
        report("campaign_priority_p50", p50, "s", p50 / drain_s, "bulk backlog drain time")
        report("campaign_priority_p99", p99, "s", p99 / 2.0, "issue 5 budget p99 2 s")
        report(
            "campaign_priority_bulk_left",
            backlog_left,
            "msgs",
            backlog_left / args.bulk,
            "bulk queued",
        )


if __name__ == "__main__":
    main()
