"""``filas up`` / ``filas down`` / ``filas platform-status`` / ``filas platform-fetch``.

Thin: options in, ``LocalPlatform`` does the work. The click context object is ``Settings``.
"""

from __future__ import annotations

import click

from filas.local_platform import maven
from filas.local_platform.local import LocalPlatform
from filas.settings import Settings


def _platform(settings: Settings) -> LocalPlatform:
    return LocalPlatform(settings.local, settings.clickhouse)


@click.command("up")
@click.option("--brokers", type=click.IntRange(1, 9), default=1, show_default=True)
@click.option("--secure", is_flag=True, help="Client listener SASL_PLAINTEXT with SCRAM-SHA-256.")
@click.option("--no-registry", is_flag=True, help="Do not start Apicurio Registry.")
@click.option("--no-clickhouse", is_flag=True, help="Do not start ClickHouse.")
@click.pass_obj
def up(
    settings: Settings, brokers: int, secure: bool, no_registry: bool, no_clickhouse: bool
) -> None:
    """Start local Kafka (KRaft), Apicurio Registry and ClickHouse under settings.local.home."""
    running = _platform(settings).up(
        brokers=brokers,
        secure=secure,
        registry=not no_registry,
        clickhouse=not no_clickhouse,
        echo=click.echo,
    )
    word = "was already running" if running.already_running else "is up"
    total = sum(running.start_seconds.values())
    click.echo(f"local platform {word} ({total:.1f}s)")


@click.command("down")
@click.option("--purge", is_flag=True, help="Also delete data, logs and state (not the cache).")
@click.pass_obj
def down(settings: Settings, purge: bool) -> None:
    """Stop every local service started by 'filas up' (data is kept unless --purge)."""
    platform = _platform(settings)
    if purge:
        platform.purge(echo=click.echo)
        return
    stopped = platform.down(echo=click.echo)
    click.echo("nothing was running" if not stopped else f"stopped: {', '.join(stopped)}")


@click.command("platform-status")
@click.pass_obj
def platform_status(settings: Settings) -> None:
    """Show which local services run; exit code 1 when any of them is down."""
    platform = _platform(settings)
    status = platform.status()
    if not status:
        click.echo("local platform not started (filas up)")
        raise SystemExit(1)
    for name, running in status.items():
        click.echo(f"{name:<12} {'running' if running else 'DOWN'}")
    if platform.env_path.exists():
        click.echo(f"environment  {platform.env_path}")
    if not all(status.values()):
        raise SystemExit(1)


@click.command("platform-fetch")
@click.option("--tools", is_flag=True, help="Also fetch Kafka's perf tools (kafka-tools).")
@click.option("--no-registry", is_flag=True, help="Skip the Apicurio download.")
@click.pass_obj
def platform_fetch(settings: Settings, tools: bool, no_registry: bool) -> None:
    """Download the local services from Maven Central into the cache (no start)."""
    local = settings.local
    cache = local.cache_dir or local.home / "cache"
    versions = maven.KafkaVersions(local.kafka_version, local.log4j_version, local.slf4j_version)
    click.echo(f"kafka libs   {maven.fetch_kafka(cache, versions)}")
    if tools:
        click.echo(f"kafka tools  {maven.fetch_kafka_tools(cache, versions)}")
    if not no_registry:
        click.echo(f"apicurio     {maven.fetch_apicurio(cache, local.apicurio_version)}")


COMMANDS: list[click.Command] = [up, down, platform_status, platform_fetch]
