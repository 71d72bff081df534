"""``filas ingress serve`` and ``filas requests work``: service requests (docs/requests.md)."""

from __future__ import annotations

import asyncio

import click

from filas.logs import configure_logging
from filas.metrics import serve_metrics
from filas.settings import Settings


@click.group("ingress")
def ingress() -> None:
    """HTTP API where clients submit service requests for IXC."""


@ingress.command("serve")
@click.pass_obj
def serve(settings: Settings) -> None:
    """Serve the ingress on FILAS_INGRESS__HOST:PORT (OpenAPI at /openapi.json).

    Tokens: FILAS_INGRESS__TOKENS='{"client":"token"}'; payment gateways:
    FILAS_INGRESS__WEBHOOK_SECRETS='{"gateway":"secret"}'.
    """
    from producers.ingress.service import IngressService

    logs = configure_logging(settings, "ingress")
    serve_metrics(settings.metrics)

    async def run() -> None:
        service = IngressService(settings)
        await service.start()
        click.echo(f"ingress up: {service.base_url}", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await service.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        logs.close()


@click.group("requests")
def requests_group() -> None:
    """Workers that carry queued service requests to IXC."""


@requests_group.command("work")
@click.pass_obj
def work(settings: Settings) -> None:
    """Consume requests.high then requests.bulk and call IXC (FILAS_IXC__*), with bounded
    concurrency, a calls/s cap, retries and the status ledger (requests.status)."""
    from consumers.ixc_requests.worker import RequestWorker

    logs = configure_logging(settings, "ixc-requests")
    serve_metrics(settings.metrics)

    async def run() -> None:
        worker = RequestWorker(settings)
        await worker.start()
        click.echo("ixc requests worker up", err=True)
        try:
            await worker.run()
        finally:
            await worker.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        logs.close()


COMMANDS: list[click.Command] = [ingress, requests_group]
