"""``filas ping serve`` and ``filas alerts serve``: ICMP monitoring (docs/network.md)."""

from __future__ import annotations

import asyncio
import signal
import time

import click

from filas.cli.service_logging import service_logging
from filas.metrics import serve_metrics
from filas.settings import Settings


@click.group("ping")
def ping() -> None:
    """ICMP pinger: sweeps the devices of ixc.devices, publishes net.ping-results."""


@ping.command("serve")
@click.option("--stats-every", default=30.0, show_default=True, help="Seconds between stat lines.")
@click.pass_obj
def ping_serve(settings: Settings, stats_every: float) -> None:
    """Probe the devices this instance owns (consumer group FILAS_PING__PINGER_GROUP_ID over
    ixc.devices) every FILAS_PING__<CLASS>__INTERVAL_S; one PingResult per device per round.

    Needs root (raw ICMP socket) or net.ipv4.ping_group_range covering the user.
    """
    from producers.pinger.service import PingerService

    with service_logging(settings, "pinger"):
        serve_metrics(settings.metrics)

        async def run() -> None:
            service = PingerService(settings)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, service.stop)
            runner = asyncio.create_task(service.run())
            click.echo(f"pinger {service.instance} up", err=True)
            while not runner.done():
                await asyncio.wait({runner}, timeout=stats_every)
                s = service.stats
                click.echo(
                    f"devices={len(service.inventory)}"
                    f" partitions={sorted(service.inventory.partitions)}"
                    f" rounds={s.rounds} results={s.results} dead_letters={s.dead_letters}"
                    f" delivery_failures={s.delivery_failures} overruns={s.overruns}",
                    err=True,
                )
            await runner

        asyncio.run(run())
        click.echo("stopped", err=True)


@click.group("alerts")
def alerts() -> None:
    """Alerting processor: net.ping-results -> net.alerts and net.responses."""


@alerts.command("serve")
@click.option("--stats-every", default=30.0, show_default=True, help="Seconds between stat lines.")
@click.pass_obj
def alerts_serve(settings: Settings, stats_every: float) -> None:
    """Judge device health from ping results (hysteresis, degraded, flapping), fold children of a
    down device into one root-cause alert, and emit alerts and automatic outage responses."""
    from streams.network.service import AlertService

    with service_logging(settings, "alerting"):
        serve_metrics(settings.metrics)
        service = AlertService(settings)
        signal.signal(signal.SIGTERM, lambda *_: service.stop())
        service.start()
        click.echo(f"alerting up: {len(service.engine.alerts)} open alerts recovered", err=True)
        next_stats = time.monotonic() + stats_every
        try:
            while not service.stopping:
                service.run_once()
                if time.monotonic() >= next_stats:
                    next_stats += stats_every
                    click.echo(
                        f"results={service.results_in} alerts={service.alerts_out}"
                        f" responses={service.responses_out} open={len(service.engine.alerts)}"
                        f" dead_letters={service.dead_letters}",
                        err=True,
                    )
        except KeyboardInterrupt:
            pass
        finally:
            service.close()
            click.echo("stopped", err=True)


@alerts.command("noc-webhook")
@click.pass_obj
def noc_webhook(settings: Settings) -> None:
    """POST every NOC_NOTIFY of net.responses as JSON to FILAS_PING__NOC_WEBHOOK_URL
    (Idempotency-Key: the response id); refusals and exhausted retries go to net.responses.dlq."""
    from streams.network.noc_webhook import NocWebhook

    with service_logging(settings, "noc-webhook"):
        serve_metrics(settings.metrics)
        hook = NocWebhook(settings)
        stopping: list[bool] = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        click.echo("noc webhook up", err=True)
        try:
            while not stopping:
                hook.run_once()
        except KeyboardInterrupt:
            pass
        finally:
            hook.close()
            click.echo(f"stopped: sent={hook.sent} dead_letters={hook.dead_letters}", err=True)


COMMANDS: list[click.Command] = [ping, alerts]
