"""``filas homologation run``: a realistic ISP day in minutes, on one machine, from nothing.

Steps (``STEPS``; each skipped with its reason when its processor is not available): platform,
topics and schemas, the IXC SIMULATOR with a generated ISP on a loopback address plan, the
ClickHouse sink, one IXC poll, the RADIUS gateway and CoA worker with a NAS fleet on loopback
addresses (and each NAS's CoA listener), the status page, then the day: logins (PAP and CHAP),
accounting start/interim, a POP outage and its reconnect storm, a billing run that blocks
overdue contracts and a payment batch that unblocks them (CoA to the live sessions), a
marketing campaign delivered to a local SMTP sink and an HTTP SMS sink, and a summary queried
from ClickHouse and Kafka.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shlex
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from filas.homologation.nas import (
    COA_REQUEST,
    CoaListeners,
    ExchangeStats,
    NasFleet,
    NasInfo,
    Reply,
    Request,
)
from filas.homologation.scenario import Planned, Step, available_commands, format_plan, plan
from filas.homologation.summary import Summary, collect_summary, format_summary
from filas.homologation.supervisor import (
    Supervisor,
    SupervisorError,
    filas_argv,
    http_ok,
    log_contains,
)
from filas.local_platform.processes import free_port
from filas.settings import Settings
from producers.radius.pyrad_adapter import ACCESS_ACCEPT, ACCESS_REQUEST, ACCOUNTING_REQUEST

COA_PORT = 3799  # what the IXC adapter writes in ixc.nas (producers/ixc/mapping.py)
PING_OFF = (
    "left out: needs root and iproute2 for the outage POP's network namespace "
    "(docs/homologation.md)"
)
# A probe schedule that opens the POP's alert in seconds (production keeps docs/network.md's):
# POPs and OLTs every 2 s, ONUs every 10 s (1,960 of them at the default size), one probe each.
# The RTT bar for "degraded" is raised: on a loaded 2-core machine the pinger's own loop adds
# hundreds of ms to loopback replies, which is not the network degrading.
PING_ENV = {
    f"FILAS_PING__{cls}__{key}": value
    for cls, interval in (("CRITICAL", "2"), ("STANDARD", "2"), ("SUBSCRIBER", "10"))
    for key, value in (("INTERVAL_S", interval), ("COUNT", "1"), ("TIMEOUT_S", "1.0"))
} | {
    "FILAS_PING__DOWN_AFTER_ROUNDS": "2",
    "FILAS_PING__SUPPRESSION_HOLD_S": "5",
    "FILAS_PING__DEGRADED_RTT_MS": "2000",
    "FILAS_PING__DEGRADED_LOSS_RATIO": "0.5",
}


def _can_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


# The service requests' clients, from the run's own configuration (FILAS_INGRESS__*).
REQUEST_CLIENT = "atendimento"  # the ISP's help desk, a bearer-token API client
PAYMENT_GATEWAY = "pix-gw"  # a payment gateway posting signed webhooks
FINAL_REQUEST_STATES = ("done", "failed", "dead_lettered")
SMS_BODY_TEMPLATE = (
    '{"to": {{ to|tojson }}, "text": {{ body|tojson }}, "reference": {{ message_id|tojson }}, '
    '"campaign_id": {{ campaign_id|tojson }}}'
)


@dataclass(frozen=True)
class HomologationConfig:
    customers: int = 10_000
    devices: int = 2_000
    nas: int = 20
    seed: int = 1
    login_rate: float = 500.0  # Access-Requests per second in the morning logins
    storm_window_s: float = 2.0
    payment_batch: int = 0  # 0: 1% of the live sessions, at least 5, at most 200
    request_payments: int = 20  # signed payment webhooks through the ingress (step "requests")
    campaign: bool = True
    exit_after: bool = False
    use_running_platform: bool = False  # the FILAS_* environment names a running platform
    loopback_octet: int = 0
    summary_json: Path | None = None
    web_port: int = 0


STEPS: tuple[Step, ...] = (
    Step(
        "platform",
        "Local platform: Kafka (KRaft), Apicurio Registry, ClickHouse",
        ("up",),
        optional=False,
    ),
    Step(
        "topics", "Topic catalog and schemas", ("topics apply", "schemas register"), optional=False
    ),
    Step(
        "simulator",
        "IXC homologation SIMULATOR with a generated ISP (loopback addresses)",
        ("ixc simulate",),
        optional=False,
    ),
    Step("sink", "ClickHouse sink (every topic into its table)", ("sink run",)),
    Step(
        "poll",
        "Poll IXC into the state topics (one pass)",
        ("ixc poll",),
        ("simulator",),
        optional=False,
    ),
    Step(
        "gateway",
        "RADIUS gateway and CoA worker; a CoA listener on every NAS",
        ("radius serve", "radius coa"),
        ("poll",),
    ),
    Step("monitor", "Status page and lag history (filas monitor serve)", ("monitor serve",)),
    Step("logins", "Morning logins (PAP and CHAP) and accounting start/interim", (), ("gateway",)),
    Step(
        "storm", "POP outage: sessions lost, then the reconnect storm from its NAS", (), ("logins",)
    ),
    Step(
        "payments",
        "Billing run blocks overdue contracts, a payment batch unblocks them (CoA)",
        ("ixc poll",),
        ("logins",),
    ),
    Step(
        "requests",
        "Service requests through the ingress to IXC: signed payment webhooks, trust unblocks "
        "and tickets",
        ("ingress serve", "requests work"),
        ("poll",),
    ),
    Step(
        "campaign",
        "Marketing campaign: fan-out, e-mail to an SMTP sink, SMS to an HTTP sink",
        ("campaigns create", "campaigns fanout", "delivery serve"),
        ("poll",),
    ),
    Step(
        "outage_alert",
        "POP outage alert with subscriber notices (pinger + alerting; POP in a network namespace)",
        ("ping serve", "alerts serve"),
        ("poll", "sink"),
        off_reason=None if _can_netns() else PING_OFF,
    ),
    Step("summary", "Summary from ClickHouse and Kafka", (), ("sink",)),
)


@dataclass
class DayFacts:
    """What the run's own clients saw (the summary puts ClickHouse's figures beside them)."""

    logins_offered: int = 0
    accepts: int = 0
    rejects: int = 0
    unanswered: int = 0
    login_p50_ms: float = float("nan")
    login_p99_ms: float = float("nan")
    login_rate_per_s: float = 0.0
    accounting_sent: int = 0
    accounting_answered: int = 0
    storm_pop: str = ""
    storm_offered: int = 0
    storm_accepts: int = 0
    storm_unanswered: int = 0
    storm_p99_ms: float = float("nan")
    blocked_contracts: list[str] = field(default_factory=list)
    unblocked_contracts: list[str] = field(default_factory=list)
    unblocked_with_session: list[str] = field(default_factory=list)
    coa_requests_at_nas: int = 0
    outage_devices: int = 0
    outage_alerts: int = 0
    notices_at_sinks: int = 0
    requests_sent: int = 0  # distinct requests offered to the ingress (a replayed webhook not)
    requests_accepted: int = 0  # answered 202 with a request id
    requests_replayed_same_id: bool = False  # a webhook sent twice got the first request back
    request_ids: list[str] = field(default_factory=list)
    requests_expected_failed: list[str] = field(default_factory=list)  # refusals by design
    requests_states: dict[str, int] = field(default_factory=dict)  # final state per status URL
    requests_paid_contracts: list[str] = field(default_factory=list)  # by a payment webhook
    requests_paid_with_session: list[str] = field(default_factory=list)  # one live session
    requests_trust_contracts: list[str] = field(default_factory=list)  # by a trust unblock
    requests_tickets: int = 0
    requests_wait_s: float = 0.0
    campaign_id: str | None = None
    campaign_queued: int = 0
    emails_at_sink: int = 0  # the campaign's (X-Filas-Campaign / the SMS body's campaign_id)
    other_messages_at_sinks: int = 0  # before the outage: the payment confirmations
    sms_at_sink: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    processes: list[str] = field(default_factory=list)
    exited_early: dict[str, int | None] = field(default_factory=dict)
    status_page: str | None = None


@dataclass
class Subscriber:
    login: str
    password: str
    contract_id: str
    nas_index: int
    framed_ip: str
    chap: bool


class Homologation:
    def __init__(self, settings: Settings, config: HomologationConfig, echo: Callable[[str], None]):
        self.config = config
        self.echo = echo
        self.settings = settings
        self.home = settings.local.home.resolve()
        self.run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self.env: dict[str, str] = dict(os.environ)
        self.supervisor = Supervisor(self.home / "logs" / f"homologation-{self.run_id}", self.env)
        self.facts = DayFacts()
        self.started_at = datetime.now(UTC)
        self.metrics_urls: list[str] = []
        self.token = secrets.token_hex(12)
        self.sim_url = ""
        self.isp: Any = None
        self.subscribers: list[Subscriber] = []
        self.nas: list[NasInfo] = []
        self.fleet: NasFleet | None = None
        self.coa: CoaListeners | None = None
        self.live: dict[str, Subscriber] = {}  # session id -> subscriber
        self.sessions_of_contract: dict[str, list[str]] = {}
        self.peers: list[Any] = []
        self.summary: Summary | None = None
        self.sink_group = f"{settings.topics.prefix}filas-clickhouse-sink"

    # ---- helpers ------------------------------------------------------------------------

    def _metrics_env(self, name: str) -> dict[str, str]:
        port = free_port()
        self.metrics_urls.append(f"http://127.0.0.1:{port}/metrics")
        return {"FILAS_METRICS__PORT": str(port), "FILAS_SERVICE_NAME": f"filas-{name}"}

    def _run(self, name: str, *args: str, timeout_s: float = 300.0, attempts: int = 3) -> str:
        """A one-shot ``filas`` command; the ones the run uses are idempotent (apply, register,
        poll from watermarks), so a failure on a loaded machine is retried."""
        for attempt in range(1, attempts + 1):
            label = name if attempt == 1 else f"{name}-retry{attempt - 1}"
            code, log = self.supervisor.run(label, filas_argv(*args), timeout_s=timeout_s)
            if code == 0:
                return log
            last = log.strip().splitlines()[-1] if log.strip() else ""
            self.echo(f"  filas {' '.join(args)} exited {code} ({last}); attempt {attempt}")
            time.sleep(2)
        raise SupervisorError(f"filas {' '.join(args)} exited {code}:\n{log[-3000:]}")

    def _settings_from_env(self) -> Settings:
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the simulator on 127.0.0.1
            self.sim_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    # ---- steps --------------------------------------------------------------------------

    def step_platform(self) -> None:
        if self.config.use_running_platform:
            self.echo(f"using the running platform: Kafka {self.settings.kafka.bootstrap_servers}")
            return
        self._run("platform-up", "up", timeout_s=600)
        env_path = self.home / "platform.env"
        for line in env_path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("FILAS_"):
                parts = shlex.split(value)
                self.env[key.strip()] = parts[0] if parts else ""
        self.settings = self._settings_from_env()
        self.echo(f"platform up ({env_path}); it keeps running after the run: 'make down'")

    def step_topics(self) -> None:
        self._run("topics-apply", "topics", "apply")
        self._run("schemas-register", "schemas", "register")
        self.echo("topics applied, schemas registered")

    def step_simulator(self) -> None:
        from producers.ixc.simulator import SimulatedIsp

        c = self.config
        port = free_port()
        self.sim_url = f"http://127.0.0.1:{port}"
        state = self.home / "state"
        state.mkdir(parents=True, exist_ok=True)
        watermarks = state / f"homologation-{self.run_id}-watermarks.json"
        self.env |= {
            "FILAS_IXC__BASE_URL": self.sim_url,
            "FILAS_IXC__USER": "1",
            "FILAS_IXC__TOKEN": self.token,
            "FILAS_IXC__WATERMARK_PATH": str(watermarks),
            "FILAS_IXC__MIN_REQUEST_INTERVAL_S": "0",
        }
        sizes = ["--customers", str(c.customers), "--devices", str(c.devices)]
        self.supervisor.start(
            "ixc-simulator",
            filas_argv(
                "ixc",
                "simulate",
                "--port",
                str(port),
                *sizes,
                "--nas",
                str(c.nas),
                "--seed",
                str(c.seed),
                "--address-plan",
                "loopback",
                "--loopback-octet",
                str(c.loopback_octet),
            ),
            ready=http_ok(f"{self.sim_url}/_sim/health"),
            timeout_s=120,
        )
        # Same seed, same sizes, same ISP: the run reads passwords and NAS secrets from its own
        # copy instead of 10,000 admin calls.
        self.isp = SimulatedIsp(
            seed=c.seed,
            customers=c.customers,
            devices=c.devices,
            nas=c.nas,
            address_plan="loopback",
            loopback_octet=c.loopback_octet,
        )
        nas_records = self.isp.records("concentrador")
        self.nas = [
            NasInfo(r["id"], r["ip"], r["secret"].encode(), r["id_pop"]) for r in nas_records
        ]
        index = {n.nas_id: i for i, n in enumerate(self.nas)}
        rng = random.Random(c.seed)
        for r in self.isp.records("radusuarios"):
            if r["id_concentrador"] not in index:
                continue
            n = int(r["id"])
            self.subscribers.append(
                Subscriber(
                    login=r["login"],
                    password=r["senha"],
                    contract_id=r["id_contrato"],
                    nas_index=index[r["id_concentrador"]],
                    framed_ip=r["ip"] or f"100.64.{n // 250 % 256}.{n % 250 + 1}",
                    chap=rng.random() < 0.25,
                )
            )
        secrets_json = json.dumps(
            {f"ixc/nas/{r['id']}/radius-secret": r["secret"] for r in nas_records}
        )
        self.env["FILAS_RADIUS__NAS_SECRETS"] = secrets_json
        self.echo(
            f"simulator at {self.sim_url}: {c.customers} subscribers, {c.devices} devices, "
            f"{len(self.nas)} NAS on 127.{c.loopback_octet}.1.x"
        )

    def step_sink(self) -> None:
        group = self.sink_group
        self.supervisor.start(
            "clickhouse-sink",
            filas_argv("sink", "run", "--group", group, "--linger", "0.5"),
            env=self._metrics_env("sink"),
            ready=lambda log: "Traceback" not in log,
            timeout_s=5,
        )
        self.echo(f"sink running (group {group})")

    def poll_once(self, name: str) -> str:
        log = self._run(name, "ixc", "poll", "--once", timeout_s=600)
        return next((x for x in log.splitlines() if x.startswith("total emitted")), "")

    def step_poll(self) -> None:
        self.echo(self.poll_once("ixc-poll-1"))

    def step_gateway(self) -> None:
        auth, acct = free_port(), free_port()
        env = {
            "FILAS_RADIUS__BIND_HOST": "127.0.0.1",
            "FILAS_RADIUS__AUTH_PORT": str(auth),
            "FILAS_RADIUS__ACCT_PORT": str(acct),
            "FILAS_RADIUS__COA_BLOCK_ACTION": "coa",
            "FILAS_RADIUS__COA_START_FROM": "earliest",
        }
        self.env |= env
        metrics_env = self._metrics_env("radius-gateway")
        ready_url = self.metrics_urls[-1].removesuffix("/metrics") + "/ready"
        self.supervisor.start(
            "radius-gateway",
            filas_argv("radius", "serve"),
            env=metrics_env,
            # Its /ready turns 200 once the replica is loaded and the ports are bound.
            ready=http_ok(ready_url),
            timeout_s=180,
        )
        self.coa = CoaListeners(self.nas, COA_PORT)
        self.supervisor.start(
            "radius-coa",
            filas_argv("radius", "coa"),
            env=self._metrics_env("radius-coa"),
            ready=log_contains("radius coa worker up"),
            timeout_s=120,
        )
        self.fleet = NasFleet(self.nas, "127.0.0.1", auth, acct)
        self.echo(f"gateway on 127.0.0.1 auth {auth} acct {acct}; CoA listeners on :{COA_PORT}")

    def step_monitor(self) -> None:
        port = self.config.web_port or free_port()
        env = self._metrics_env("monitor") | {
            "FILAS_MONITORING__SCRAPE_URLS": json.dumps(self.metrics_urls[:-1]),
        }
        self.supervisor.start(
            "monitor",
            filas_argv("monitor", "serve", "--web-port", str(port), "--interval", "5"),
            env=env,
            ready=log_contains("status page on"),
            timeout_s=60,
        )
        self.facts.status_page = f"http://127.0.0.1:{port}/"
        self.echo(f"status page: {self.facts.status_page}")

    def _auth_requests(self, subs: list[Subscriber], wrong_every: int) -> list[Request]:
        requests = []
        for k, s in enumerate(subs):
            password = s.password if wrong_every == 0 or k % wrong_every else "wrong-password"
            attributes: dict[str, str | int | bytes] = {
                "User-Name": s.login,
                "Calling-Station-Id": f"02:00:00:{k >> 16 & 255:02X}:{k >> 8 & 255:02X}:"
                f"{k & 255:02X}",
            }
            if s.chap:
                requests.append(
                    Request(s.nas_index, ACCESS_REQUEST, attributes, chap_password=password)
                )
            else:
                requests.append(Request(s.nas_index, ACCESS_REQUEST, attributes, password=password))
        return requests

    def _accounting(
        self,
        sessions: list[tuple[str, Subscriber]],
        status: str,
        window_s: float,
        cause: str | None = None,
    ) -> ExchangeStats:
        assert self.fleet is not None
        requests = []
        for session_id, s in sessions:
            attributes: dict[str, str | int | bytes] = {
                "User-Name": s.login,
                "Acct-Status-Type": status,
                "Acct-Session-Id": session_id,
                "Framed-IP-Address": s.framed_ip,
            }
            if status != "Start":
                attributes |= {
                    "Acct-Input-Octets": random.randrange(10**9),
                    "Acct-Output-Octets": random.randrange(10**9),
                    "Acct-Session-Time": random.randrange(60, 3600),
                }
            if cause is not None:
                attributes["Acct-Terminate-Cause"] = cause
            requests.append(Request(s.nas_index, ACCOUNTING_REQUEST, attributes))
        _, stats = self.fleet.exchange(requests, window_s=window_s)
        self.facts.accounting_sent += stats.sent
        self.facts.accounting_answered += stats.answered
        return stats

    def _start_sessions(self, accepted: list[Subscriber], window_s: float) -> None:
        sessions = []
        for s in accepted:
            session_id = f"{self.run_id}-{s.login}-{secrets.token_hex(2)}"
            self.live[session_id] = s
            self.sessions_of_contract.setdefault(s.contract_id, []).append(session_id)
            sessions.append((session_id, s))
        self._accounting(sessions, "Start", window_s)

    def step_logins(self) -> None:
        assert self.fleet is not None
        subs = self.subscribers
        window = max(1.0, len(subs) / self.config.login_rate)
        begin = time.perf_counter()
        replies, stats = self.fleet.exchange(self._auth_requests(subs, 97), window_s=window)
        elapsed = time.perf_counter() - begin
        accepted = [s for s, r in zip(subs, replies, strict=True) if _accepted(r)]
        f = self.facts
        f.logins_offered = len(subs)
        f.accepts += len(accepted)
        f.rejects += sum(1 for r in replies if r is not None and r.code != ACCESS_ACCEPT)
        f.unanswered += stats.unanswered
        f.login_p50_ms, f.login_p99_ms = stats.percentile_ms(0.5), stats.percentile_ms(0.99)
        f.login_rate_per_s = stats.answered / elapsed if elapsed else 0.0
        self.echo(
            f"logins: {len(subs)} offered in {elapsed:.1f}s, {len(accepted)} accepted, "
            f"{f.rejects} rejected, {stats.unanswered} unanswered, "
            f"p50 {f.login_p50_ms:.1f} ms p99 {f.login_p99_ms:.1f} ms"
        )
        self._start_sessions(accepted, window)
        interim = self._accounting(list(self.live.items()), "Interim-Update", window)
        self.echo(
            f"accounting: {len(self.live)} sessions started, {interim.answered} interim "
            f"updates answered"
        )

    def step_storm(self) -> None:
        assert self.fleet is not None
        pop = self.nas[0].pop_id
        nas_of_pop = {i for i, n in enumerate(self.nas) if n.pop_id == pop}
        lost = [(sid, s) for sid, s in self.live.items() if s.nas_index in nas_of_pop]
        self._accounting(lost, "Stop", 1.0, cause="Lost-Carrier")
        for sid, s in lost:
            del self.live[sid]
            self.sessions_of_contract[s.contract_id].remove(sid)
        subs = [s for _, s in lost]
        replies, stats = self.fleet.exchange(
            self._auth_requests(subs, 0), window_s=self.config.storm_window_s
        )
        accepted = [s for s, r in zip(subs, replies, strict=True) if _accepted(r)]
        f = self.facts
        f.storm_pop = pop
        f.storm_offered = len(subs)
        f.storm_accepts = len(accepted)
        f.storm_unanswered = stats.unanswered
        f.storm_p99_ms = stats.percentile_ms(0.99)
        f.accepts += len(accepted)
        f.rejects += sum(1 for r in replies if r is not None and r.code != ACCESS_ACCEPT)
        f.unanswered += stats.unanswered
        self._start_sessions(accepted, 1.0)
        self.echo(
            f"storm: POP {pop} ({len(nas_of_pop)} NAS) lost {len(lost)} sessions; "
            f"{len(subs)} re-auths in {self.config.storm_window_s:.1f}s: {len(accepted)} "
            f"accepted, {stats.unanswered} unanswered, p99 {f.storm_p99_ms:.1f} ms"
        )

    def _wait_coa(self, expected_total: int, timeout_s: float) -> int:
        assert self.coa is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.coa.count(COA_REQUEST)
            if got >= expected_total:
                return got
            time.sleep(0.2)
        return self.coa.count(COA_REQUEST)

    def step_payments(self) -> None:
        assert self.coa is not None
        online = sorted(
            (c for c, sids in self.sessions_of_contract.items() if len(sids) == 1),
            key=int,
        )
        size = self.config.payment_batch or max(5, min(200, len(self.live) // 100))
        rng = random.Random(self.config.seed + 1)
        chosen = sorted(rng.sample(online, min(size, len(online))), key=int)
        before = self.coa.count(COA_REQUEST)
        for contract_id in chosen:
            self._post(f"/_sim/contracts/{contract_id}/block", {"code": "CA"})
        self.facts.blocked_contracts = chosen
        self.echo(
            f"billing run: {len(chosen)} overdue contracts blocked in IXC; "
            + self.poll_once("ixc-poll-billing")
        )
        got = self._wait_coa(before + len(chosen), 90)
        self.echo(
            f"  CoA block (reduced to the block pool, session kept): {got - before} at the NAS"
        )
        # The payment batch: the blocked contracts pay, and so do a few that were blocked all
        # day (no session: nothing to change on a NAS).
        never_online = [
            r["id"]
            for r in self.isp.records("cliente_contrato")
            if r["status_internet"] == "CA" and r["id"] not in self.sessions_of_contract
        ][:5]
        paid = chosen + never_online
        before = self.coa.count(COA_REQUEST)
        for contract_id in paid:
            self._post(f"/_sim/contracts/{contract_id}/unblock", {"trust": False})
        self.facts.unblocked_contracts = paid
        self.facts.unblocked_with_session = chosen
        self.echo(
            f"payment batch: {len(paid)} contracts paid and unblocked; "
            + self.poll_once("ixc-poll-payments")
        )
        got = self._wait_coa(before + len(chosen), 90)
        self.facts.coa_requests_at_nas = self.coa.count(COA_REQUEST)
        self.echo(
            f"  CoA unblock (plan rate restored): {got - before} at the NAS for "
            f"{len(chosen)} contracts with a live session"
        )

    def step_requests(self) -> None:
        """Service requests through the ingress's HTTP API (docs/requests.md), with the clients
        of this run's own FILAS_INGRESS__* configuration: the payment gateway's signed webhooks
        for contracts overdue since before the day (one sent twice, as a gateway retry), the
        help desk's trust unblocks and tickets with its bearer token, and one trust unblock IXC
        refuses (the contract is not blocked). Every status URL is read until its request is
        final; then a poll carries the unblocks into ixc.contract-status."""
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        tokens = {
            REQUEST_CLIENT: secrets.token_urlsafe(24),
            PAYMENT_GATEWAY: secrets.token_urlsafe(24),
        }
        webhook_secret = secrets.token_urlsafe(24)
        self.env |= {
            "FILAS_INGRESS__HOST": "127.0.0.1",
            "FILAS_INGRESS__PORT": str(port),
            "FILAS_INGRESS__TOKENS": json.dumps(tokens),
            "FILAS_INGRESS__WEBHOOK_SECRETS": json.dumps({PAYMENT_GATEWAY: webhook_secret}),
            "FILAS_INGRESS__RATE_PER_S": "1000",
            "FILAS_INGRESS__RATE_BURST": "1000",
            "FILAS_INGRESS__IXC_RATE_PER_S": "100",
        }
        # Both start at once (each waits for its own start-up), then both must be ready.
        self.supervisor.start(
            "ingress", filas_argv("ingress", "serve"), env=self._metrics_env("ingress")
        )
        self.supervisor.start(
            "ixc-requests", filas_argv("requests", "work"), env=self._metrics_env("ixc-requests")
        )
        self.supervisor.wait_ready("ingress", http_ok(f"{base}/healthz"), 120)
        self.supervisor.wait_ready("ixc-requests", log_contains("ixc requests worker up"), 120)

        # Contracts overdue since before the day (the payment step's left alone): blocked ones
        # (CA, no session) get trust unblocks; the rest pay, among them reduced ones (FA) with a
        # live session, whose payment ends in a CoA restoring the plan's rate at their NAS.
        contracts = self.isp.records("cliente_contrato")
        used = set(self.facts.unblocked_contracts)
        overdue = [r for r in contracts if r["status_internet"] in ("CA", "FA")]
        overdue = [r for r in overdue if r["id"] not in used]
        offline = [r for r in overdue if r["id"] not in self.sessions_of_contract]
        trust = offline[:5]
        paid = [r for r in overdue if r not in trust][: self.config.request_payments]
        active = [r for r in contracts if r["status_internet"] == "A" and r["id"] not in used]
        f = self.facts
        accepted: dict[str, str] = {}  # request id -> the client whose token reads its status

        def accept(kind: str, status: int, body: Mapping[str, Any], client: str) -> str | None:
            if status != 202 or "request_id" not in body:
                self.echo(f"  {kind} refused by the ingress: {status} {body}")
                return None
            accepted[str(body["request_id"])] = client
            return str(body["request_id"])

        first_payment: tuple[bytes, str | None] | None = None
        for record in paid:
            raw = json.dumps(
                {
                    "payment_id": f"E{self.run_id}-{record['id']}",
                    "contract_id": record["id"],
                    "amount": record["valor"],
                    "method": "pix",
                }
            ).encode()
            status, body = self._webhook(base, webhook_secret, raw, int(time.time()))
            request_id = accept("payment webhook", status, body, PAYMENT_GATEWAY)
            first_payment = first_payment or (raw, request_id)
            f.requests_paid_contracts.append(record["id"])
            if len(self.sessions_of_contract.get(record["id"], ())) == 1:
                f.requests_paid_with_session.append(record["id"])
        if first_payment is not None:  # the gateway retries one: a new signature, same payment
            status, body = self._webhook(
                base, webhook_secret, first_payment[0], int(time.time()) + 1
            )
            f.requests_replayed_same_id = (
                status == 202 and body.get("request_id") == first_payment[1]
            )
        bearer = {"Authorization": f"Bearer {tokens[REQUEST_CLIENT]}"}
        for record in trust:
            submission = {"type": "trust_unblock", "params": {"contract_id": record["id"]}}
            status, body = self._ingress_post(
                f"{base}/v1/requests",
                json.dumps(submission).encode(),
                bearer | {"Idempotency-Key": f"{self.run_id}-trust-{record['id']}"},
            )
            accept("trust unblock", status, body, REQUEST_CLIENT)
            f.requests_trust_contracts.append(record["id"])
        for record in active[:5]:
            submission = {
                "type": "open_ticket",
                "params": {
                    "customer_id": record["id_cliente"],
                    "contract_id": record["id"],
                    "subject": "Lentidão à noite",
                    "message": "Cliente relata lentidão entre 20h e 23h (homologação).",
                },
            }
            status, body = self._ingress_post(
                f"{base}/v1/requests", json.dumps(submission).encode(), bearer
            )
            if accept("ticket", status, body, REQUEST_CLIENT):
                f.requests_tickets += 1
        if active:  # IXC refuses a trust unblock of a contract that is not blocked
            submission = {"type": "trust_unblock", "params": {"contract_id": active[-1]["id"]}}
            status, body = self._ingress_post(
                f"{base}/v1/requests", json.dumps(submission).encode(), bearer
            )
            refused = accept("trust unblock (not blocked)", status, body, REQUEST_CLIENT)
            if refused is not None:
                f.requests_expected_failed.append(refused)
        f.requests_sent = len(paid) + len(trust) + min(5, len(active)) + (1 if active else 0)
        f.requests_accepted = len(accepted)
        f.request_ids = sorted(accepted)
        begin = time.monotonic()
        final = self._wait_requests(base, tokens, accepted, 90)
        f.requests_wait_s = round(time.monotonic() - begin, 1)
        f.requests_states = dict(sorted(Counter(final.values()).items()))
        self.echo(
            f"service requests: {f.requests_accepted}/{f.requests_sent} accepted "
            f"({len(paid)} payment webhooks, {len(trust)} trust unblocks, {f.requests_tickets} "
            f"tickets, 1 IXC refuses); a replayed webhook got its first request back: "
            f"{f.requests_replayed_same_id}; final states {_pairs(f.requests_states)} "
            f"after {f.requests_wait_s}s"
        )
        before = self.coa.count(COA_REQUEST) if self.coa is not None else 0
        self.echo("  unblocks into ixc.contract-status: " + self.poll_once("ixc-poll-requests"))
        if self.coa is not None and f.requests_paid_with_session:
            got = self._wait_coa(before + len(f.requests_paid_with_session), 30)
            self.echo(
                f"  CoA (plan rate restored): {got - before} at the NAS for "
                f"{len(f.requests_paid_with_session)} paying contracts with a live session"
            )

    def _webhook(
        self, base: str, secret: str, raw: bytes, timestamp: int
    ) -> tuple[int, dict[str, Any]]:
        from producers.ingress.guards import sign

        headers = {
            "X-Filas-Gateway": PAYMENT_GATEWAY,
            "X-Filas-Timestamp": str(timestamp),
            "X-Filas-Signature": sign(secret, str(timestamp), raw),
        }
        return self._ingress_post(f"{base}/v1/webhooks/payments", raw, headers)

    @staticmethod
    def _ingress_post(
        url: str, raw: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(  # noqa: S310 - the run's ingress on 127.0.0.1
            url, data=raw, headers={"Content-Type": "application/json", **headers}, method="POST"
        )
        return _http_json(request)

    def _wait_requests(
        self, base: str, tokens: Mapping[str, str], accepted: Mapping[str, str], timeout_s: float
    ) -> dict[str, str]:
        """Read each request's status URL (with its client's token) until it is final."""
        final: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        while len(final) < len(accepted) and time.monotonic() < deadline:
            for request_id, client in accepted.items():
                if request_id in final:
                    continue
                request = urllib.request.Request(  # noqa: S310 - the run's ingress
                    f"{base}/v1/requests/{request_id}",
                    headers={"Authorization": f"Bearer {tokens[client]}"},
                )
                status, body = _http_json(request)
                if status == 200 and body.get("state") in FINAL_REQUEST_STATES:
                    final[request_id] = str(body["state"])
            if len(final) < len(accepted):
                time.sleep(0.3)
        for request_id in accepted:
            final.setdefault(request_id, "not final")
        return final

    def step_campaign(self) -> None:
        from consumers.delivery.peers import SmsGatewayFake

        smtp = _campaign_smtp_sink().start()
        self.peers.append(smtp)
        sms = SmsGatewayFake().start()
        self.peers.append(sms)
        env = {
            "FILAS_DELIVERY__EMAIL__HOST": "127.0.0.1",
            "FILAS_DELIVERY__EMAIL__PORT": str(smtp.port),
            "FILAS_DELIVERY__SMS__URL": sms.url,
            # The default request plus the campaign id, so the run tells its campaign's SMS
            # from the payment confirmations the service requests also send.
            "FILAS_DELIVERY__SMS__BODY_TEMPLATE": SMS_BODY_TEMPLATE,
        }
        self.env |= env
        self.supervisor.start(
            "campaign-fanout",
            filas_argv("campaigns", "fanout", "--stats-every", "10"),
            env=self._metrics_env("campaign-fanout"),
            ready=log_contains("campaign fan-out up"),
            timeout_s=180,
        )
        for channel in ("email", "sms"):
            self.supervisor.start(
                f"delivery-{channel}",
                filas_argv("delivery", "serve", "--channel", channel, "--stats-every", "10"),
                env=self._metrics_env(f"delivery-{channel}"),
                ready=log_contains("delivery worker up"),
                timeout_s=120,
            )
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            handle.write(
                "name: Oferta Fibra 1G (homologação)\n"
                "channels: [email, sms]\n"
                "purpose: marketing\n"
                "subject: 'Fibra 1G para você, {{ first_name }}'\n"
                "body: 'Olá {{ first_name }}, sua fibra pode chegar a 1 Gbps. Responda SAIR "
                "para não receber mais.'\n"
                "send_window: '00:00-24:00'\n"
            )
            path = handle.name
        try:
            log = self._run("campaign-create", "campaigns", "create", path, attempts=1)
        finally:
            Path(path).unlink()
        campaign_id = log.strip().splitlines()[-1]
        self.facts.campaign_id = campaign_id
        progress = self._wait_campaign(campaign_id, 240)
        queued = int(progress.get("queued", 0))
        self.facts.campaign_queued = queued

        # Wait for every queued message at a sink, or until nothing moved for 15 s (a stuck or
        # dead delivery worker is a finding of the run, reported below, not a hang). The sinks
        # also get the service requests' payment notices: only this campaign's count here.
        def at_sinks() -> tuple[int, int]:
            sms_count = sum(1 for m in list(sms.accepted) if m.get("campaign_id") == campaign_id)
            return smtp.of_campaign(campaign_id), sms_count

        last, moved_at = -1, time.monotonic()
        while sum(at_sinks()) < queued:
            now_count = sum(at_sinks())
            if now_count != last:
                last, moved_at = now_count, time.monotonic()
            if time.monotonic() - moved_at > 15:
                break
            time.sleep(0.5)
        for channel in ("email", "sms"):
            if not self.supervisor.alive(f"delivery-{channel}"):
                self.echo(f"  WARNING: delivery-{channel} exited; see its log")
        self.facts.emails_at_sink, self.facts.sms_at_sink = at_sinks()
        others = smtp.count() + len(sms.accepted) - sum(at_sinks())
        self.facts.other_messages_at_sinks = others
        self.echo(
            f"campaign {campaign_id}: {queued} messages queued; {self.facts.emails_at_sink} "
            f"e-mails at the SMTP sink, {self.facts.sms_at_sink} SMS at the HTTP sink (and "
            f"{others} other messages: payment confirmations of the service requests)"
        )

    def _wait_campaign(self, campaign_id: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        latest: dict[str, Any] = {}
        n = 0
        while time.monotonic() < deadline:
            n += 1
            code, log = self.supervisor.run(
                f"campaign-progress-{n}", filas_argv("campaigns", "progress", campaign_id, "--json")
            )
            lines = [x for x in log.splitlines() if x.startswith("{")]
            if code == 0 and lines:
                latest = json.loads(lines[-1])
                if str(latest.get("status")) in ("done", "failed", "cancelled"):
                    return latest
            time.sleep(2)
        return latest

    def step_outage_alert(self) -> None:
        from filas.catalog.network import ALERTS
        from producers.pinger.netns import NetNs

        pop = self.nas[0].pop_id
        forms = ("radpop", "radpop_radio", "radpop_radio_cliente_fibra")
        devices = [
            (form, r["id"])
            for form in forms
            for r in self.isp.records(form)
            if (r["id"] if form == "radpop" else r.get("id_pop")) == pop and r.get("ip")
        ][:240]
        net = NetNs(extra=len(devices)).__enter__()
        self.peers.append(_NetNsPeer(net))
        for (form, record_id), address in zip(devices, net.hosts, strict=True):
            self._post(f"/_sim/records/{form}/{record_id}", {"ip": address})
        self.facts.outage_devices = len(devices)
        self.echo(
            f"POP {pop}: {len(devices)} devices moved behind {net.gateway} (namespace {net.ns}); "
            + self.poll_once("ixc-poll-devices")
        )
        self.env |= PING_ENV
        self.supervisor.start(
            "pinger",
            filas_argv("ping", "serve", "--stats-every", "10"),
            env=self._metrics_env("pinger"),
            ready=log_contains(" up"),
            timeout_s=120,
        )
        self.supervisor.start(
            "alerting",
            filas_argv("alerts", "serve", "--stats-every", "10"),
            env=self._metrics_env("alerting"),
            ready=log_contains("alerting up"),
            timeout_s=120,
        )
        time.sleep(5)  # rounds with every device up first, so the outage is a change
        before = self._sink_messages()
        net.link_down()
        self.echo(f"POP {pop} uplink cut at {datetime.now(UTC):%H:%M:%S}")
        table = self._table_of(ALERTS)
        deadline = time.monotonic() + 90
        alerts = 0
        while time.monotonic() < deadline:
            alerts = self._count(table)
            if alerts > 0 and self._sink_messages() > before:
                break
            time.sleep(1)
        time.sleep(3)  # let the notices drain
        self.facts.outage_alerts = self._count(table)
        self.facts.notices_at_sinks = self._sink_messages() - before
        self.echo(
            f"down alerts opened: {self.facts.outage_alerts}; subscriber notices at the sinks: "
            f"{self.facts.notices_at_sinks}"
        )
        net.link_up()

    def _sink_messages(self) -> int:
        return sum(
            p.count() if hasattr(p, "count") else len(getattr(p, "accepted", ()))
            for p in self.peers
            if not isinstance(p, _NetNsPeer)
        )

    def _table_of(self, spec: Any) -> str:
        from consumers.clickhouse.tables import table_name
        from filas.catalog import Catalog

        return table_name(Catalog.build(self.settings.topics.prefix).resolve(spec).name)

    def _count(self, table: str) -> int:
        from consumers.clickhouse.client import ClickHouse
        from filas.homologation.summary import Db

        ch = Db(ClickHouse(self.settings.clickhouse), {"t": table})
        try:
            exists = ch.query("EXISTS TABLE $t")
            if not exists or not int(exists[0][0]):
                return 0
            # Down alerts opened: the outage (degraded or flapping ones are other stories).
            rows = ch.query("SELECT count() FROM $t WHERE action = 'open' AND state = 'down'")
            return int(rows[0][0])
        finally:
            ch.close()

    def step_summary(self) -> None:
        prefix = self.settings.topics.prefix
        groups = [self.sink_group, prefix + self.settings.radius.coa_group_id]
        if self.facts.request_ids:
            from filas.catalog.requests import LANES

            worker_group = prefix + self.settings.ingress.worker_group_id
            groups += [f"{worker_group}.{lane.lane}" for lane in LANES]
        if self.facts.campaign_id is not None:
            groups.append(prefix + self.settings.campaigns.group_id)
            groups += [f"{prefix}{self.settings.delivery.group_id}-{c}" for c in ("email", "sms")]
        self.summary = collect_summary(
            self.settings, self.facts, self.started_at, self.echo, groups
        )
        for line in format_summary(self.summary, self.facts):
            self.echo(line)

    # ---- the run ------------------------------------------------------------------------

    def planned(self) -> list[Planned]:
        from filas.cli.main import cli

        available = available_commands(cli)
        steps = list(STEPS)
        if not self.config.campaign:
            steps = [
                s
                if s.name != "campaign"
                else Step(
                    s.name, s.title, s.needs, s.after, off_reason="turned off (--no-campaign)"
                )
                for s in steps
            ]
        if self.config.use_running_platform:
            steps[0] = Step(
                steps[0].name, "Platform: the running one named by FILAS_*", optional=False
            )
        return plan(steps, available)

    def run(self) -> int:
        planned = self.planned()
        self.echo(f"homologation run {self.run_id}; logs in {self.supervisor.log_dir}")
        for line in format_plan(planned):
            self.echo(line)
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        done = False
        try:
            for number, item in enumerate(planned, 1):
                title = f"{number}. {item.step.title}"
                if not item.runs:
                    self.echo(f"\n== {title}: SKIPPED ({item.skip_reason})")
                    self.facts.skipped[item.step.name] = str(item.skip_reason)
                    continue
                self.echo(f"\n== {title}")
                begin = time.monotonic()
                getattr(self, f"step_{item.step.name}")()
                self.echo(f"   ({time.monotonic() - begin:.1f}s)")
            self.facts.processes = list(self.supervisor.children)
            self._write_json()
            if not self.config.exit_after and self.facts.status_page:
                self.echo(
                    f"\nThe status page stays up at {self.facts.status_page} with every "
                    "processor running; Ctrl-C stops them all."
                )
                done = True
                while True:
                    time.sleep(3600)
            return 0
        except KeyboardInterrupt:
            self.echo("\nstopping every process the run started")
            return 0 if done else 130
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.close()

    def close(self) -> None:
        for name, child in self.supervisor.children.items():
            one_shot = child.log.closed and not child.stopped_by_us
            if not one_shot and child.proc.poll() is not None:
                self.facts.exited_early[name] = child.proc.poll()
        if self.facts.exited_early:
            self.echo(f"processes that exited before the end: {self.facts.exited_early}")
        codes = self.supervisor.stop_all()
        for peer in self.peers:
            peer.stop()
        if self.coa is not None:
            self.coa.close()
        if self.fleet is not None:
            self.fleet.close()
        still = self.supervisor.running()
        self.echo(
            f"stopped {len(codes)} processes"
            + (f"; STILL RUNNING: {', '.join(still)}" if still else "")
        )
        self._write_json(stopped=codes)

    def _write_json(self, stopped: Mapping[str, int | None] | None = None) -> None:
        if self.config.summary_json is None:
            return
        document: dict[str, Any] = {
            "run_id": self.run_id,
            "facts": asdict(self.facts),
            "summary": asdict(self.summary) if self.summary is not None else None,
            "pids": {n: c.proc.pid for n, c in self.supervisor.children.items()},
        }
        if stopped is not None:
            document["stopped"] = dict(stopped)
            document["running_after_stop"] = self.supervisor.running()
        self.config.summary_json.write_text(json.dumps(document, indent=2, default=str))


class _NetNsPeer:
    """The outage POP's namespace as a peer the run stops (deleted on every exit path)."""

    def __init__(self, net: Any) -> None:
        self.net = net

    def stop(self) -> None:
        self.net.close()


def _campaign_smtp_sink() -> Any:
    """The SMTP sink, also counting each mail's campaign (its X-Filas-Campaign header)."""
    from consumers.delivery.peers import SmtpSink, header_value

    class CampaignSmtpSink(SmtpSink):
        def __init__(self) -> None:
            super().__init__()
            self.campaigns: Counter[str] = Counter()

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            answer = await super().handle_DATA(server, session, envelope)
            if answer.startswith("250"):
                content = envelope.original_content or envelope.content
                raw = content if isinstance(content, bytes) else b""
                with self._lock:
                    self.campaigns[header_value(raw, b"x-filas-campaign")] += 1
            return answer

        def of_campaign(self, campaign_id: str) -> int:
            with self._lock:
                return self.campaigns[campaign_id]

    return CampaignSmtpSink()


def _http_json(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one call to the ingress (an error status is an answer too)."""
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        try:
            return int(exc.code), json.loads(raw or b"{}")
        except ValueError:
            return int(exc.code), {"raw": raw[:200].decode(errors="replace")}


def _pairs(values: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "none"


def _accepted(reply: Reply | None) -> bool:
    return reply is not None and reply.code == ACCESS_ACCEPT


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_homologation(settings: Settings, config: HomologationConfig) -> int:
    return Homologation(settings, config, click.echo).run()
