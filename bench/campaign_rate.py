"""Campaign at a configured rate: achieved rate / configured rate (issue 5 goal 0.95-1.05).

Kafka + registry from ``bench.common.services``; an aiosmtpd SMTP sink on a free port;
``--recipients`` e-mail messages are queued on the bulk lane, then ``--workers`` delivery
workers (the code of ``filas delivery serve``, in this process; the sink runs in its own)
deliver them with ``FILAS_DELIVERY__EMAIL__RATE_PER_S=--rate`` shared between them. The achieved
rate is measured at the sink, from the first to the last accepted mail. Default 5,000 recipients
at 500/s (10 s of sending); the issue's figure is ``--recipients 100000`` (about 3.5 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import report, services
from consumers.delivery.load import campaign_messages, delivery_catalog, publish_messages
from consumers.delivery.peers import SmtpSinkProcess
from consumers.delivery.worker import DeliveryWorker
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.settings import DeliverySettings, Settings, SmtpChannelSettings, TopicsSettings


async def deliver(settings: Settings, workers: int, sink: SmtpSinkProcess, total: int) -> None:
    group = [DeliveryWorker(settings, "email") for _ in range(workers)]
    for worker in group:
        await worker.start()

    done = asyncio.Event()

    async def loop(worker: DeliveryWorker) -> None:
        while not done.is_set():
            await worker.run_once(0.1)

    async def watch() -> None:
        while sink.count() < total:  # noqa: ASYNC110 - the sink is another process
            await asyncio.sleep(0.2)
        done.set()

    try:
        await asyncio.gather(watch(), *(loop(w) for w in group))
    finally:
        for worker in group:
            await worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-unacked", type=int, default=256)
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
                    max_unacked=args.max_unacked,
                    email=SmtpChannelSettings(
                        port=sink.port, rate_per_s=args.rate, concurrency=args.concurrency
                    ),
                ),
            }
        )
        catalog = delivery_catalog(prefix)
        TopicAdmin(settings.kafka).apply(catalog)
        with build_producer(settings, catalog=catalog) as producer:
            publish_messages(producer, catalog, campaign_messages(args.recipients))
        started = time.monotonic()
        asyncio.run(deliver(settings, args.workers, sink, args.recipients))
        total_s = time.monotonic() - started
        times = sorted(sink.times())
        achieved = (len(times) - 1) / (times[-1] - times[0])
        counts = sink.by_message_id()
        assert len(counts) == args.recipients, f"{len(counts)} distinct of {args.recipients}"
        report("campaign_rate_achieved", achieved, "msgs/s", achieved / args.rate, "configured")
        report(
            "campaign_rate_total",
            total_s,
            "s",
            total_s / (args.recipients / args.rate),
            "recipients / configured rate",
        )


if __name__ == "__main__":
    main()
