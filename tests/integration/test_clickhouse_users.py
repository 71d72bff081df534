"""ClickHouse access: the local platform's users.xml gives analysts a read-only user and the sink
its own user (docs/clickhouse.md#access).

Runs against a private ClickHouse started from the same templates as ``filas up`` (the shared
platform's server may predate the users; it is never restarted): ~3 s to start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from consumers.clickhouse.app import build_sink, run_migrations, tables_for
from consumers.clickhouse.client import READONLY, UNKNOWN_TABLE, ClickHouse
from consumers.clickhouse.errors import ClickHouseError
from consumers.clickhouse.sink import SinkConfig
from filas.admin.topics import TopicAdmin
from filas.bootstrap import build_producer
from filas.catalog import Catalog
from filas.catalog.radius import ACCOUNTING
from filas.local_platform.clickhouse import LocalClickHouse
from filas.local_platform.processes import free_port
from filas.settings import ClickHouseSettings, Settings, TopicsSettings

pytestmark = pytest.mark.integration

# ClickHouse server error codes (src/Common/ErrorCodes.cpp), the same on 18.16 and today.
WRONG_PASSWORD = 193  # 18.16; current releases answer 516 AUTHENTICATION_FAILED
AUTHENTICATION_FAILED = 516
DATABASE_ACCESS_DENIED = 291


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalClickHouse]:
    home = tmp_path_factory.mktemp("ch-users")
    ch = LocalClickHouse(
        home=home, tcp_port=free_port(), http_port=free_port(), database="filas_users"
    )
    ch.start()
    try:
        yield ch
    finally:
        ch.stop()


def admin_settings(server: LocalClickHouse) -> ClickHouseSettings:
    return ClickHouseSettings(
        host="127.0.0.1",
        port=server.tcp_port,
        database=server.database,
        sink_user=server.sink_user,
        sink_password=SecretStr(server.sink_password),
    )


def refused(client: ClickHouse, sql: str, params: dict[str, Any] | None = None) -> int | None:
    with pytest.raises(ClickHouseError) as caught:
        client.query(sql, params)
    assert caught.value.retriable is False, "a refusal must not be retried"
    return caught.value.server_code


def whoami(client: ClickHouse) -> str:
    """The server's idea of the connected user (18.16 has no currentUser())."""
    marker = uuid.uuid4().hex
    rows = client.query(
        "SELECT user FROM system.processes WHERE query LIKE %(m)s", {"m": f"%{marker}%"}
    )
    return str(rows[0][0])


def test_users_file_holds_no_password_in_clear(server: LocalClickHouse) -> None:
    users = (server.directory / "users.xml").read_text()
    for password in (server.sink_password, server.analyst_password):
        assert password not in users
    assert "password_sha256_hex" in users


def test_analyst_reads_but_cannot_insert_drop_or_alter(server: LocalClickHouse) -> None:
    settings = admin_settings(server)
    admin = ClickHouse(settings)
    table = f"facts_{uuid.uuid4().hex[:8]}"
    admin.query(f"CREATE TABLE `{table}` (n UInt32) ENGINE = MergeTree() ORDER BY n")
    admin.insert(table, ("n",), [(1,), (2,), (3,)])

    analyst = ClickHouse(settings.as_analyst())
    try:
        assert analyst.query(f"SELECT sum(n) FROM `{table}`") == [(6,)]  # noqa: S608
        assert whoami(analyst) == server.analyst_user
        assert refused(analyst, f"INSERT INTO `{table}` VALUES (4)") == READONLY  # noqa: S608
        assert refused(analyst, f"DROP TABLE `{table}`") == READONLY
        assert refused(analyst, f"ALTER TABLE `{table}` DELETE WHERE n = 1") == READONLY
        assert refused(analyst, "CREATE TABLE x (n UInt8) ENGINE = Memory") == READONLY
        # readonly=1 also refuses raising its own limits.
        assert refused(analyst, "SET max_memory_usage = 100000000000") == READONLY
        with pytest.raises(ClickHouseError) as caught:
            analyst.insert(table, ("n",), [(4,)])
        assert caught.value.server_code == READONLY
        # Nothing changed: the table is still there with its three rows.
        assert admin.query(f"SELECT count() FROM `{table}`") == [(3,)]  # noqa: S608
    finally:
        analyst.close()
        admin.query(f"DROP TABLE IF EXISTS `{table}`")
        admin.close()


def test_sink_user_is_confined_to_its_database_and_needs_its_password(
    server: LocalClickHouse,
) -> None:
    settings = admin_settings(server)
    sink = ClickHouse(settings.as_sink())
    try:
        assert whoami(sink) == server.sink_user
        table = f"own_{uuid.uuid4().hex[:8]}"
        sink.query(f"CREATE TABLE `{table}` (n UInt32) ENGINE = MergeTree() ORDER BY n")
        sink.insert(table, ("n",), [(7,)])
        assert sink.query(f"SELECT n FROM `{table}`") == [(7,)]  # noqa: S608
        outside = ClickHouse(settings, database="default")
        outside.query(f"CREATE TABLE `{table}` (n UInt32) ENGINE = Memory")
        try:
            assert refused(sink, f"SELECT n FROM default.`{table}`") == DATABASE_ACCESS_DENIED  # noqa: S608
            assert refused(sink, f"DROP TABLE default.`{table}`") == DATABASE_ACCESS_DENIED
        finally:
            outside.query(f"DROP TABLE IF EXISTS `{table}`")
            outside.close()
    finally:
        sink.close()
    wrong = ClickHouse(settings.as_sink().model_copy(update={"password": SecretStr("nope")}))
    try:
        assert refused(wrong, "SELECT 1") in (WRONG_PASSWORD, AUTHENTICATION_FAILED)
    finally:
        wrong.close()


def test_the_sink_runs_as_the_sink_user(
    server: LocalClickHouse, platform: Settings, unique_name: str
) -> None:
    settings = platform.model_copy(
        update={"topics": TopicsSettings(prefix=unique_name), "clickhouse": admin_settings(server)}
    )
    catalog = Catalog.build(settings.topics.prefix)
    spec = catalog.resolve(ACCOUNTING)
    TopicAdmin(settings.kafka).apply(catalog.only(ACCOUNTING, catalog.dead_letter_for(spec)))
    now = datetime.now(UTC)
    with build_producer(settings, catalog=catalog) as producer:
        for i in range(50):
            producer.emit(
                ACCOUNTING,
                {
                    "envelope": {
                        "event_id": str(uuid.uuid4()),
                        "occurred_at": now,
                        "source_system": "test",
                    },
                    "login": f"cliente{i}@fibra",
                    "status_type": "start",
                    "session_id": f"S{i}",
                    "nas_ip_address": "10.0.0.1",
                    "event_at": now,
                    "received_at": now,
                },
            )
    run_migrations(settings, ["radius.accounting"])  # as the administrator
    sink = build_sink(
        settings,
        topics=["radius.accounting"],
        group_id=f"{unique_name}sink",
        config=SinkConfig(batch_rows=1000, linger_s=0.2),
    )
    assert sink.run(idle_exit_s=3).total_rows == 50

    table = tables_for(settings, ["radius.accounting"])[spec.name].name
    admin = ClickHouse(settings.clickhouse)
    try:
        assert admin.query(f"SELECT count() FROM `{table}`") == [(50,)]  # noqa: S608
        # The server's own record of who inserted (query_log is flushed every 7.5 s).
        deadline = time.monotonic() + 20
        users: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline and not users:
            try:
                users = admin.query(
                    "SELECT DISTINCT user FROM system.query_log WHERE type = 2 "
                    "AND query LIKE %(insert)s",
                    {"insert": f"INSERT INTO `{table}`%"},
                )
            except ClickHouseError as exc:  # created at the first flush
                if exc.server_code != UNKNOWN_TABLE:
                    raise
            if not users:
                time.sleep(1)
        assert users == [(server.sink_user,)]
    finally:
        admin.close()
