"""``filas homologation run``: the homologation day (docs/homologation.md)."""

from __future__ import annotations

from pathlib import Path

import click

from filas.settings import Settings


@click.group("homologation")
def homologation() -> None:
    """Homologation run: a generated ISP's day through every processor, on one machine."""


@homologation.command("run")
@click.option("--customers", default=10_000, show_default=True, type=click.IntRange(1))
@click.option("--devices", default=2_000, show_default=True, type=click.IntRange(0))
@click.option("--nas", default=20, show_default=True, type=click.IntRange(1, 254))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option(
    "--login-rate",
    default=500.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Access-Requests per second in the morning logins.",
)
@click.option(
    "--storm-window",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds over which the POP's subscribers re-authenticate.",
)
@click.option(
    "--payment-batch",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Contracts blocked then unblocked (0: 1%% of the live sessions, 5..200).",
)
@click.option(
    "--request-payments",
    default=20,
    show_default=True,
    type=click.IntRange(0),
    help="Signed payment webhooks through the ingress (contracts blocked all day; plus 5 trust "
    "unblocks, 5 tickets and one refused request).",
)
@click.option("--no-campaign", is_flag=True, help="Leave the marketing campaign out.")
@click.option(
    "--exit",
    "exit_after",
    is_flag=True,
    help="Stop everything after the summary instead of leaving the status page up.",
)
@click.option(
    "--use-running-platform",
    is_flag=True,
    help="FILAS_* already names a running Kafka/registry/ClickHouse: start none.",
)
@click.option(
    "--loopback-octet",
    default=0,
    show_default=True,
    type=click.IntRange(0, 255),
    help="NAS and devices on 127.<octet>.x.y (another value lets two runs coexist).",
)
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the summary and the run's facts as JSON here.",
)
@click.option(
    "--web-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Status page port (0: a free port).",
)
@click.pass_obj
def run(
    settings: Settings,
    customers: int,
    devices: int,
    nas: int,
    seed: int,
    login_rate: float,
    storm_window: float,
    payment_batch: int,
    request_payments: int,
    no_campaign: bool,
    exit_after: bool,
    use_running_platform: bool,
    loopback_octet: int,
    summary_json: Path | None,
    web_port: int,
) -> None:
    """Start the platform, the IXC SIMULATOR and every processor, drive a day, print a summary.

    Steps whose processor is not available are skipped with the reason. Logs go to
    <FILAS_LOCAL__HOME>/logs/homologation-<run id>/; the status page stays up until Ctrl-C
    unless --exit.
    """
    from filas.homologation.run import HomologationConfig, run_homologation

    config = HomologationConfig(
        customers=customers,
        devices=devices,
        nas=nas,
        seed=seed,
        login_rate=login_rate,
        storm_window_s=storm_window,
        payment_batch=payment_batch,
        request_payments=request_payments,
        campaign=not no_campaign,
        exit_after=exit_after,
        use_running_platform=use_running_platform,
        loopback_octet=loopback_octet,
        summary_json=summary_json,
        web_port=web_port,
    )
    raise SystemExit(run_homologation(settings, config))


COMMANDS: list[click.Command] = [homologation]
