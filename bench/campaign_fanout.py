"""Campaign fan-out throughput: messages/s expanded for a 100,000-recipient campaign.

Measured: the fan-out engine and its Kafka publish port (``FanoutService.publish``, the code
``filas campaigns fanout`` runs) expanding one campaign: sandboxed Jinja render of every
recipient, consent / window / cap checks, Avro encoding, producing to the lane topic and waiting
for every batch's acks, one progress event per batch. Subscriber state is loaded in memory
first (reading the state topics is start-up, not fan-out).

Peer, measured in the same run: a plain confluent-kafka producer (same librdkafka settings)
publishing the very same messages already rendered and encoded, then flushing. The ratio says
how much of the raw producer rate the fan-out keeps; a third figure compares messages per
CPU-second (process CPU, librdkafka threads included), steadier when the machine is shared.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from bench.common import report, services
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_serdes
from filas.catalog import Catalog
from filas.catalog.campaigns import PROGRESS
from filas.settings import CampaignsSettings, TopicsSettings
from producers.envelope import envelope
from producers.sdk import producer_config
from streams.campaigns.engine import message_record
from streams.campaigns.runner import FanoutService, message_router

BODY = (
    "Olá {{ first_name }}, a fatura do plano {{ plan_name }} ({{ monthly_price | brl }}) "
    "vence em breve. Pague pelo app ou pelo PIX. Dúvidas: responda esta mensagem."
)


def customer(i: int) -> dict[str, Any]:
    return {
        "customer_id": f"{i:07d}",
        "name": f"cliente numero {i}",
        "email": f"c{i}@example.com",
        "mobile_phone": f"6799{i:07d}",
        "city_id": str(i % 50),
        "timezone": "America/Sao_Paulo",
        "marketing_consent": True,
        "active": True,
        "tags": [],
    }


def contract(i: int) -> dict[str, Any]:
    return {
        "contract_id": f"k{i:07d}",
        "customer_id": f"{i:07d}",
        "plan_id": "p1",
        "plan_name": "Fibra 500",
        "status": "ACTIVE",
        "ixc_status": "A",
        "ixc_internet_status": "A",
        "days_overdue": i % 30,
        "monthly_price": Decimal("119.90"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--channels", default="sms", help="comma-separated, e.g. sms,email")
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    channels = args.channels.split(",")
    with services() as base:
        prefix = f"bench{uuid.uuid4().hex[:8]}-"
        catalog = Catalog.build(prefix)
        router = message_router(catalog)
        lane_topic = router.spec_for("bulk")
        progress = catalog.resolve(PROGRESS)
        TopicAdmin(base.kafka).apply(catalog.only(lane_topic, progress))
        settings = base.model_copy(
            update={
                "topics": TopicsSettings(prefix=prefix),
                "campaigns": CampaignsSettings(batch_size=args.batch),
            }
        )
        serdes = build_serdes(settings)
        service = FanoutService(settings, catalog=catalog, serdes=serdes)
        for i in range(args.recipients):
            service.state.put_customer(f"{i:07d}", customer(i))
            service.state.put_contract(f"k{i:07d}", contract(i))
        engine = service.build_engine()
        engine.go_live()
        cid = str(uuid.uuid4())
        record = {
            "envelope": envelope("bench"),
            "campaign_id": cid,
            "name": "bench",
            "command": "create",
            "channels": channels,
            "template": {"subject": "Fatura {{ plan_name }}", "body": BODY},
            "audience": {},
            "send_window_start_min": 0,
            "send_window_end_min": 1440,
            "lane": "bulk",
            "purpose": "billing",
        }
        try:
            start, cpu = time.perf_counter(), time.process_time()
            engine.apply(record)
            engine.step()  # the plan: every recipient checked and rendered
            plan_s = time.perf_counter() - start
            while engine.step():
                pass
            fanout_s = time.perf_counter() - start
            fanout_cpu = time.process_time() - cpu
            run = engine.runs[cid]
            if run.status != "done":
                raise SystemExit(f"campaign ended {run.status}: {run.error}")
            count = run.queued
            fanout_rate = count / fanout_s
            print(
                f"fan-out: {count} messages ({args.recipients} recipients x {len(channels)} "
                f"channels) in {fanout_s:.2f} s (plan and render {plan_s:.2f} s, publish "
                f"{fanout_s - plan_s:.2f} s), batches of {args.batch}"
            )

            # Peer: the same messages, rendered and encoded beforehand, through a plain producer.
            spec = run.spec
            assert spec is not None
            assert run.plan is not None
            serde = serdes(lane_topic)
            now = int(datetime.now(UTC).timestamp() * 1000)
            encoded = [
                (m.recipient_id, serde.serialize(message_record(spec, m, now)))
                for m in run.plan.messages
            ]
            plain = Producer(producer_config(settings.kafka))
            start, cpu = time.perf_counter(), time.process_time()
            for key, value in encoded:
                while True:
                    try:
                        plain.produce(lane_topic.name, value=value, key=key)
                        break
                    except BufferError:
                        plain.poll(0.01)
            remaining = plain.flush(120)
            plain_s = time.perf_counter() - start
            plain_cpu = time.process_time() - cpu
            if remaining:
                raise SystemExit(f"plain producer: {remaining} messages unacknowledged")
            plain_rate = len(encoded) / plain_s
            print(f"plain producer: {len(encoded)} pre-rendered messages in {plain_s:.2f} s")
        finally:
            service.close()
            admin = AdminClient(settings.kafka.client_config())
            for future in admin.delete_topics([lane_topic.name, progress.name]).values():
                future.result(30)
        report(
            "campaign_fanout_rate",
            fanout_rate,
            "messages/s",
            fanout_rate / plain_rate,
            "plain confluent-kafka producer, pre-rendered",
        )
        report("campaign_fanout_total", fanout_s, "s", fanout_s / plain_s, "plain producer time")
        # CPU-normalised (process CPU incl. librdkafka threads): steadier on a shared machine.
        report(
            "campaign_fanout_cpu_rate",
            count / fanout_cpu,
            "messages/cpu-s",
            (count / fanout_cpu) / (len(encoded) / plain_cpu),
            "plain producer messages/cpu-s",
        )


if __name__ == "__main__":
    main()
