"""Rate limits in each NAS vendor's dialect (Access-Accept and CoA-Request alike).

Filas carries a rate as Mikrotik's ``upload/download`` text (``50M/100M``; the settings'
block/reduced rates use it too), because IXC does. ``rate_attributes`` turns it into the
attributes the NAS vendor (``Nas.vendor``) reads, with attribute codes from FreeRADIUS's
dictionaries (``/usr/share/freeradius/dictionary.{mikrotik,huawei,erx,cisco}``):

- MIKROTIK: ``Mikrotik-Rate-Limit = "50M/100M"`` (verbatim, bursts included);
- HUAWEI: ``Huawei-Input-Average-Rate`` = upload, ``Huawei-Output-Average-Rate`` = download,
  bit/s;
- JUNIPER: ``ERX-Service-Activate:1`` = ``juniper_rate_service`` filled in (a dynamic service
  profile the BNG defines);
- CISCO: two ``Cisco-AVPair`` ``lcp:interface-config`` lines, ``rate-limit input/output`` in bit/s;
- ACCEL_PPP: ``Filter-Id = "download/upload"`` in kbit/s (accel-ppp ``[shaper] attr=Filter-Id``);
- OTHER: none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AttributeValue = str | int | tuple[str, ...]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)([kKmMgG]?)\s*/\s*(\d+(?:\.\d+)?)([kKmMgG]?)")
_UNIT_KBPS = {"": 0.001, "k": 1, "m": 1000, "g": 1_000_000}

DEFAULT_JUNIPER_SERVICE = "filas-rate({down_bps},{up_bps})"


@dataclass(frozen=True, slots=True)
class Rate:
    up_kbps: int
    down_kbps: int

    @property
    def up_bps(self) -> int:
        return self.up_kbps * 1000

    @property
    def down_bps(self) -> int:
        return self.down_kbps * 1000


def parse_rate(text: str | None) -> Rate | None:
    """The first ``rx/tx`` pair of a Mikrotik rate (``256k/256k``, ``50M/100M 60M/120M ...``);
    a bare number is bit/s as in RouterOS. None when it is not a rate."""
    if not text:
        return None
    match = _RATE.match(text)
    if match is None:
        return None
    up = float(match[1]) * _UNIT_KBPS[match[2].lower()]
    down = float(match[3]) * _UNIT_KBPS[match[4].lower()]
    return Rate(up_kbps=max(1, round(up)), down_kbps=max(1, round(down)))


def _cisco_rate_limit(direction: str, index: int, bps: int) -> str:
    normal = max(8000, bps // 8 * 3 // 2)  # 1.5 s of traffic, in bytes (Cisco's CAR guidance)
    return (
        f"lcp:interface-config#{index}=rate-limit {direction} {bps} {normal} {2 * normal} "
        "conform-action transmit exceed-action drop"
    )


def rate_attributes(
    vendor: str, rate_text: str | None, juniper_service: str = DEFAULT_JUNIPER_SERVICE
) -> dict[str, AttributeValue]:
    """The reply/CoA attributes that carry ``rate_text`` to a NAS of ``vendor``."""
    if not rate_text:
        return {}
    if vendor == "MIKROTIK":
        return {"Mikrotik-Rate-Limit": rate_text}
    rate = parse_rate(rate_text)
    if rate is None:
        return {}
    if vendor == "HUAWEI":
        return {
            "Huawei-Input-Average-Rate": rate.up_bps,
            "Huawei-Output-Average-Rate": rate.down_bps,
        }
    if vendor == "JUNIPER":
        service = juniper_service.format(
            down_bps=rate.down_bps,
            up_bps=rate.up_bps,
            down_kbps=rate.down_kbps,
            up_kbps=rate.up_kbps,
        )
        return {"ERX-Service-Activate:1": service}
    if vendor == "CISCO":
        return {
            "Cisco-AVPair": (
                _cisco_rate_limit("input", 1, rate.up_bps),
                _cisco_rate_limit("output", 2, rate.down_bps),
            )
        }
    if vendor == "ACCEL_PPP":
        return {"Filter-Id": f"{rate.down_kbps}/{rate.up_kbps}"}
    return {}


# Attribute names every dialect above may use (the CoA encoder and the reply cache know them).
RATE_ATTRIBUTES = frozenset(
    {
        "Mikrotik-Rate-Limit",
        "Huawei-Input-Average-Rate",
        "Huawei-Output-Average-Rate",
        "ERX-Service-Activate:1",
        "Cisco-AVPair",
        "Filter-Id",
    }
)


def event_value(value: AttributeValue) -> str:
    """One string per attribute for events (multi-valued attributes joined by newlines)."""
    return "\n".join(value) if isinstance(value, tuple) else str(value)
