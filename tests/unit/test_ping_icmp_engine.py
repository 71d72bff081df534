"""The sweep engine of ``IcmpProber`` over fake ICMP sockets (no network): matching replies by
identifier/sequence/source, timeouts, late and duplicate replies, unreachable errors, send
failures, concurrency bound, IPv4 raw (IP header) and datagram and IPv6 parsing."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections import deque
from typing import Any

import pytest

from producers.pinger.icmp import IcmpProber, IcmpUnavailableError, ProbeOutcome


class FakeNet:
    """Both families' sockets. ``behaviour[address]``: answer (default), silent, late,
    unreachable, send_error, stranger (reply from another address), twice (duplicate reply),
    slow (answer after 5 ms)."""

    def __init__(self, privileged: bool = True) -> None:
        self.privileged = privileged
        self.behaviour: dict[str, str] = {}
        self.sockets: list[FakeSocket] = []
        self.outstanding = 0
        self.peak = 0
        self.requests: list[tuple[str, int, int]] = []  # (address, id, sequence)

    def factory(self, version: int, privileged: bool) -> FakeSocket:
        assert privileged == self.privileged
        sock = FakeSocket(self, version)
        self.sockets.append(sock)
        return sock


class FakeSocket:
    def __init__(self, net: FakeNet, version: int) -> None:
        self.net = net
        self.version = version
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self.queue: deque[tuple[bytes, str]] = deque()
        self.closed = False

    def fileno(self) -> int:
        return self._r.fileno()

    def close(self) -> None:
        self.closed = True
        self._r.close()
        self._w.close()

    def _deliver(self, packet: bytes, source: str) -> None:
        if self.closed:
            return
        self.net.outstanding -= 1
        if self.version == 4 and self.net.privileged:
            packet = bytes([0x45]) + bytes(19) + packet  # an IPv4 header, IHL 5
        self.queue.append((packet, source))
        self._w.send(b"x")

    def sendto(self, data: bytes | bytearray, address: Any, /) -> int:
        dest = address[0]
        kind = self.net.behaviour.get(dest, "answer")
        if kind == "send_error":
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        request = bytes(data)
        assert request[0] == (8 if self.version == 4 else 128)
        ident, seq = struct.unpack_from("!HH", request, 4)
        if not self.net.privileged:
            ident = 777  # the kernel's choice for a datagram socket
        self.net.requests.append((dest, ident, seq))
        reply_type = 0 if self.version == 4 else 129
        reply = bytes([reply_type, 0, 0, 0]) + struct.pack("!HH", ident, seq) + request[8:]
        self.net.outstanding += 1
        self.net.peak = max(self.net.peak, self.net.outstanding)
        loop = asyncio.get_running_loop()
        if kind == "answer":
            self._deliver(reply, dest)
        elif kind == "twice":
            self._deliver(reply, dest)
            self.net.outstanding += 1
            self._deliver(reply, dest)
        elif kind == "slow":
            loop.call_later(0.005, self._deliver, reply, dest)
        elif kind == "late":
            loop.call_later(0.3, self._deliver, reply, dest)
        elif kind == "stranger":
            self._deliver(reply, "127.66.66.66" if self.version == 4 else "::2")
        elif kind == "unreachable":
            if self.version == 4:
                inner = bytes([0x45]) + bytes(19) + request[:8]
                error = bytes([3, 1, 0, 0, 0, 0, 0, 0]) + inner
            else:
                error = bytes([1, 3, 0, 0, 0, 0, 0, 0]) + bytes(40) + request[:8]
            self._deliver(error, "127.0.0.254" if self.version == 4 else "::fe")
        else:  # silent
            self.net.outstanding -= 1
        return len(request)

    def recvfrom_into(self, buffer: bytearray, /) -> tuple[int, Any]:
        if not self.queue:
            while True:
                try:
                    if not self._r.recv(4096):
                        break
                except BlockingIOError:
                    break
            raise BlockingIOError
        packet, source = self.queue.popleft()
        buffer[: len(packet)] = packet
        return len(packet), (source, 0)


async def run_round(
    net: FakeNet,
    addresses: list[str],
    *,
    count: int = 1,
    interval_s: float = 0.0,
    timeout_s: float = 0.1,
    concurrency: int = 100,
) -> tuple[list[ProbeOutcome], list[tuple[str, ProbeOutcome]], IcmpProber]:
    prober = IcmpProber(privileged=net.privileged, socket_factory=net.factory)
    prober.open()
    seen: list[tuple[str, ProbeOutcome]] = []
    try:
        out = await prober.sweep_round(
            addresses,
            count,
            interval_s,
            timeout_s,
            concurrency,
            lambda t, o: seen.append((t, o)),
            str,
        )
    finally:
        prober.close()
    assert all(s.closed for s in net.sockets)
    return out, seen, prober


@pytest.mark.parametrize("privileged", [True, False])
async def test_round_matches_replies_and_reports_each_target(privileged: bool) -> None:
    net = FakeNet(privileged)
    net.behaviour.update(
        {
            "127.0.0.2": "silent",
            "127.0.0.3": "late",
            "127.0.0.4": "unreachable",
            "127.0.0.5": "send_error",
            "127.0.0.6": "stranger",
            "127.0.0.7": "twice",
            "::5": "silent",
        }
    )
    addresses = [f"127.0.0.{i}" for i in range(1, 9)] + ["::1", "::5"]
    out, seen, prober = await run_round(net, addresses, count=2, interval_s=0.01)
    by = {o.address: o for o in out}
    assert [o.address for o in out] == addresses  # target order
    assert sorted(t for t, _ in seen) == sorted(addresses)  # each once, as soon as done
    for good in ("127.0.0.1", "127.0.0.7", "127.0.0.8", "::1"):
        assert (by[good].sent, by[good].received) == (2, 2), by[good]
        assert all(0 <= rtt < 100 for rtt in by[good].rtts_ms)
    for lost in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.6", "::5"):
        assert (by[lost].sent, by[lost].received, by[lost].loss_ratio) == (2, 0, 1.0), lost
    assert by["127.0.0.5"].received == 0
    assert by["127.0.0.5"].error == "Network is unreachable"
    assert prober.send_errors == 2
    assert not prober._inflight  # every sequence released
    assert len(net.sockets) == 2  # one socket per family
    sequences = [seq for _, _, seq in net.requests]
    assert len(set(sequences)) == len(sequences)


async def test_count_probes_are_spaced_and_late_replies_lost() -> None:
    net = FakeNet()
    net.behaviour["127.0.0.2"] = "late"  # 0.3 s > timeout 0.2 s
    out, _, _ = await run_round(
        net, ["127.0.0.1", "127.0.0.2"], count=3, interval_s=0.02, timeout_s=0.2
    )
    assert out[0].received == 3
    assert out[0].jitter_ms is not None
    assert out[1].received == 0
    assert sum(1 for a, _, _ in net.requests if a == "127.0.0.2") == 3


async def test_concurrency_bounds_devices_in_flight() -> None:
    net = FakeNet()
    addresses = [f"127.1.0.{i}" for i in range(1, 201)]
    net.behaviour.update(dict.fromkeys(addresses, "slow"))
    out, seen, _ = await run_round(net, addresses, concurrency=16, timeout_s=1.0)
    assert net.peak == 16
    assert all(o.received == 1 for o in out)
    assert len(seen) == 200


async def test_replies_of_another_identifier_are_ignored() -> None:
    net = FakeNet()
    prober = IcmpProber(privileged=True, socket_factory=net.factory)
    prober.open()
    try:
        prober._id = 4242
        sock = net.sockets[0]
        original = sock.sendto

        def foreign(data: bytes | bytearray, address: Any, /) -> int:
            forged = bytearray(data)
            forged[4:6] = struct.pack("!H", 4243)  # the reply will carry another pinger's id
            return original(forged, address)

        sock.sendto = foreign  # type: ignore[method-assign]
        outcome = await prober.probe("127.0.0.1", 1, 0.0, 0.05)
    finally:
        prober.close()
    assert outcome.received == 0


async def test_on_outcome_error_ends_the_round_with_it() -> None:
    net = FakeNet()
    prober = IcmpProber(privileged=True, socket_factory=net.factory)
    prober.open()

    def boom(_target: object, _outcome: ProbeOutcome) -> None:
        raise RuntimeError("publisher broke")

    try:
        with pytest.raises(RuntimeError, match="publisher broke"):
            await prober.sweep_round(["127.0.0.1", "127.0.0.2"], 1, 0.0, 0.1, 10, boom, str)
        assert not prober._inflight
        assert (await prober.probe("127.0.0.3", 1, 0.0, 0.1)).received == 1  # still usable
    finally:
        prober.close()


async def test_without_an_ipv6_socket_ipv6_targets_are_lost_with_the_reason() -> None:
    net = FakeNet()
    opened: list[int] = []

    def factory(version: int, privileged: bool) -> FakeSocket:
        opened.append(version)
        if version == 6:
            raise IcmpUnavailableError("IPv6 is disabled")
        return net.factory(version, privileged)

    prober = IcmpProber(privileged=True, socket_factory=factory)
    prober.open()
    try:
        first = await prober.sweep_round(["::1", "127.0.0.1", "::2"], 2, 0.0, 0.1, 10, None, str)
        again = await prober.probe("::1", 1, 0.0, 0.1)
    finally:
        prober.close()
    assert [(o.received, o.error) for o in first] == [
        (0, "no IPv6 socket"),
        (2, None),
        (0, "no IPv6 socket"),
    ]
    assert again.error == "no IPv6 socket"
    assert opened == [4, 6]  # not re-tried per target nor per round within a minute


async def test_exhausted_sequence_space_loses_the_probe_instead_of_failing_the_round() -> None:
    net = FakeNet()
    prober = IcmpProber(privileged=True, socket_factory=net.factory)
    prober.open()
    try:
        busy: Any = object()
        prober._inflight = dict.fromkeys(range(65536), (busy, 0))
        outcome = await prober.probe("127.0.0.1", 1, 0.0, 0.05)
        prober._inflight.clear()
        after = await prober.probe("127.0.0.1", 1, 0.0, 0.05)
    finally:
        prober.close()
    assert (outcome.received, outcome.error) == (0, "65536 probes in flight")
    assert not net.requests[:-1]  # nothing was sent while no sequence was free
    assert after.received == 1


async def test_closing_mid_round_ends_it_without_reporting_the_unfinished() -> None:
    net = FakeNet()
    net.behaviour["127.0.0.2"] = "silent"
    prober = IcmpProber(privileged=True, socket_factory=net.factory)
    prober.open()
    seen: list[str] = []
    first = asyncio.Event()

    def report(target: str, _outcome: ProbeOutcome) -> None:
        seen.append(target)
        first.set()

    task = asyncio.ensure_future(
        prober.sweep_round(["127.0.0.1", "127.0.0.2"], 1, 0.0, 30.0, 10, report, str)
    )
    await asyncio.wait_for(first.wait(), 10)
    prober.close()
    out = await asyncio.wait_for(task, 10)
    assert [(o.received, o.error) for o in out] == [(1, None), (0, "closed")]
    assert seen == ["127.0.0.1"]
