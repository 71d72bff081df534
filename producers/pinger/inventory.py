"""What the pinger probes: ``ixc.devices`` records of the partitions this instance owns."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from filas.errors import FilasError

PING_CLASSES = ("CRITICAL", "STANDARD", "SUBSCRIBER")


class InventoryRecordError(FilasError):
    """A device record the pinger cannot use (goes to ``ixc.devices.dlq`` with this reason)."""

    code = "inventory_invalid"


@dataclass(frozen=True, slots=True)
class Target:
    """One device to probe."""

    device_id: str
    ip: str
    ping_class: str


def target_of(record: Mapping[str, Any]) -> Target | None:
    """The probe target of a NetworkDevice record; None when it is not probed (inactive, no IP,
    ping class NONE). ``ip`` is an IPv4 or IPv6 literal (IPv6 in its compressed form, as the
    kernel reports reply sources). Raises ``InventoryRecordError`` when the record cannot be
    right."""
    device_id = record.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise InventoryRecordError("device record without device_id")
    if not record.get("active", True):
        return None
    ping_class = str(record.get("ping_class", "STANDARD"))
    ip = record.get("ip")
    if ping_class not in PING_CLASSES or ip is None:
        return None
    try:
        address = ipaddress.ip_address(str(ip).strip())
    except ValueError:
        raise InventoryRecordError(f"device {device_id}: ip {ip!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:a.b.c.d is probed over ICMPv4
    broadcast = address.version == 4 and str(address).endswith(".255")
    if address.is_unspecified or address.is_multicast or broadcast:
        raise InventoryRecordError(f"device {device_id}: ip {ip} cannot be probed")
    return Target(device_id, str(address), ping_class)


class Inventory:
    """Targets by partition of ``ixc.devices``: a rebalance drops or adds whole partitions."""

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[str, Target]] = {}

    def assign(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._by_partition.setdefault(p, {})

    def revoke(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._by_partition.pop(p, None)

    def clear(self) -> None:
        self._by_partition.clear()

    def put(self, partition: int, device_id: str, target: Target | None) -> None:
        """Apply one record (``None``: tombstone or not probed)."""
        devices = self._by_partition.setdefault(partition, {})
        if target is None:
            devices.pop(device_id, None)
        else:
            devices[device_id] = target

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._by_partition)

    def of_class(self, ping_class: str) -> list[Target]:
        return [
            t
            for devices in self._by_partition.values()
            for t in devices.values()
            if t.ping_class == ping_class
        ]

    def __len__(self) -> int:
        return sum(len(d) for d in self._by_partition.values())
