"""Unlimited delivery throughput to a local SMTP sink vs the sink's own accept rate (issue 5 goal
>= 0.5).

The peer: plain aiosmtplib clients (``--concurrency`` connections, no Kafka) pushing
``--recipients`` mails straight into an aiosmtpd sink (its own process) on a free port: what the
sink accepts alone. Then the same number of e-mail messages queued on the bulk lane are
delivered by a delivery worker (the code of ``filas delivery serve``, no rate limit, same
concurrency) with its ledger and results; its rate is measured at the sink from first to last
accepted mail.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import aiosmtplib

from bench.common import report, services
from consumers.delivery.channels import OutgoingMessage
from consumers.delivery.load import campaign_messages, delivery_catalog, publish_messages
from consumers.delivery.peers import SmtpSinkProcess
from consumers.delivery.smtp import build_email
from consumers.delivery.worker import DeliveryWorker
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.settings import DeliverySettings, Settings, SmtpChannelSettings, TopicsSettings


async def sink_alone(sink: SmtpSinkProcess, total: int, concurrency: int) -> float:
    settings = SmtpChannelSettings(port=sink.port)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def client() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port)
        await smtp.connect()
        while not queue.empty():
            i = queue.get_nowait()
            message = OutgoingMessage(str(uuid.uuid4()), "c", str(i), f"p{i}@x.test", "s", "b")
            mail = build_email(message, settings)
            await smtp.sendmail("no-reply@example.net", [message.address], mail)
        await smtp.quit()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def worker_run(settings: Settings, sink: SmtpSinkProcess, total: int) -> None:
    worker = DeliveryWorker(settings, "email")
    await worker.start()
    next_check = 0.0
    try:
        while True:
            await worker.run_once(0.1)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.2
                if sink.count() >= total:
                    break
    finally:
        await worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-unacked", type=int, default=256)
    args = parser.parse_args()
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    with tempfile.TemporaryDirectory() as tmp, services() as base:
        log = Path(tmp) / "sink.log"
        with SmtpSinkProcess(log) as sink:
            alone = asyncio.run(sink_alone(sink, args.recipients, args.concurrency))
        with SmtpSinkProcess(log) as sink:
            settings = base.model_copy(
                update={
                    "topics": TopicsSettings(prefix=prefix),
                    "delivery": DeliverySettings(
                        max_unacked=args.max_unacked,
                        email=SmtpChannelSettings(port=sink.port, concurrency=args.concurrency),
                    ),
                }
            )
            catalog = delivery_catalog(prefix)
            TopicAdmin(settings.kafka).apply(catalog)
            with build_producer(settings, catalog=catalog) as producer:
                publish_messages(producer, catalog, campaign_messages(args.recipients))
            asyncio.run(worker_run(settings, sink, args.recipients))
            times = sorted(sink.times())
            delivered = (len(times) - 1) / (times[-1] - times[0])
            assert len(sink.by_message_id()) == args.recipients
        # The machine is shared: the peer is the sink's best of a run before and one after.
        with SmtpSinkProcess(log) as sink:
            alone = max(alone, asyncio.run(sink_alone(sink, args.recipients, args.concurrency)))
        report("campaign_smtp_sink_alone", alone, "msgs/s", 1.0, "aiosmtplib straight to sink")
        report(
            "campaign_smtp_worker", delivered, "msgs/s", delivered / alone, "sink accept rate alone"
        )


if __name__ == "__main__":
    main()
