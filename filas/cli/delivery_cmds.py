"""``filas delivery ...``: campaign delivery workers (SMTP relay, SMS / WhatsApp HTTP gateways)."""

from __future__ import annotations

import asyncio
import signal
import time

import click

from filas.logs import configure_logging
from filas.settings import Settings


@click.group("delivery")
def delivery() -> None:
    """Deliver campaign messages: transactional lane first, shared rate limits, no double sends."""


@delivery.command("serve")
@click.option(
    "--channel",
    type=click.Choice(["email", "sms", "whatsapp"]),
    required=True,
    help="Channel this worker delivers (FILAS_DELIVERY__<CHANNEL>__* configures the provider).",
)
@click.option("--stats-every", default=30.0, show_default=True, help="Seconds between stat lines.")
@click.option(
    "--exit-when-idle",
    type=float,
    default=None,
    help="Stop after this many seconds without a message (batch runs, benchmarks).",
)
@click.pass_obj
def serve(
    settings: Settings, channel: str, stats_every: float, exit_when_idle: float | None
) -> None:
    """Consume campaign.messages.<lane> (highest lane first) and deliver this channel's messages.

    Every instance of a channel takes rate_per_s x its partitions / all partitions, so the
    configured rate holds for the whole group. Results go to campaign.delivery-results, every
    send is recorded in campaign.delivery-ledger, failures go to the lane's DLQ.
    """
    from consumers.delivery.worker import CHANNELS, DeliveryWorker
    from filas.metrics import serve_metrics

    logs = configure_logging(settings, "campaign-delivery")
    serve_metrics(settings.metrics)
    name = next(c for c in CHANNELS if c == channel)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        worker = DeliveryWorker(settings, name)
        await worker.start()
        click.echo(f"delivery worker up: channel {channel} group {worker.group_id}", err=True)
        next_stats = time.monotonic() + stats_every
        last_work = time.monotonic()
        try:
            while not stop.is_set():
                if await worker.run_once():
                    last_work = time.monotonic()
                elif exit_when_idle is not None and time.monotonic() - last_work > exit_when_idle:
                    break
                if time.monotonic() >= next_stats:
                    next_stats += stats_every
                    stats = worker.stats.as_dict()
                    click.echo(" ".join(f"{k}={v}" for k, v in stats.items() if v), err=True)
        finally:
            await worker.close()
            click.echo(
                "stats " + " ".join(f"{k}={v}" for k, v in worker.stats.as_dict().items()), err=True
            )

    try:
        asyncio.run(run())
    finally:
        logs.close()


COMMANDS = (delivery,)
