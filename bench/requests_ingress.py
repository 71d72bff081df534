"""Ingress acceptance: requests/s and accept latency vs the same aiohttp server's no-op route.

The ingress (``IngressService``, the same code as ``filas ingress serve``) runs in a child
process on a free port with one extra route, ``POST /noop``, that reads the JSON body and
answers 202 with a small JSON body (no auth, validation or Kafka). One aiohttp client load
generator, shared by both sides, measures:

1. closed loop (``--concurrency`` requests in flight, 128 by default, ``--seconds`` each, in
   alternating ~2 s rounds): accepted requests/s on ``POST /v1/requests`` (token auth,
   validation, QUEUED status + request on the lane, both acknowledged by Kafka with acks=all)
   vs ``POST /noop`` -> ratio (goal >= 0.5), and the server process's CPU per request on each
   (all its threads). Enough requests in flight to saturate both sides (decision 0132): an
   accept waits ~linger + a broker round trip for its acks, so 32 in flight capped the ingress
   near 32 / 8 ms = 4,000/s with CPU to spare, a latency figure rather than what it accepts at
   most. A warm-up of ``--warmup`` seconds at full load first (the broker's JIT);
2. open loop at ``--rate`` requests/s for ``--seconds``: p99 accept latency of the ingress
   (goal < 50 ms at 500/s), the no-op's p99 as the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import statistics
import time
import uuid
from typing import Any

import aiohttp
from pydantic import SecretStr

from bench.common import report, services
from filas.admin.topics import TopicAdmin
from filas.catalog import Catalog
from filas.catalog.requests import REQUEST_STATUS, REQUESTS_BULK, REQUESTS_HIGH
from filas.settings import IngressSettings, Settings, TopicsSettings

TOKEN = "bench-token"  # noqa: S105 - a bench token
BODY = {"type": "resend_invoice", "params": {"contract_id": "12345", "channel": "email"}}


def _serve(settings_json: str, ready: Any) -> None:
    """Child process: the ingress plus a no-op route on the same aiohttp app."""
    from aiohttp import web

    from producers.ingress.service import IngressService

    settings = Settings.model_validate_json(settings_json)

    async def noop(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"ok": True, "type": body.get("type")}, status=202)

    async def main() -> None:
        service = IngressService(settings)
        app = service.app()
        app.router.add_post("/noop", noop)
        await service.start(app)
        ready.put(service.port)
        await asyncio.Event().wait()

    asyncio.run(main())


async def closed_loop(
    session: aiohttp.ClientSession, url: str, concurrency: int, seconds: float
) -> tuple[float, int]:
    """(accepted per second, non-202 answers)."""
    done = 0
    refused = 0
    stop = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def client() -> None:
        nonlocal done, refused
        while time.perf_counter() < stop:
            async with session.post(url, json=BODY, headers=headers) as response:
                await response.read()
                if response.status == 202:
                    done += 1
                else:
                    refused += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done / (time.perf_counter() - started), refused


async def open_loop(
    session: aiohttp.ClientSession, url: str, rate: float, seconds: float
) -> list[float]:
    """Accept latencies (ms) of requests started on a fixed schedule at ``rate`` per second."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def one() -> None:
        start = time.perf_counter()
        async with session.post(url, json=BODY, headers=headers) as response:
            await response.read()
            if response.status == 202:
                latencies.append((time.perf_counter() - start) * 1000)

    tasks = []
    begin = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


HISTOGRAMS = {
    "accept": ("filas_processing_seconds_bucket", 'stage="accept"'),
    "kafka acks": ("filas_dependency_seconds_bucket", 'dependency="kafka"'),
}
LE = re.compile(r'le="([^"]+)"')


async def server_histograms(
    session: aiohttp.ClientSession, base: str
) -> dict[str, dict[str, float]]:
    """Cumulative bucket counts of the ingress's own accept and Kafka-ack histograms."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    out: dict[str, dict[str, float]] = {}
    for name, (metric, label) in HISTOGRAMS.items():
        for line in text.splitlines():
            le = LE.search(line)
            ours = 'component="ingress"' in line and label in line
            if line.startswith(metric + "{") and ours and le is not None:
                out.setdefault(name, {})[le.group(1)] = float(line.rsplit(" ", 1)[1])
    return out


def quantile_bound(cumulative: dict[str, float], q: float) -> str:
    total = cumulative.get("+Inf", 0.0)
    for le, count in sorted(cumulative.items(), key=lambda kv: float(kv[0])):
        if total and count >= q * total:
            return le
    return "?"


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (librdkafka's included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(base: str, args: argparse.Namespace, pid: int) -> None:
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm-up: schema ids, producer connections, the status view, and the broker's JIT (a
        # broker the bench started itself is cold: its first seconds accept ~30% less).
        await closed_loop(session, f"{base}/v1/requests", 8, 1.0)
        await closed_loop(session, f"{base}/v1/requests", args.concurrency, args.warmup)
        await closed_loop(session, f"{base}/noop", args.concurrency, 1.0)
        # Closed loops in alternating rounds of ~2 s (no-op, ingress, no-op, ...): on a shared
        # machine the load moves within seconds, and both sides should see the same load.
        rounds = max(1, round(args.seconds / 2.0))
        done = {"noop": 0.0, "ingress": 0.0}
        spent = {"noop": 0.0, "ingress": 0.0}
        cpu = {"noop": 0.0, "ingress": 0.0}
        refused = 0
        for _ in range(rounds):
            for side, path in (("noop", "/noop"), ("ingress", "/v1/requests")):
                cpu_before, started = cpu_seconds(pid), time.perf_counter()
                rps, bad = await closed_loop(
                    session, f"{base}{path}", args.concurrency, args.seconds / rounds
                )
                elapsed = time.perf_counter() - started
                done[side] += rps * elapsed
                spent[side] += elapsed
                cpu[side] += cpu_seconds(pid) - cpu_before
                refused += bad if side == "ingress" else 0
        noop_rps, ingress_rps = done["noop"] / spent["noop"], done["ingress"] / spent["ingress"]
        noop_cpu, ingress_cpu = cpu["noop"] / done["noop"], cpu["ingress"] / done["ingress"]
        noop_lat = await open_loop(session, f"{base}/noop", args.rate, args.seconds)
        before = await server_histograms(session, base)
        ingress_lat = await open_loop(session, f"{base}/v1/requests", args.rate, args.seconds)
        after = await server_histograms(session, base)
    for name in after:
        counts = {le: n - before.get(name, {}).get(le, 0.0) for le, n in after[name].items()}
        print(f"server side, open loop, {name}: p50 <= {quantile_bound(counts, 0.5)} s, "
              f"p99 <= {quantile_bound(counts, 0.99)} s")  # fmt: skip
    print(
        f"closed loop x{args.concurrency}: ingress {ingress_rps:.0f}/s ({refused} refused), "
        f"noop {noop_rps:.0f}/s; open loop {args.rate:.0f}/s: ingress p50 "
        f"{statistics.median(ingress_lat):.1f} ms over {len(ingress_lat)}, noop p50 "
        f"{statistics.median(noop_lat):.1f} ms"
    )
    report(
        "requests_ingress_accepted_per_s", ingress_rps, "req/s", ingress_rps / noop_rps,
        "aiohttp no-op route, same server",
    )  # fmt: skip
    # The server's own CPU per request: what the ingress costs, less sensitive than requests/s
    # to what else runs on the machine (the load generator and the broker share it).
    report(
        "requests_ingress_server_cpu_per_request", ingress_cpu * 1000, "ms",
        ingress_cpu / noop_cpu, "no-op route's server CPU per request",
    )  # fmt: skip
    report(
        f"requests_ingress_accept_p99_at_{args.rate:.0f}_per_s", p99(ingress_lat), "ms",
        p99(ingress_lat) / 50.0, "issue 8 budget p99 50 ms",
    )  # fmt: skip
    report(
        f"requests_noop_p99_at_{args.rate:.0f}_per_s", p99(noop_lat), "ms",
        p99(ingress_lat) / p99(noop_lat), "ingress p99 / no-op p99",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop requests/s")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of ingress warm-up")
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=IngressSettings().producer_linger_ms,
        help="the ingress producer's linger.ms (FILAS_INGRESS__PRODUCER_LINGER_MS)",
    )
    args = parser.parse_args()
    with services() as base:
        prefix = f"bench{uuid.uuid4().hex[:8]}-"
        catalog = Catalog.build(prefix)
        specs = [catalog.resolve(s) for s in (REQUESTS_HIGH, REQUESTS_BULK, REQUEST_STATUS)]
        TopicAdmin(base.kafka).apply(catalog.only(*specs))
        settings = base.model_copy(
            update={
                "topics": TopicsSettings(prefix=prefix),
                "ingress": IngressSettings(
                    port=0,
                    tokens={"bench": SecretStr(TOKEN)},
                    rate_per_s=1e9,
                    rate_burst=10**9,
                    producer_linger_ms=args.linger_ms,
                ),
            }
        )
        context = multiprocessing.get_context("spawn")
        ready = context.Queue()
        payload = _settings_json(settings)
        child = context.Process(target=_serve, args=(payload, ready), daemon=True)
        child.start()
        try:
            port = ready.get(timeout=120)
            assert child.pid is not None
            asyncio.run(measure(f"http://127.0.0.1:{port}", args, child.pid))
        finally:
            child.terminate()
            child.join(10)


def _settings_json(settings: Settings) -> str:
    """Settings as JSON with secrets revealed (only handed to our own child process)."""

    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        return value

    return json.dumps(reveal(settings.model_dump()), default=str)


if __name__ == "__main__":
    main()
