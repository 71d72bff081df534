"""Parsers for IXC's all-strings values: dates, S/N flags, ids, money, rates.

IXC's webservice returns every value as a string, dates as ``"2024-05-01 10:20:30"`` in the
installation's local time zone (not UTC), and empty dates as ``""`` or ``"0000-00-00 00:00:00"``.
Each parser raises ``ValueError`` with a short reason; ``mapping`` turns that into an
``IxcMappingError`` naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

IXC_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ZERO_DATES = frozenset({"", "0000-00-00 00:00:00", "0000-00-00"})

_RATE = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*([kKmMgG]?)\s*$")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")


def text(record: Mapping[str, str], field: str) -> str:
    """The stripped value; a missing key is an error (IXC always sends every column)."""
    if field not in record:
        raise KeyError(field)
    value = record[field]
    if not isinstance(value, str):
        # IXC promises strings; anything else means the answer is not what we think it is.
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value.strip()


def optional_text(record: Mapping[str, str], field: str) -> str | None:
    """The stripped value, or None when the column is absent, empty or IXC's ``0``."""
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    value = value.strip()
    return None if value in ("", "0") else value


def ixc_datetime(value: str, tz: ZoneInfo) -> datetime | None:
    """An IXC local datetime as an aware UTC datetime; None for IXC's empty/zero dates."""
    value = value.strip()
    if value in ZERO_DATES:
        return None
    try:
        local = datetime.strptime(value, IXC_DATETIME_FORMAT)
    except ValueError:
        raise ValueError(f"not an IXC datetime ({IXC_DATETIME_FORMAT}): {value!r}") from None
    return local.replace(tzinfo=tz).astimezone(UTC)


def flag(value: str) -> bool:
    """IXC's S/N (sim/não) flags; some forms use 1/0."""
    normalized = value.strip().upper()
    if normalized in ("S", "1", "Y"):
        return True
    if normalized in ("N", "0", ""):
        return False
    raise ValueError(f"expected S or N, got {value!r}")


def identifier(value: str) -> str:
    """A positive integer id kept as text (ids are Kafka keys, compared as strings downstream)."""
    value = value.strip()
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"expected a positive integer id, got {value!r}")
    return str(int(value))


def money(value: str) -> Decimal | None:
    """BRL amount with two decimals; IXC uses a dot, some screens a comma. Empty is None."""
    value = value.strip()
    if value == "":
        return None
    try:
        amount = Decimal(value.replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite() or amount.adjusted() >= 10:
        raise ValueError(f"amount out of range for decimal(12,2): {value!r}")
    return amount.quantize(Decimal("0.01"))


def rate_kbps(value: str) -> int | None:
    """A rate limit as kbit/s: ``"102400"`` (already kbit/s), ``"100M"``, ``"512k"``, ``"1G"``."""
    if value.strip() in ("", "0"):
        return None
    match = _RATE.match(value)
    if match is None:
        raise ValueError(f"not a rate (e.g. 100M, 512k, 102400): {value!r}")
    number = Decimal(match.group(1).replace(",", "."))
    factor = {"": 1, "K": 1, "M": 1000, "G": 1_000_000}[match.group(2).upper()]
    return int(number * factor)


def mac_address(value: str) -> str | None:
    """MAC in upper-case colon form; empty is None."""
    value = value.strip()
    if value == "":
        return None
    if _MAC.match(value) is None:
        raise ValueError(f"not a MAC address: {value!r}")
    digits = re.sub(r"[^0-9A-Fa-f]", "", value).upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def digits(value: str) -> str | None:
    """Only the digits of a document or phone number; None when there are none."""
    only = re.sub(r"\D", "", value)
    return only or None


def ipv4(value: str) -> str | None:
    """A dotted IPv4 address; empty (or IXC's ``0.0.0.0``) is None."""
    value = value.strip()
    if value in ("", "0"):
        return None
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"not an IPv4 address: {value!r}") from None
    return None if address.is_unspecified else str(address)


def ipv6_prefix(value: str) -> str | None:
    """An IPv6 prefix in CIDR form (host bits cleared); empty is None."""
    value = value.strip()
    if value == "":
        return None
    try:
        return str(ipaddress.IPv6Network(value, strict=False))
    except ValueError:
        raise ValueError(f"not an IPv6 prefix: {value!r}") from None
