"""``filas ixc ...``: the IXC source adapter (poller) and its homologation simulator."""

from __future__ import annotations

import asyncio
import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from filas.cli.service_logging import service_logging
from filas.metrics import serve_metrics
from filas.settings import Settings


@click.group("ixc")
def ixc() -> None:
    """IXC Provedor adapter: poll IXC into Kafka, or run an IXC SIMULATOR for homologation."""


@ixc.command("poll")
@click.option("--once", is_flag=True, help="One pass over every form, then exit.")
@click.option(
    "--ixc-timezone",
    default=None,
    help="Time zone of the IXC installation (IXC writes ultima_atualizacao in local time); "
    "default FILAS_IXC__TIMEZONE.",
)
@click.pass_obj
def poll(settings: Settings, once: bool, ixc_timezone: str | None) -> None:
    """Poll IXC (FILAS_IXC__BASE_URL) and emit customers, contracts, logins, NAS and devices.

    Loops every FILAS_IXC__POLL_INTERVAL_S unless --once. The watermark file
    (FILAS_IXC__WATERMARK_PATH) moves only after Kafka acknowledged a page.
    """
    from producers.ixc.service import run_poller

    ixc_timezone = ixc_timezone or settings.ixc.timezone
    try:
        tz = ZoneInfo(ixc_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(f"unknown time zone {ixc_timezone!r}") from exc
    try:
        with service_logging(settings, "ixc-adapter"):
            if not once:
                serve_metrics(settings.metrics)
            report = asyncio.run(run_poller(settings, once=once, tz=tz))
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
        return
    if report is not None:
        for form in report.forms.values():
            click.echo(
                f"{form.form:28} emitted={form.emitted:<6} dead_lettered={form.dead_lettered:<4} "
                f"status_changes={form.status_changes:<4} requests={form.requests}"
            )
        click.echo(f"total emitted={report.emitted} dead_lettered={report.dead_lettered}")


@ixc.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=18080, show_default=True, type=int)
@click.option("--customers", default=100, show_default=True, type=click.IntRange(min=0))
@click.option("--devices", default=40, show_default=True, type=click.IntRange(min=0))
@click.option("--nas", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--error-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--slow-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--malformed-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--slow-s", default=15.0, show_default=True, type=float)
@click.option(
    "--address-plan",
    type=click.Choice(["private", "loopback"]),
    default="private",
    show_default=True,
    help="loopback: NAS and devices on 127.<octet>.x.y (homologation on one machine).",
)
@click.option("--loopback-octet", default=0, show_default=True, type=click.IntRange(0, 255))
@click.pass_obj
def simulate(
    settings: Settings,
    host: str,
    port: int,
    customers: int,
    devices: int,
    nas: int,
    seed: int,
    error_rate: float,
    slow_rate: float,
    malformed_rate: float,
    slow_s: float,
    address_plan: str,
    loopback_octet: int,
) -> None:
    """Run an IXC webservice SIMULATOR (not IXC!) with a deterministic fake ISP.

    Accepts FILAS_IXC__USER / FILAS_IXC__TOKEN (a random token is printed when none is set),
    serves /webservice/v1/<form> like IXC, and /_sim/... admin endpoints to block contracts,
    edit records and inject faults. Ctrl-C stops it.
    """
    from producers.ixc.simulator import FaultPlan, IxcSimulator, SimulatedIsp

    token = settings.ixc.token.get_secret_value() or secrets.token_hex(16)
    isp = SimulatedIsp(
        seed=seed,
        customers=customers,
        devices=devices,
        nas=nas,
        address_plan=address_plan,
        loopback_octet=loopback_octet,
    )
    faults = FaultPlan(
        error_rate=error_rate,
        slow_rate=slow_rate,
        malformed_rate=malformed_rate,
        slow_s=slow_s,
        seed=seed,
    )
    simulator = IxcSimulator(isp, user=settings.ixc.user, token=token, faults=faults)

    async def serve() -> None:
        base_url = await simulator.start(host, port)
        click.echo(f"IXC SIMULATOR (homologation only) at {base_url}, seed {seed}")
        if not settings.ixc.token.get_secret_value():
            # A throwaway simulator token, printed so the poller can be pointed at it.
            click.echo(f"export FILAS_IXC__BASE_URL={base_url} FILAS_IXC__TOKEN={token}")
        try:
            await asyncio.Event().wait()
        finally:
            await simulator.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        click.echo("simulator stopped", err=True)


COMMANDS: list[click.Command] = [ixc]
