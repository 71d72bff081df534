"""One probe round over many targets with bounded concurrency, as PingResult records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from filas.settings import PingClassSettings
from producers.envelope import envelope
from producers.pinger.icmp import ProbeOutcome
from producers.pinger.inventory import Target

SOURCE_SYSTEM = "pinger"


class Prober(Protocol):
    async def probe(
        self, address: str, count: int, interval_s: float, timeout_s: float
    ) -> ProbeOutcome: ...


@runtime_checkable
class RoundProber(Prober, Protocol):
    """A prober that runs a whole round itself (``IcmpProber``: no coroutine per device)."""

    async def sweep_round(
        self,
        targets: Sequence[Any],
        count: int,
        interval_s: float,
        timeout_s: float,
        concurrency: int,
        on_outcome: Callable[[Any, ProbeOutcome], None] | None,
        address_of: Callable[[Any], str],
    ) -> list[ProbeOutcome]: ...


def ping_result(
    target: Target, outcome: ProbeOutcome, probed_at: datetime, instance: str
) -> dict[str, Any]:
    """The ``ixc.filas.network.PingResult`` record of one target's round."""
    return {
        "envelope": envelope(SOURCE_SYSTEM, occurred_at=probed_at),
        "device_id": target.device_id,
        "target_ip": target.ip,
        "probes_sent": outcome.sent,
        "probes_received": outcome.received,
        "loss_ratio": outcome.loss_ratio,
        "rtt_min_ms": outcome.rtt_min_ms,
        "rtt_avg_ms": outcome.rtt_avg_ms,
        "rtt_max_ms": outcome.rtt_max_ms,
        "jitter_ms": outcome.jitter_ms,
        "probed_at": probed_at,
        "pinger_instance": instance,
    }


async def sweep(
    prober: Prober,
    targets: Sequence[Target],
    settings: PingClassSettings,
    concurrency: int,
    on_outcome: Callable[[Target, ProbeOutcome], None] | None = None,
) -> list[tuple[Target, ProbeOutcome]]:
    """Probe every target once (``settings.count`` echoes each), at most ``concurrency`` at a
    time; the outcomes in target order. ``on_outcome`` sees each one as soon as it is known (the
    pinger publishes from there, so an early device's result does not wait for the round)."""
    if not targets:
        return []
    if isinstance(prober, RoundProber):
        done = await prober.sweep_round(
            targets,
            settings.count,
            settings.probe_interval_s,
            settings.timeout_s,
            concurrency,
            on_outcome,
            _address,
        )
        return list(zip(targets, done, strict=True))
    # A prober of one address at a time (test fakes): a worker coroutine per concurrency slot.
    outcomes: list[ProbeOutcome | None] = [None] * len(targets)
    cursor = 0

    async def worker() -> None:
        nonlocal cursor
        while cursor < len(targets):
            i = cursor
            cursor += 1
            t = targets[i]
            outcome = await prober.probe(
                t.ip, settings.count, settings.probe_interval_s, settings.timeout_s
            )
            outcomes[i] = outcome
            if on_outcome is not None:
                on_outcome(t, outcome)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(targets)))))
    return [(t, o) for t, o in zip(targets, outcomes, strict=True) if o is not None]


def _address(target: Target) -> str:
    return target.ip


def now_utc() -> datetime:
    return datetime.now(UTC)
