"""Access-Request throughput and latency: the Filas RADIUS gateway vs FreeRADIUS 3.2.

The servers run on this machine in the same run with the same subscribers and answer PAP
Access-Requests carrying Message-Authenticator (all require it): FreeRADIUS with the ``files``
module (one entry per login, the same reply attributes), FreeRADIUS with ``rlm_sql`` on SQLite
(Debian's ``rlm_sql_sqlite``: radcheck/radreply rows per login, FreeRADIUS's own schema and
queries, group lookups on, as an ISP's SQL-backed FreeRADIUS runs; ``--no-sql`` skips it), and
the gateway (its replica read from ``ixc.subscribers``, events published to Kafka as in
production).

- Throughput: FreeRADIUS's own ``radclient -p P -f FILE`` (C processes at once, each with
  its share of N requests for distinct logins) loads each server in turn; requests/s = accepted /
  wall time, median of the runs.
- Latency: an open-loop sender at a fixed rate (default 2,000 requests/s, the issue's goal
  point) from 16 UDP sockets, per-request round trip, p50 and p99.

Run: ``make bench-radius-auth`` (or ``python -m bench.radius_auth --logins 20000``). Needs
``freeradius`` and ``radclient`` (Debian freeradius, freeradius-utils).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import selectors
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import report, services
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.ixc_state import CONTRACTS, NAS, SUBSCRIBERS
from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.local_platform.processes import free_port
from filas.settings import Settings
from producers.envelope import envelope
from producers.radius.pyrad_adapter import ACCESS_REQUEST, RadiusCodec

PEER = "freeradius-3.2-files"
SQL_PEER = "freeradius-3.2-sql"
SQL_SCHEMA = Path("/etc/freeradius/3.0/mods-config/sql/main/sqlite/schema.sql")
SQL_QUERIES = Path("/etc/freeradius/3.0/mods-config/sql/main/sqlite/queries.conf")
REPLY = (
    ("Framed-Pool", "pool-clientes"),
    ("Session-Timeout", "86400"),
    ("Acct-Interim-Interval", "300"),
    ("Mikrotik-Rate-Limit", "50M/100M"),
)
SECRET = "bench-secret"  # noqa: S105 - a throwaway NAS secret for local servers
SECRET_REF = "ixc/nas/bench/radius-secret"  # noqa: S105 - a key, not a secret
SOCKETS = 16


def login(i: int) -> str:
    return f"cliente{i:06d}@fibra"


def password(i: int) -> str:
    return f"senha-{i:06d}"


# ---- the two servers ---------------------------------------------------------------------


def seed(settings: Settings, catalog: Catalog, logins: int) -> None:
    with build_producer(settings, catalog=catalog) as producer:
        producer.emit(
            NAS,
            {
                "envelope": envelope("bench"),
                "nas_id": "bench",
                "name": "bras-bench",
                "ip": "127.0.0.1",
                "vendor": "MIKROTIK",
                "secret_ref": SECRET_REF,
            },
        )
        for i in range(logins):
            producer.emit(
                SUBSCRIBERS,
                {
                    "envelope": envelope("bench"),
                    "login": login(i),
                    "login_id": str(i),
                    "login_type": "PPPOE",
                    "contract_id": str(i),
                    "customer_id": str(i),
                    "status": "ACTIVE",
                    "password": password(i),
                    "download_kbps": 100_000,
                    "upload_kbps": 50_000,
                },
            )


@contextmanager
def gateway(settings: Settings, prefix: str, workers: int = 1) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILAS_")}
    env |= {
        "FILAS_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "FILAS_REGISTRY__URL": settings.registry.url,
        "FILAS_TOPICS__PREFIX": prefix,
        "FILAS_RADIUS__BIND_HOST": "127.0.0.1",
        "FILAS_RADIUS__AUTH_PORT": str(port),
        "FILAS_RADIUS__ACCT_PORT": str(free_port()),
        "FILAS_RADIUS__NAS_SECRETS": f'{{"{SECRET_REF}": "{SECRET}"}}',
        "FILAS_RADIUS__DEFAULT_POOL": "pool-clientes",
        "FILAS_RADIUS__REPLICA_READY_TIMEOUT_S": "120",
    }
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "filas.cli.main", "radius", "serve"),
            *("--stats-every", "3600", "--workers", str(workers)),
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    ready = threading.Event()
    tail: list[str] = []

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail[:] = [*tail[-20:], line.rstrip()]
            if line.startswith("radius gateway up"):
                ready.set()
            elif " ERROR " in line or "Traceback" in line:
                print(f"gateway: {line.rstrip()}", flush=True)

    threading.Thread(target=watch, daemon=True).start()
    try:
        if not ready.wait(300):
            raise RuntimeError("the gateway did not start within 300 s:\n" + "\n".join(tail))
        SERVER_PIDS[port] = proc.pid
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


FREERADIUS_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
modconfdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/freeradius.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1048576
hostname_lookups = no
log {{
    destination = stdout
    auth = no
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 8
    max_servers = 32
    min_spare_servers = 4
    max_spare_servers = 16
    max_requests_per_server = 0
    max_queue_size = 1048576
}}
client nas {{
    ipaddr = 127.0.0.1
    secret = {secret}
    require_message_authenticator = yes
}}
modules {{
    files {{
        filename = {dir}/users
    }}
    pap {{
        normalise = yes
    }}
    chap {{
    }}
{sql_module}}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
    authorize {{
        {store}
        chap
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
        Auth-Type CHAP {{
            chap
        }}
    }}
    post-auth {{
    }}
}}
"""


SQL_MODULE = """\
    expr {{
    }}
    sql {{
        dialect = "sqlite"
        driver = "rlm_sql_sqlite"
        sqlite {{
            filename = "{dir}/radius.db"
            busy_timeout = 200
        }}
        radius_db = "radius"
        acct_table1 = "radacct"
        acct_table2 = "radacct"
        postauth_table = "radpostauth"
        authcheck_table = "radcheck"
        groupcheck_table = "radgroupcheck"
        authreply_table = "radreply"
        groupreply_table = "radgroupreply"
        usergroup_table = "radusergroup"
        client_table = "nas"
        delete_stale_sessions = yes
        read_groups = yes
        group_attribute = "SQL-Group"
        pool {{
            start = 8
            min = 4
            max = 32
            spare = 16
            uses = 0
            lifetime = 0
            idle_timeout = 60
        }}
        $INCLUDE {queries}
    }}
"""


def sql_database(path: Path, logins: int) -> None:
    """FreeRADIUS's own SQLite schema; one Cleartext-Password check row and the four reply rows
    per login (radcheck/radreply, as IXC's SQL-backed FreeRADIUS keeps them)."""
    with sqlite3.connect(path) as db:
        db.executescript(SQL_SCHEMA.read_text())
        db.executemany(
            "INSERT INTO radcheck (username, attribute, op, value) VALUES (?, ?, ':=', ?)",
            ((login(i), "Cleartext-Password", password(i)) for i in range(logins)),
        )
        db.executemany(
            "INSERT INTO radreply (username, attribute, op, value) VALUES (?, ?, '=', ?)",
            ((login(i), name, value) for i in range(logins) for name, value in REPLY),
        )


@contextmanager
def freeradius(logins: int, backend: str = "files") -> Iterator[int]:
    binary = shutil.which("freeradius") or shutil.which("radiusd")
    if binary is None:
        raise SystemExit("freeradius not installed (apt-get install freeradius)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="filas-bench-freeradius-") as tmp:
        raddb = Path(tmp)
        sql = backend == "sql"
        (raddb / "radiusd.conf").write_text(
            FREERADIUS_CONF.format(
                dir=raddb,
                secret=SECRET,
                port=port,
                store="sql" if sql else "files",
                sql_module=SQL_MODULE.format(dir=raddb, queries=SQL_QUERIES) if sql else "",
            )
        )
        (raddb / "dictionary").write_text("")
        if sql:
            sql_database(raddb / "radius.db", logins)
            (raddb / "users").write_text("")
        else:
            (raddb / "users").write_text(
                "".join(
                    f'{login(i)} Cleartext-Password := "{password(i)}"\n'
                    + ",\n".join(
                        f'\t{name} = "{value}"' if not value.isdigit() else f"\t{name} = {value}"
                        for name, value in REPLY
                    )
                    + "\n\n"
                    for i in range(logins)
                )
            )
        log = (raddb / "freeradius.log").open("w")
        proc = subprocess.Popen(
            [binary, "-f", "-d", str(raddb), "-l", "stdout"], stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 60
            while "Ready to process requests" not in (raddb / "freeradius.log").read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "freeradius did not start:\n" + (raddb / "freeradius.log").read_text()
                    )
                time.sleep(0.1)
            SERVER_PIDS[port] = proc.pid
            yield port
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


# port -> server process id (the gateway's parent when it runs workers)
SERVER_PIDS: dict[int, int] = {}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (threads included), from /proc:
    on a shared machine CPU per request is the figure contention does not distort."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total


# ---- load ------------------------------------------------------------------------------


def load_files(directory: Path, name: str, logins: int, requests: int, clients: int) -> list[Path]:
    """``requests`` PAP requests (distinct logins, round robin) split over ``clients`` files:
    radclient walks its whole request list per reply, so one huge file measures radclient."""
    paths = []
    for c in range(clients):
        path = directory / f"{name}-{c}.txt"
        path.write_text(
            "".join(
                f'User-Name = "{login(k % logins)}"\nUser-Password = "{password(k % logins)}"\n'
                "NAS-IP-Address = 127.0.0.1\nMessage-Authenticator = 0x00\n\n"
                for k in range(c, requests, clients)
            )
        )
        paths.append(path)
    return paths


def radclient_throughput(port: int, files: list[Path], parallel: int) -> tuple[float, int, int]:
    """(accepted requests/s, accepted, lost): one radclient per file, all at once."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                *("radclient", "-q", "-s", "-p", str(parallel), "-r", "3", "-t", "3"),
                *("-f", str(path), f"127.0.0.1:{port}", "auth", SECRET),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for path in files
    ]
    accepted = lost = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        accepted += int(re.search(r"Accepted\s*:\s*(\d+)", out).group(1))  # type: ignore[union-attr]
        lost += int(re.search(r"Lost\s*:\s*(\d+)", out).group(1))  # type: ignore[union-attr]
    took = time.perf_counter() - started
    return accepted / took, accepted, lost


def latency_probe(port: int, logins: int, rate: float, seconds: float) -> tuple[list[float], int]:
    """Open-loop sender at ``rate`` requests/s; (round trips in ms, requests unanswered)."""
    codec = RadiusCodec()
    total = int(rate * seconds)
    packets = [
        codec.build_request(
            ACCESS_REQUEST,
            SECRET.encode(),
            {"User-Name": login(k % logins), "NAS-IP-Address": "127.0.0.1"},
            password=password(k % logins),
            identifier=(k // SOCKETS) % 256,
        )
        for k in range(total)
    ]
    socks = []
    selector = selectors.DefaultSelector()
    for index in range(SOCKETS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
        socks.append(sock)
    sent_at: dict[tuple[int, int], float] = {}
    rtts: list[float] = []

    def receive(timeout: float) -> None:
        for key, _ in selector.select(timeout):
            sock = socks[key.data]
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                sent = sent_at.pop((key.data, data[1]), None)
                if sent is not None:
                    rtts.append((time.perf_counter() - sent) * 1000)

    start = time.perf_counter()
    for k, packet in enumerate(packets):
        due = start + k / rate
        while (now := time.perf_counter()) < due:
            receive(due - now)
        index = k % SOCKETS
        sent_at[(index, packet[1])] = time.perf_counter()
        socks[index].sendto(packet, ("127.0.0.1", port))
        receive(0)
    drain_until = time.perf_counter() + 3
    while sent_at and time.perf_counter() < drain_until:
        receive(0.05)
    for sock in socks:
        sock.close()
    return rtts, len(sent_at)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logins", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--parallel", type=int, default=64, help="radclient -p, per client")
    parser.add_argument("--clients", type=int, default=4, help="radclient processes at once")
    parser.add_argument("--rate", type=float, default=2_000.0, help="latency probe requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency probe duration")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="gateway processes (SO_REUSEPORT)")
    parser.add_argument(
        "--sql",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure FreeRADIUS with rlm_sql (SQLite)",
    )
    args = parser.parse_args()
    if shutil.which("radclient") is None:
        raise SystemExit("radclient not installed (apt-get install freeradius-utils)")

    with services(registry=True) as settings, tempfile.TemporaryDirectory() as tmp:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        catalog = Catalog.build(prefix)
        specs = [
            catalog.resolve(s)
            for s in (SUBSCRIBERS, CONTRACTS, NAS, ACCOUNTING, AUTH_REQUESTS, AUTH_DECISIONS)
        ]
        TopicAdmin(settings.kafka).apply(catalog.only(*specs))
        seed(settings, catalog, args.logins)
        packets = load_files(Path(tmp), "load", args.logins, args.requests, args.clients)
        warmup = load_files(Path(tmp), "warmup", args.logins, 2000, 2)
        print(
            f"{args.logins} logins; {args.requests} PAP requests per run, "
            f"{args.clients} x radclient -p {args.parallel}"
        )

        results: dict[str, dict[str, list[float]]] = {}
        with contextlib.ExitStack() as stack:
            servers = {
                "freeradius": stack.enter_context(freeradius(args.logins)),
                "gateway": stack.enter_context(gateway(settings, prefix, args.workers)),
            }
            if args.sql:
                servers["fr-sql"] = stack.enter_context(freeradius(args.logins, "sql"))
            for name, port in servers.items():  # warm-up: caches, thread pools
                radclient_throughput(port, warmup, 64)
                results[name] = {"rps": [], "lost": []}
            for run in range(args.runs):
                for name, port in servers.items():
                    cpu_before = cpu_seconds(SERVER_PIDS[port])
                    rps, accepted, lost = radclient_throughput(port, packets, args.parallel)
                    cpu = cpu_seconds(SERVER_PIDS[port]) - cpu_before
                    results[name].setdefault("cpu_us", []).append(cpu / max(accepted, 1) * 1e6)
                    results[name]["rps"].append(rps)
                    results[name]["lost"].append(lost)
                    print(
                        f"run {run + 1}: {name:10} {rps:9,.0f} req/s "
                        f"accepted={accepted} lost={lost} "
                        f"cpu={results[name]['cpu_us'][-1]:.0f} us/request"
                    )
            for name, port in servers.items():
                rtts, unanswered = latency_probe(port, args.logins, args.rate, args.seconds)
                results[name]["p50"] = [percentile(rtts, 0.50)]
                results[name]["p99"] = [percentile(rtts, 0.99)]
                results[name]["unanswered"] = [float(unanswered)]
                print(
                    f"latency {name:10} at {args.rate:,.0f} req/s: "
                    f"p50 {results[name]['p50'][0]:.2f} ms "
                    f"p99 {results[name]['p99'][0]:.2f} ms unanswered {unanswered}"
                )

    fr, gw = results["freeradius"], results["gateway"]
    fr_rps, gw_rps = statistics.median(fr["rps"]), statistics.median(gw["rps"])
    report("radius_freeradius_auth_throughput", fr_rps, "requests/s", 1.0, PEER)
    report("radius_gateway_auth_throughput", gw_rps, "requests/s", gw_rps / fr_rps, PEER)
    for q in ("p50", "p99"):
        report(
            f"radius_gateway_auth_latency_{q}_at_{args.rate:.0f}rps",
            gw[q][0],
            "ms",
            gw[q][0] / max(fr[q][0], 1e-6),
            PEER,
        )
    gw_cpu = statistics.median(gw["cpu_us"])
    report(
        "radius_gateway_cpu_per_request",
        gw_cpu,
        "us",
        gw_cpu / statistics.median(fr["cpu_us"]),
        PEER,
    )
    if "fr-sql" in results:
        report(
            "radius_gateway_cpu_per_request_vs_sql",
            gw_cpu,
            "us",
            gw_cpu / statistics.median(results["fr-sql"]["cpu_us"]),
            SQL_PEER,
        )
        sql_rps = statistics.median(results["fr-sql"]["rps"])
        report("radius_freeradius_sql_auth_throughput", sql_rps, "requests/s", 1.0, SQL_PEER)
        report(
            "radius_gateway_auth_throughput_vs_sql",
            gw_rps,
            "requests/s",
            gw_rps / sql_rps,
            SQL_PEER,
        )
        report(
            f"radius_gateway_auth_latency_p99_at_{args.rate:.0f}rps_vs_sql",
            gw["p99"][0],
            "ms",
            gw["p99"][0] / max(results["fr-sql"]["p99"][0], 1e-6),
            SQL_PEER,
        )
    report(
        "radius_gateway_unanswered",
        sum(gw["lost"]) + gw["unanswered"][0],
        "requests",
        (sum(gw["lost"]) + gw["unanswered"][0]) / max(sum(fr["lost"]) + fr["unanswered"][0], 1),
        PEER,
    )


if __name__ == "__main__":
    main()
