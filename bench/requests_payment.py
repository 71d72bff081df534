"""Payment path end to end: signed webhook -> NAS ACK of the CoA that restores the speed.

Everything is the production code in one process (Kafka + registry from
``bench.common.services``): the IXC homologation simulator (its own thread and event loop)
with ``--payments`` contracts blocked for non-payment (CA), the IXC poller every
``--poll-interval`` s, the ingress (``IngressService``), the request worker (``RequestWorker``),
the CoA worker (``CoaWorker``, its own thread) and an ACKing NAS (``bench.radius_coa``). Each
contract's login has a live session (an accounting Start). A payment gateway posts one signed
webhook per contract at ``--rate`` per second; latency is from the webhook's send to the CoA
worker reading the NAS's ACK for that contract: ingress -> requests.high -> worker -> IXC
settles and unblocks -> poller -> ixc.contract-status -> CoA -> NAS. The peer figure is the
issue's 5 s p99 budget. A second figure is webhook -> the payment-confirmation message read
from the campaigns' transactional lane (docs/decisions/0083), against the same budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pydantic import SecretStr

from bench.common import report, services
from bench.radius_coa import SECRET, AckingNas
from consumers.ixc_requests.worker import RequestWorker
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer, build_serdes
from filas.catalog import Catalog, TopicSpec, ixc_state, requests
from filas.catalog.campaigns import TRANSACTIONAL_MESSAGES
from filas.catalog.radius import ACCOUNTING, COA_RESULTS
from filas.settings import IngressSettings, IxcSettings, RadiusSettings, Settings, TopicsSettings
from producers.async_sdk import AsyncEventProducer
from producers.envelope import envelope
from producers.ingress.guards import sign
from producers.ingress.service import IngressService
from producers.ixc.client import IxcClient
from producers.ixc.dead_letters import KafkaDeadLetters
from producers.ixc.poller import IxcPoller
from producers.ixc.simulator import IxcSimulator, SimulatedIsp
from producers.ixc.watermark import WatermarkStore
from streams.radius.coa_worker import CoaWorker

SIM_TOKEN = "bench-sim-token"  # noqa: S105 - a simulator token
GATEWAY_SECRET = "bench-gateway-secret"  # noqa: S105 - a bench secret
PEER = "issue 8 budget p99 5000 ms"
NAS_ID = "1"
SECRET_REF = f"ixc/nas/{NAS_ID}/radius-secret"


class SimThread:
    def __init__(self, isp: SimulatedIsp) -> None:
        self.sim = IxcSimulator(isp, token=SIM_TOKEN)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class CoaThread:
    """Runs the CoA worker; records when each contract's ACK was read."""

    def __init__(self, worker: CoaWorker) -> None:
        self.worker = worker
        self.acked: dict[str, float] = {}
        self.other = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.worker.run_once(0.05)
            for result in self.worker.last_results:
                if result["outcome"] == "ACK":
                    self.acked.setdefault(str(result["contract_id"]), time.monotonic())
                else:
                    self.other += 1

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.worker.close()


@dataclass
class PaymentRun:
    """What ``measure`` saw: per contract, ms from the webhook's send to the NAS's ACK and to
    the payment-confirmation message on the transactional lane, and how many messages each
    contract's customer got."""

    sent: int
    nas_ack_ms: list[float] = field(default_factory=list)
    notice_ms: list[float] = field(default_factory=list)
    notices: Counter[str] = field(default_factory=Counter)


class LaneWatch:
    """Reads every partition of a message lane from the beginning on a thread: per contract,
    when its first message was read and how many were."""

    def __init__(self, settings: Settings, spec: TopicSpec) -> None:
        self._serdes = build_serdes(settings)
        self._decode = self._serdes(spec).deserialize
        self.first: dict[str, float] = {}
        self.count: Counter[str] = Counter()
        self.records: list[dict[str, object]] = []
        conf = dict(settings.kafka.client_config()) | {
            "group.id": f"bench-lane-watch-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
        self._consumer = Consumer(conf)
        topic = self._consumer.list_topics(spec.name, timeout=10).topics[spec.name]
        self._consumer.assign(
            [TopicPartition(spec.name, p, OFFSET_BEGINNING) for p in topic.partitions]
        )
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(num_messages=100, timeout=0.05):
                if msg.error() or msg.value() is None:
                    continue
                record = self._decode(msg.value())
                contract = str(record.get("contract_id"))
                self.first.setdefault(contract, time.monotonic())
                self.count[contract] += 1
                self.records.append(record)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self._consumer.close()
        self._serdes.close()


async def run(args: argparse.Namespace) -> None:
    with services() as base:
        result = await measure(base, args)
    if len(result.nas_ack_ms) < 2 or len(result.notice_ms) < 2:
        raise SystemExit(
            f"only {len(result.nas_ack_ms)} ACKs / {len(result.notice_ms)} messages for "
            f"{result.sent} payments: nothing to measure"
        )
    q = statistics.quantiles(result.nas_ack_ms, n=100)
    report("requests_payment_webhook_to_nas_ack_p50", q[49], "ms", q[49] / 5000.0, PEER)
    report("requests_payment_webhook_to_nas_ack_p99", q[98], "ms", q[98] / 5000.0, PEER)
    q = statistics.quantiles(result.notice_ms, n=100)
    report("requests_payment_webhook_to_message_queued_p99", q[98], "ms", q[98] / 5000.0, PEER)


async def measure(base: Settings, args: argparse.Namespace) -> PaymentRun:
    """Run the whole payment path against ``base``'s Kafka and registry."""
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    catalog = Catalog.build(prefix)
    specs = [catalog.resolve(s) for s in (*ixc_state.TOPICS, *requests.TOPICS)]
    specs += [catalog.dead_letter_for(s) for s in (*ixc_state.TOPICS, *requests.LANES)]
    specs += [catalog.resolve(ACCOUNTING), catalog.resolve(COA_RESULTS)]
    specs.append(catalog.resolve(TRANSACTIONAL_MESSAGES))
    TopicAdmin(base.kafka).apply(catalog.only(*specs))
    contracts = [str(i) for i in range(1, args.payments + 1)]
    isp = SimulatedIsp(seed=5, customers=args.payments + 10, devices=0, nas=1)
    for contract in contracts:
        isp.block_contract(contract, "CA")
    sim = SimThread(isp)
    nas = AckingNas()
    state_dir = Path(tempfile.mkdtemp(prefix="bench-payment-"))
    settings = base.model_copy(
        update={
            "topics": TopicsSettings(prefix=prefix),
            "ixc": IxcSettings(
                base_url=sim.url,
                token=SecretStr(SIM_TOKEN),
                min_request_interval_s=0,
                watermark_path=state_dir / "watermarks.json",
            ),
            "ingress": IngressSettings(
                port=0,
                webhook_secrets={"pix-gw": SecretStr(GATEWAY_SECRET)},
                rate_per_s=1e6,
                rate_burst=10**6,
                ixc_rate_per_s=100,
            ),
            "radius": RadiusSettings(
                nas_secrets={SECRET_REF: SecretStr(SECRET.decode())},
                coa_start_from="earliest",
            ),
        }
    )
    tz = ZoneInfo(settings.ixc.timezone)
    stop = asyncio.Event()
    async with (
        AsyncEventProducer(build_producer(settings, catalog=catalog)) as sink,
        IxcClient(settings.ixc) as ixc,
    ):
        poller = IxcPoller(
            ixc, sink, KafkaDeadLetters(sink, catalog), WatermarkStore(
                settings.ixc.watermark_path), tz=tz
        )  # fmt: skip
        first = await poller.poll_once()
        # The NAS answers on a free port on this host (the simulator's NAS is 10.255.0.1).
        now = datetime.now(UTC)
        await sink.emit(
            ixc_state.NAS,
            {
                "envelope": envelope("bench"),
                "nas_id": NAS_ID,
                "name": "bras-1",
                "ip": "127.0.0.1",
                "vendor": "MIKROTIK",
                "secret_ref": SECRET_REF,
                "coa_port": nas.port,
            },
        )
        for contract in contracts:
            login = isp.get("radusuarios", contract)["login"]
            await sink.emit(
                ACCOUNTING,
                {
                    "envelope": envelope("bench"),
                    "login": login,
                    "status_type": "start",
                    "session_id": f"s-{contract}",
                    "nas_id": NAS_ID,
                    "nas_ip_address": "127.0.0.1",
                    "event_at": now,
                    "received_at": now,
                },
            )
        coa_worker = CoaWorker(settings, catalog=catalog)
        await asyncio.to_thread(coa_worker.start)
        coa = CoaThread(coa_worker)
        lane = LaneWatch(settings, catalog.resolve(TRANSACTIONAL_MESSAGES))
        worker = RequestWorker(settings, catalog=catalog)
        await worker.start()
        ingress = IngressService(settings, catalog=catalog)
        await ingress.start()
        tasks = [
            asyncio.create_task(poller.run(args.poll_interval, stop)),
            asyncio.create_task(worker.run()),
        ]
        sent: dict[str, float] = {}
        try:
            async with aiohttp.ClientSession() as http:
                for i, contract in enumerate(contracts):
                    body = json.dumps(
                        {
                            "payment_id": f"E{uuid.uuid4().hex[:16]}",
                            "contract_id": contract,
                            "amount": "89.90",
                            "method": "pix",
                        }
                    ).encode()
                    ts = str(int(time.time()))
                    headers = {
                        "Content-Type": "application/json",
                        "X-Filas-Gateway": "pix-gw",
                        "X-Filas-Timestamp": ts,
                        "X-Filas-Signature": sign(GATEWAY_SECRET, ts, body),
                    }
                    sent[contract] = time.monotonic()
                    async with http.post(
                        f"{ingress.base_url}/v1/webhooks/payments", data=body, headers=headers
                    ) as response:
                        if response.status != 202:
                            raise SystemExit(f"webhook refused: {await response.text()}")
                    delay = sent[contract] + 1.0 / args.rate - time.monotonic()
                    if delay > 0 and i + 1 < len(contracts):
                        await asyncio.sleep(delay)
            for _ in range(600):  # at most 60 s for the last ACKs
                if len(coa.acked) >= len(contracts) and len(lane.first) >= len(contracts):
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            worker.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await worker.close()
            await ingress.stop()
            coa.stop()
            lane.stop()
            nas.close()
            sim.stop()
    result = PaymentRun(
        sent=len(contracts),
        nas_ack_ms=[(coa.acked[c] - sent[c]) * 1000 for c in contracts if c in coa.acked],
        notice_ms=[(lane.first[c] - sent[c]) * 1000 for c in contracts if c in lane.first],
        notices=lane.count,
    )
    print(
        f"{len(result.nas_ack_ms)}/{len(contracts)} payments ACKed at the NAS ({coa.other} "
        f"other CoA outcomes), {sum(lane.count.values())} payment messages for "
        f"{len(lane.count)} contracts, first poll emitted {first.emitted} events, poll every "
        f"{args.poll_interval}s, {args.rate:g} webhooks/s"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=60)
    parser.add_argument("--rate", type=float, default=5.0, help="webhooks per second")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="IXC poll period, s")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
