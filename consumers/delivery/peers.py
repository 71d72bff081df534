"""Real local peers for tests and benchmarks (never used in production paths).

``SmtpSink``: an aiosmtpd SMTP server on 127.0.0.1 (free port) that records every accepted mail
by Message-ID and recipient, can answer 4xx/5xx, and can be stopped and started again on the same
port (relay down). ``SmsGatewayFake``: an aiohttp HTTP gateway that records messages by
reference and can be slow, fail with 503, throttle with 429 + Retry-After, or refuse numbers.
aiosmtpd is a development dependency: it is imported only when a sink starts.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from filas.local_platform.processes import free_port


def header_value(content: bytes, name: bytes) -> str:
    """One header of a mail, unfolded, without parsing the rest: the benchmarks' sink runs at
    hundreds of mails a second on the same cores as the worker it measures, and
    ``email.message_from_bytes`` cost ~120 us per mail there."""
    head = content.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
    prefix = name.lower() + b":"
    lines = head.split(b"\n")
    for i, line in enumerate(lines):
        if line[: len(prefix)].lower() == prefix:
            value = line[len(prefix) :]
            for folded in lines[i + 1 :]:
                if not folded[:1].isspace():
                    break
                value += folded
            return value.strip().decode(errors="replace")
    return ""


@dataclass
class Received:
    message_id: str
    recipients: tuple[str, ...]
    at: float


@dataclass
class SinkBehaviour:
    # Per-recipient-address SMTP answers, e.g. {"bad@x": (550, "5.1.1 no such user")}.
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)
    # Answer this code to every DATA while > 0 (decremented per answer), e.g. 451.
    fail_next: int = 0
    fail_code: tuple[int, str] = (451, "4.3.0 try again later")
    delay_s: float = 0.0


class SmtpSink:
    def __init__(self, port: int | None = None, *, smtputf8: bool = True) -> None:
        self.port = port or free_port()
        self.smtputf8 = smtputf8
        self.received: list[Received] = []
        self.behaviour = SinkBehaviour()
        self._lock = threading.Lock()
        self._controller: Any = None

    # aiosmtpd handler hooks --------------------------------------------------------------------
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refused = self.behaviour.refuse.get(address)
        if refused is not None:
            return f"{refused[0]} {refused[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.behaviour.delay_s:
            await asyncio.sleep(self.behaviour.delay_s)
        with self._lock:
            if self.behaviour.fail_next > 0:
                self.behaviour.fail_next -= 1
                code, text = self.behaviour.fail_code
                return f"{code} {text}"
        content = envelope.original_content or envelope.content
        message_id = header_value(content if isinstance(content, bytes) else b"", b"message-id")
        with self._lock:
            self.received.append(Received(message_id, tuple(envelope.rcpt_tos), time.time()))
            n = len(self.received)
        return f"250 2.0.0 Ok: queued as Q{n}"

    # control ----------------------------------------------------------------------------------
    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        # Like a real relay (Postfix offers it), accept internationalised mailboxes (RFC 6531).
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=self.smtputf8
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def by_message_id(self) -> Counter[str]:
        with self._lock:
            return Counter(r.message_id for r in self.received)

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def times(self) -> list[float]:
        with self._lock:
            return [r.at for r in self.received]

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class GatewayBehaviour:
    delay_s: float = 0.0
    # Answer 503 to the next N requests, then 429 (Retry-After) to the next M.
    fail_next: int = 0
    throttle_next: int = 0
    retry_after_s: int = 1
    # Numbers answered 400 {"error": "invalid number"}.
    invalid_prefix: str = "+000"


class SmsGatewayFake:
    """POST /messages with JSON {"to", "text", "reference"}; 201 {"id": ...} when accepted."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.behaviour = GatewayBehaviour()
        self.accepted: list[dict[str, Any]] = []
        self.requests = 0
        self.answers: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/messages"

    async def _handle(self, request: web.Request) -> web.Response:
        b = self.behaviour
        with self._lock:
            self.requests += 1
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        body = await request.json()
        with self._lock:
            if b.fail_next > 0:
                b.fail_next -= 1
                return self._answer(503, {"error": "unavailable"})
            if b.throttle_next > 0:
                b.throttle_next -= 1
                return self._answer(
                    429, {"error": "slow down"}, {"Retry-After": str(b.retry_after_s)}
                )
            if str(body.get("to", "")).startswith(b.invalid_prefix):
                return self._answer(400, {"error": "invalid number"})
            self.accepted.append(body | {"at": time.time()})
            return self._answer(201, {"id": f"sms-{len(self.accepted)}"})

    def _answer(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        self.answers[status] += 1
        return web.json_response(payload, status=status, headers=headers)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_post("/messages", self._handle)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._runner = runner
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def start(self) -> SmsGatewayFake:
        self._thread = threading.Thread(target=self._serve, name="sms-gateway-fake", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("sms gateway fake did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def by_reference(self) -> Counter[str]:
        with self._lock:
            return Counter(str(m.get("reference")) for m in self.accepted)

    def __enter__(self) -> SmsGatewayFake:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class SmtpSinkProcess:
    """An ``SmtpSink`` in its own process (benchmarks: the sink must not share the measured
    process's GIL). Every accepted mail is appended to ``out`` as ``<time> <Message-ID>``."""

    def __init__(self, out: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.out = out
        self._proc: subprocess.Popen[bytes] | None = None
        self._counted = 0  # lines counted so far, up to byte offset _count_at
        self._count_at = 0

    def start(self) -> SmtpSinkProcess:
        self.out.write_text("")
        self._counted = self._count_at = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "consumers.delivery.peers", str(self.port), str(self.out)]
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise RuntimeError("smtp sink process did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def _lines(self) -> list[tuple[float, str]]:
        out = []
        for line in self.out.read_text().splitlines():
            at, _, message_id = line.partition(" ")
            out.append((float(at), message_id))
        return out

    def count(self) -> int:
        """Mails accepted so far; reads only what was appended since the last call (benchmarks
        poll it from the measured process's event loop)."""
        with self.out.open("rb") as f:
            f.seek(self._count_at)
            chunk = f.read()
        complete = chunk.rfind(b"\n") + 1
        self._counted += chunk.count(b"\n", 0, complete)
        self._count_at += complete
        return self._counted

    def times(self) -> list[float]:
        return [at for at, _ in self._lines()]

    def first_seen(self) -> dict[str, float]:
        seen: dict[str, float] = {}
        for at, message_id in self._lines():
            seen.setdefault(message_id, at)
        return seen

    def by_message_id(self) -> Counter[str]:
        return Counter(message_id for _, message_id in self._lines())

    def __enter__(self) -> SmtpSinkProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class _FileSink(SmtpSink):
    def __init__(self, port: int, out: Path) -> None:
        super().__init__(port)
        self._file = out.open("a", buffering=1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if answer.startswith("250"):
            self._file.write(f"{self.received[-1].at:.6f} {self.received[-1].message_id}\n")
            self.received.clear()
        return answer


def _main(argv: list[str]) -> None:
    port, out = int(argv[0]), Path(argv[1])
    sink = _FileSink(port, out).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        sink.stop()


if __name__ == "__main__":
    _main(sys.argv[1:])
