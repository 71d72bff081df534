"""``filas monitor serve``: lag passes forever, history events, /metrics and the status page."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import click
from prometheus_client import REGISTRY

from filas.cli.service_logging import service_logging
from filas.metrics import serve_metrics
from filas.monitoring.history_store import HistoryPoint
from filas.monitoring.service import Monitor
from filas.settings import Settings


@click.group("monitor")
def monitor() -> None:
    """Continuous queue monitoring (lag history, bottleneck findings, status page)."""


@monitor.command("serve")
@click.option("--interval", type=click.FloatRange(min=0.1), default=None, help="Seconds per pass.")
@click.option("--web-port", type=int, default=None, help="Status page port (0: any free port).")
@click.option("--no-publish", is_flag=True, help="Do not publish lag samples and findings.")
@click.pass_obj
def serve(
    settings: Settings, interval: float | None, web_port: int | None, no_publish: bool
) -> None:
    """Sample lag every --interval, run the bottleneck rules (and the dependency rule over
    FILAS_MONITORING__SCRAPE_URLS), publish filas.monitoring.lag / .findings for ClickHouse,
    export gauges on /metrics and serve the status page on FILAS_MONITORING__WEB_PORT.
    """
    from filas.bootstrap import build_producer
    from filas.catalog import Catalog
    from filas.monitoring.collector import LagCollector

    config = settings.monitoring
    every = interval or config.interval_s
    port = web_port if web_port is not None else config.web_port
    catalog = Catalog.build(settings.topics.prefix)
    with service_logging(settings, "monitor"):
        serve_metrics(settings.metrics)
        publisher = None if no_publish or not config.publish else build_producer(settings)
        mon = Monitor(
            LagCollector(settings.kafka, topic_prefix=settings.topics.prefix),
            catalog=catalog,
            publisher=publisher,
            scrape_urls=config.scrape_urls,
        )
        REGISTRY.register(mon.metrics)
        asyncio.run(_serve(settings, mon, every, port))
        if publisher is not None:
            publisher.close(timeout_s=10)


async def _serve(settings: Settings, mon: Monitor, every: float, port: int | None) -> None:
    from aiohttp import web

    from filas.monitoring.web import StatusPage

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    if port is not None:
        page = StatusPage(lambda: mon.last, _history(settings))
        runner = web.AppRunner(page.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.monitoring.web_host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        click.echo(f"status page on http://{settings.monitoring.web_host}:{bound}/", err=True)
    try:
        while not stop.is_set():
            try:
                result = await asyncio.to_thread(mon.run_pass)
                click.echo(
                    f"pass: {len(result.status.groups)} group/topic, "
                    f"{len(result.findings)} findings, {result.published} events",
                    err=True,
                )
            except Exception as exc:  # a broker hiccup must not end the monitor
                click.echo(f"monitor pass failed: {type(exc).__name__}: {exc}", err=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
    finally:
        if runner is not None:
            await runner.cleanup()


def _history(settings: Settings) -> Callable[[], list[HistoryPoint]]:
    from consumers.clickhouse.client import ClickHouse
    from filas.catalog import Catalog
    from filas.monitoring.history_store import lag_history, lag_table

    table = lag_table(Catalog.build(settings.topics.prefix))
    minutes = settings.monitoring.history_minutes

    def read() -> list[HistoryPoint]:
        clickhouse = ClickHouse(settings.clickhouse)
        try:
            return lag_history(clickhouse, table, minutes)
        finally:
            clickhouse.close()

    return read


@monitor.command("grafana")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("deploy/grafana"),
    show_default=True,
)
def grafana(out: Path) -> None:
    """Write the Grafana dashboards (ClickHouse data source) as JSON files."""
    from filas.monitoring.grafana import write_all

    for path in write_all(out):
        click.echo(f"wrote {path}")


COMMANDS: list[click.Command] = [monitor]
