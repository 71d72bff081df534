"""``filas campaigns ...``: define campaigns, pause/resume/cancel them, run the fan-out.

``create`` reads a YAML (or JSON) file, checks the templates locally (sandboxed Jinja) and
emits a ``create`` command on ``campaign.definitions``; the fan-out (``filas campaigns fanout``)
validates and renders every recipient before publishing any message.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import yaml

from filas.catalog.campaigns import CAMPAIGNS
from filas.cli.service_logging import service_logging
from filas.errors import ConfigurationError, FilasError
from filas.metrics import serve_metrics
from filas.settings import Settings
from producers.envelope import envelope

if TYPE_CHECKING:
    from rich.table import Table

    from streams.campaigns.status import CampaignStatus

SOURCE = "filas-cli"
CHANNELS = ("email", "sms", "whatsapp")


def _minutes(text: str) -> int:
    hours, _, minutes = text.strip().partition(":")
    value = int(hours) * 60 + int(minutes or 0)
    if not 0 <= value <= 1440:
        raise ConfigurationError(f"send window time {text!r} is not between 00:00 and 24:00")
    return value


def campaign_record(
    definition: dict[str, Any], *, campaign_id: str | None = None, requested_by: str | None = None
) -> dict[str, Any]:
    """A ``create`` Campaign record from a definition file's mapping (docs/campaigns.md)."""
    from streams.campaigns.plan import CampaignError, compile_template

    known = {
        "name", "channels", "subject", "body", "audience", "schedule_at", "send_window",
        "timezone", "frequency_cap_per_day", "lane", "purpose", "requested_by", "campaign_id",
    }  # fmt: skip
    unknown = set(definition) - known
    if unknown:
        raise ConfigurationError(f"campaign file: unknown keys {sorted(unknown)}")
    for key in ("name", "channels", "body"):
        if not definition.get(key):
            raise ConfigurationError(f"campaign file: {key!r} is required")
    channels = [str(c) for c in definition["channels"]]
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise ConfigurationError(f"campaign file: unknown channels {bad}; use {list(CHANNELS)}")
    try:
        for what in ("subject", "body"):
            if definition.get(what):
                compile_template(str(definition[what]), what)
    except CampaignError as exc:
        raise ConfigurationError(str(exc)) from exc
    audience = dict(definition.get("audience") or {})
    if audience.get("min_amount_overdue") is not None:
        audience["min_amount_overdue"] = Decimal(str(audience["min_amount_overdue"]))
    window = str(definition.get("send_window", "08:00-20:00"))
    start, _, end = window.partition("-")
    schedule = definition.get("schedule_at")
    if isinstance(schedule, str):
        schedule = datetime.fromisoformat(schedule)
    if isinstance(schedule, datetime) and schedule.tzinfo is None:
        raise ConfigurationError("campaign file: schedule_at needs a UTC offset")
    return {
        "envelope": envelope(SOURCE),
        "campaign_id": campaign_id or str(definition.get("campaign_id") or uuid.uuid4()),
        "name": str(definition["name"]),
        "command": "create",
        "channels": channels,
        "template": {"subject": definition.get("subject"), "body": str(definition["body"])},
        "audience": audience,
        "schedule_at": schedule,
        "send_window_start_min": _minutes(start),
        "send_window_end_min": _minutes(end or "24:00"),
        "timezone": str(definition.get("timezone", "America/Sao_Paulo")),
        "frequency_cap_per_day": definition.get("frequency_cap_per_day"),
        "lane": str(definition.get("lane", "bulk")),
        "purpose": str(definition.get("purpose", "marketing")),
        "requested_by": requested_by or definition.get("requested_by"),
    }


def command_record(campaign_id: str, command: str, requested_by: str | None) -> dict[str, Any]:
    """A pause/resume/cancel command; the definition fields are required by the schema only."""
    return {
        "envelope": envelope(SOURCE),
        "campaign_id": str(uuid.UUID(campaign_id)),
        "name": "",
        "command": command,
        "channels": [],
        "template": {"subject": None, "body": ""},
        "audience": {},
        "lane": "bulk",
        "requested_by": requested_by,
    }


def _emit(settings: Settings, record: dict[str, Any]) -> None:
    from filas.bootstrap import build_producer

    with build_producer(settings) as producer:
        producer.emit_sync(CAMPAIGNS, record)


@click.group("campaigns")
def campaigns() -> None:
    """Campaigns: e-mail/SMS fan-out with consent, quiet hours and frequency caps."""


@campaigns.command("create")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--requested-by", default=None, help="Operator, for the audit trail.")
@click.pass_obj
def create(settings: Settings, path: Path, requested_by: str | None) -> None:
    """Define a campaign from a YAML/JSON file and queue it (prints the campaign id)."""
    definition = yaml.safe_load(path.read_text())
    if not isinstance(definition, dict):
        raise ConfigurationError(f"{path}: expected a mapping")
    record = campaign_record(definition, requested_by=requested_by)
    _emit(settings, record)
    click.echo(record["campaign_id"])


def _command(name: str) -> click.Command:
    @click.argument("campaign_id")
    @click.option("--requested-by", default=None, help="Operator, for the audit trail.")
    @click.pass_obj
    def run(settings: Settings, campaign_id: str, requested_by: str | None) -> None:
        try:
            record = command_record(campaign_id, name, requested_by)
        except ValueError as exc:
            raise ConfigurationError(f"{campaign_id!r} is not a campaign id (UUID)") from exc
        _emit(settings, record)
        click.echo(f"{name} sent for {record['campaign_id']}")

    run.__doc__ = f"{name.capitalize()} a campaign (takes effect at the next batch)."
    return click.command(name)(run)


for _name in ("pause", "resume", "cancel"):
    campaigns.add_command(_command(_name))


def opt_out_record(
    customer_id: str, *, marketing: bool, channels: list[str], source: str | None
) -> dict[str, Any]:
    """The customer's complete current choice (the topic is compacted: it replaces the last)."""
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise ConfigurationError(f"unknown channels {bad}; use {list(CHANNELS)}")
    return {
        "envelope": envelope(SOURCE),
        "customer_id": customer_id,
        "marketing": marketing,
        "channels": sorted(set(channels)),
        "source": source,
    }


@campaigns.command("opt-out")
@click.argument("customer_id")
@click.option("--marketing/--no-marketing", default=False, help="Withdraw marketing consent.")
@click.option("--channel", "channels", multiple=True, help="Channel refused entirely (repeat).")
@click.option("--source", default="ixc-operator", show_default=True, help="Where it was asked.")
@click.pass_obj
def opt_out(
    settings: Settings, customer_id: str, marketing: bool, channels: tuple[str, ...], source: str
) -> None:
    """Record a customer's LGPD choice on campaign.opt-outs (replaces the previous one; no
    options = opted back in)."""
    from filas.bootstrap import build_producer
    from filas.catalog.campaigns import OPT_OUTS

    record = opt_out_record(
        customer_id, marketing=marketing, channels=list(channels), source=source
    )
    with build_producer(settings) as producer:
        producer.emit_sync(OPT_OUTS, record)
    click.echo(
        f"opt-out recorded for customer {customer_id}: marketing={marketing} "
        f"channels={record['channels']}"
    )


def progress_line(record: dict[str, Any], width: int = 30) -> str:
    """One human line: status, a bar of queued/planned, skips, error."""
    planned, queued = int(record["planned"]), int(record["queued"])
    share = 1.0 if planned == 0 else min(queued / planned, 1.0)
    filled = round(share * width)
    skips = {
        "no_consent": record["skipped_no_consent"],
        "opt_out": record["skipped_opt_out"],
        "invalid_address": record["skipped_invalid_address"],
        "frequency_cap": record["skipped_frequency_cap"],
        "held_outage": record["held_outage"],
    }
    line = (
        f"{record['status']:<9} [{'#' * filled}{'.' * (width - filled)}] {queued}/{planned} "
        f"queued ({share:.0%}), {record['matched']} matched; skipped "
        + ", ".join(f"{k}={v}" for k, v in skips.items())
    )
    if record.get("error"):
        line += f"\nerror [{record.get('error_code')}]: {record['error']}"
    return line


@campaigns.command("progress")
@click.argument("campaign_id")
@click.option("--json", "as_json", is_flag=True, help="The latest progress event as JSON.")
@click.pass_obj
def progress(settings: Settings, campaign_id: str, as_json: bool) -> None:
    """Fan-out progress of a campaign (latest campaign.progress event)."""
    from filas.bootstrap import build_serdes
    from filas.catalog import Catalog
    from streams.campaigns.runner import load_progress

    try:
        cid = str(uuid.UUID(campaign_id))
    except ValueError as exc:
        raise ConfigurationError(f"{campaign_id!r} is not a campaign id (UUID)") from exc
    catalog = Catalog.build(settings.topics.prefix)
    latest = load_progress(settings, catalog, build_serdes(settings), 60.0).get(cid)
    if latest is None:
        raise FilasError(f"no progress yet for campaign {cid}", code="campaign_unknown")
    if as_json:
        click.echo(json.dumps(latest, default=str, sort_keys=True))
    else:
        click.echo(progress_line(latest))


def status_renderable(status: CampaignStatus) -> Table:
    """The human view: a progress bar of finished/total messages and one row per count."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    total = status.total
    share = 1.0 if total == 0 else min(status.finished / total, 1.0)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(total, 1), completed=min(status.finished, max(total, 1)), width=40),
        f"{status.finished}/{total} ({share:.0%})",
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("campaign", f"{status.campaign_id}  {status.status} ({status.lane} lane)")
    grid.add_row("progress", bar)
    grid.add_row("sent", f"{status.sent} ({status.delivered} delivery confirmed)")
    grid.add_row("failed", str(status.failed))
    grid.add_row("skipped", f"{status.skipped} (at send: opt-out, window, cap, address)")
    grid.add_row("cancelled", str(status.cancelled))
    grid.add_row("pending", str(status.pending))
    grid.add_row("rate", f"{status.rate_per_s:.2f} msgs/s (last minute)")
    skips = ", ".join(f"{k}={v}" for k, v in status.fanout_skipped.items())
    grid.add_row("fan-out", f"{status.queued}/{status.planned} queued; {skips}")
    if status.error:
        grid.add_row("error", Text(f"[{status.error_code}] {status.error}"))  # no markup
    return grid


@campaigns.command("status")
@click.argument("campaign_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (a line per refresh).")
@click.option("--watch", is_flag=True, help="Refresh until every message is settled (Ctrl-C).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
@click.pass_obj
def status(
    settings: Settings, campaign_id: str, as_json: bool, watch: bool, interval: float
) -> None:
    """Sent / failed / skipped / cancelled / pending and the send rate of a campaign, from its
    progress events and delivery results (decision 0073)."""
    from rich.console import Console
    from rich.live import Live

    from filas.bootstrap import build_serdes
    from filas.catalog import Catalog
    from streams.campaigns.status import StatusReader

    try:
        cid = str(uuid.UUID(campaign_id))
    except ValueError as exc:
        raise ConfigurationError(f"{campaign_id!r} is not a campaign id (UUID)") from exc
    serdes = build_serdes(settings)
    try:
        reader = StatusReader(settings.kafka, Catalog.build(settings.topics.prefix), serdes, cid)
        current = reader.refresh()
        if not watch:
            if as_json:
                click.echo(json.dumps(current.as_dict(), sort_keys=True))
            else:
                Console().print(status_renderable(current))
            return
        try:
            if as_json:
                click.echo(json.dumps(current.as_dict(), sort_keys=True))
                while not current.settled:
                    time.sleep(interval)
                    current = reader.refresh()
                    click.echo(json.dumps(current.as_dict(), sort_keys=True))
                return
            with Live(status_renderable(current), auto_refresh=False) as live:
                while not current.settled:
                    time.sleep(interval)
                    current = reader.refresh()
                    live.update(status_renderable(current), refresh=True)
        except KeyboardInterrupt:
            return
    finally:
        serdes.close()


@campaigns.command("fanout")
@click.option("--stats-every", default=30.0, show_default=True, help="Seconds between stat lines.")
@click.pass_obj
def fanout(settings: Settings, stats_every: float) -> None:
    """Expand campaigns into one message per recipient and channel (long-running).

    Serves /metrics on FILAS_METRICS__PORT; progress goes to campaign.progress.
    """
    from streams.campaigns.runner import FanoutService

    with service_logging(settings, "campaign-fanout"):
        serve_metrics(settings.metrics)
        service = FanoutService(settings)
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        service.start()
        click.echo("campaign fan-out up", err=True)
        next_stats = time.monotonic() + stats_every
        try:
            while not stop.is_set():
                service.run_once()
                if time.monotonic() >= next_stats:
                    next_stats += stats_every
                    runs = service.engine.runs if service.engine else {}
                    click.echo(
                        json.dumps(
                            {
                                "live": service.live,
                                "campaigns": {cid: r.status for cid, r in runs.items()},
                                "queued": {cid: r.queued for cid, r in runs.items()},
                                "outage_notices": service.notices_sent,
                                "at": datetime.now(UTC).isoformat(),
                            }
                        ),
                        err=True,
                    )
        finally:
            service.close()


# The issue spells it ``filas campaign status ID``: the same commands under the singular name.
campaign = click.Group(
    "campaign", commands=campaigns.commands, help="Alias of 'filas campaigns'.", hidden=True
)

COMMANDS: list[click.Command] = [campaigns, campaign]
