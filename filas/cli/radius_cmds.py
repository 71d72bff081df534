"""``filas radius ...``: the RADIUS gateway (auth + accounting from a local replica)."""

from __future__ import annotations

import asyncio

import click

from filas.logs import configure_logging
from filas.metrics import READINESS, serve_metrics
from filas.monitoring.exporters import register_stats, stats_of
from filas.settings import Settings


@click.group("radius")
def radius() -> None:
    """RADIUS gateway for the ISP's NAS (PPPoE/IPoE/hotspot), answering from a local replica."""


@radius.command("serve")
@click.option("--stats-every", default=30.0, show_default=True, help="Seconds between stat lines.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Gateway processes sharing the ports (SO_REUSEPORT), each with its own replica.",
)
@click.pass_obj
def serve(settings: Settings, stats_every: float, workers: int) -> None:
    """Serve Access/Accounting-Requests on FILAS_RADIUS__AUTH_PORT / ACCT_PORT.

    Reads ixc.subscribers, ixc.contracts and ixc.nas into memory first; NAS secrets come from
    FILAS_RADIUS__NAS_SECRETS (secret_ref -> secret). Events go to radius.* asynchronously.
    """
    if workers > 1:
        from producers.radius.workers import Workers

        pool = Workers(settings, workers, stats_every, lambda line: click.echo(line, err=True))
        pool.start(timeout_s=settings.radius.replica_ready_timeout_s + 60)
        click.echo(
            f"radius gateway up: auth {pool.auth_port} acct {pool.acct_port} ({workers} workers)",
            err=True,
        )
        raise SystemExit(pool.wait())

    from producers.radius.service import GatewayService

    logs = configure_logging(settings, "radius-gateway")
    # /ready answers 503 until the replica is loaded and the UDP ports are bound (decision 0113).
    READINESS.pending()
    serve_metrics(settings.metrics)

    async def run() -> None:
        service = GatewayService(settings)
        register_stats("radius-gateway", lambda: stats_of(service.gateway.stats)())
        register_stats("radius-gateway-events", lambda: stats_of(service.publisher.stats)())
        await service.start()
        READINESS.ready()
        click.echo(
            f"radius gateway up: auth {service.gateway.auth_port} acct {service.gateway.acct_port}",
            err=True,
        )
        try:
            while True:
                await asyncio.sleep(stats_every)
                stats = service.gateway.stats.as_dict()
                events = service.publisher.stats
                click.echo(
                    " ".join(f"{k}={v}" for k, v in stats.items() if v)
                    + f" events_buffered={service.publisher.buffered}"
                    f" events_delivered={events.delivered} events_dropped={events.dropped}",
                    err=True,
                )
        finally:
            await service.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        logs.close()


@radius.command("coa")
@click.option("--stats-every", default=30.0, show_default=True, help="Seconds between stat lines.")
@click.pass_obj
def coa(settings: Settings, stats_every: float) -> None:
    """Send CoA/Disconnect-Requests (RFC 5176) for ixc.contract-status events.

    Targets the live sessions of the contract's logins (replica + radius.accounting), sends to
    the NAS's coa_port with its FILAS_RADIUS__NAS_SECRETS secret, records every ACK/NAK/timeout
    in radius.coa-results, and skips status events already in that topic (idempotency ledger).
    """
    import time

    from streams.radius.coa_worker import CoaWorker

    logs = configure_logging(settings, "radius-coa")
    serve_metrics(settings.metrics)
    worker = CoaWorker(settings)
    register_stats("radius-coa", stats_of(worker.processor.stats))
    worker.start()
    click.echo("radius coa worker up", err=True)
    next_stats = time.monotonic() + stats_every
    try:
        while True:
            worker.run_once()
            if time.monotonic() >= next_stats:
                next_stats += stats_every
                click.echo(
                    " ".join(f"{k}={v}" for k, v in vars(worker.processor.stats).items()), err=True
                )
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        worker.close()
        logs.close()


COMMANDS: list[click.Command] = [radius]
