"""Test and benchmark support: hosts in a network namespace behind a veth pair (needs root and
iproute2). Never used by the services; kept in the package (like filas.local_platform.testing)
so tests and ``bench/ping_*`` share it.

Addresses come from 198.18.0.0/15 (RFC 2544, benchmarking) and a ``unreachable`` route with a
high metric covers the namespace's /24, so a probe to a host whose link is down fails locally
instead of following the default route off the machine.
"""

from __future__ import annotations

import random
import subprocess
import uuid


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class NetNs:
    """A namespace behind a veth pair: the root side holds ``<net>.1/24``, the namespace
    ``<net>.2`` plus ``extra`` more addresses (``<net>.10`` ...). ``link_down()`` cuts them all
    (an upstream failure); ``host_down(addr)`` removes one address (one device dies)."""

    def __init__(self, extra: int = 0) -> None:
        tag = uuid.uuid4().hex[:7]
        self.ns = f"flns{tag}"
        self.root_if = f"flv{tag}a"
        self.ns_if = f"flv{tag}b"
        used = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        while True:
            self.net = f"198.{random.choice((18, 19))}.{random.randrange(256)}"
            if f"{self.net}." not in used:
                break
        self.gateway = f"{self.net}.1"
        self.parent = f"{self.net}.2"
        self.hosts = [f"{self.net}.{10 + i}" for i in range(extra)]
        self._created = False

    def __enter__(self) -> NetNs:
        try:
            ip("netns", "add", self.ns)
            self._created = True
            # Without this route, a probe to a cut-off host would follow the default route out.
            ip("route", "add", "unreachable", f"{self.net}.0/24", "metric", "4000")
            ip("link", "add", self.root_if, "type", "veth", "peer", "name", self.ns_if)
            ip("link", "set", self.ns_if, "netns", self.ns)
            ip("addr", "add", f"{self.gateway}/24", "dev", self.root_if)
            ip("link", "set", self.root_if, "up")
            for addr in (self.parent, *self.hosts):
                self.exec("ip", "addr", "add", f"{addr}/24", "dev", self.ns_if)
            self.exec("ip", "link", "set", self.ns_if, "up")
            self.exec("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exec(self, *args: str) -> None:
        ip("netns", "exec", self.ns, *args)

    def link_down(self) -> None:
        ip("link", "set", self.root_if, "down")

    def link_up(self) -> None:
        ip("link", "set", self.root_if, "up")

    def host_down(self, addr: str) -> None:
        self.exec("ip", "addr", "del", f"{addr}/24", "dev", self.ns_if)

    def host_up(self, addr: str) -> None:
        self.exec("ip", "addr", "add", f"{addr}/24", "dev", self.ns_if)

    def close(self) -> None:
        for args in (
            ("link", "del", self.root_if),
            ("route", "del", "unreachable", f"{self.net}.0/24", "metric", "4000"),
            ("netns", "del", self.ns),
        ):
            subprocess.run(["ip", *args], capture_output=True, timeout=10)
