"""The ``filas`` command: a thin entrypoint that builds Settings once and hands them down."""

from __future__ import annotations

import sys

import click

from filas.cli import (
    campaign_cmds,
    config_cmd,
    delivery_cmds,
    dlq_cmds,
    emit_cmd,
    homologation_cmds,
    ixc_cmds,
    monitor_cmds,
    network_cmds,
    platform_cmds,
    radius_cmds,
    request_cmds,
    schema_cmds,
    sink_cmds,
    status_cmd,
    tail_cmd,
    topic_cmds,
)
from filas.cli.service_logging import configure_cli_logging
from filas.errors import FilasError
from filas.settings import Settings


@click.group()
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Filas: queues between IXC Provedor and the work it asks for."""
    ctx.obj = Settings()
    configure_cli_logging(ctx.obj)


for _module in (
    platform_cmds,
    config_cmd,
    topic_cmds,
    schema_cmds,
    emit_cmd,
    tail_cmd,
    ixc_cmds,
    sink_cmds,
    radius_cmds,
    request_cmds,
    dlq_cmds,
    status_cmd,
    monitor_cmds,
    campaign_cmds,
    delivery_cmds,
    network_cmds,
    homologation_cmds,
):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Run the CLI; a FilasError becomes a one-line message and exit code 2, not a traceback."""
    try:
        cli(standalone_mode=False)
    except FilasError as exc:
        click.echo(f"filas: error [{exc.code}]: {exc}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
