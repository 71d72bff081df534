"""The only module that imports clickhouse_driver (with native_block.py, which writes an INSERT's
Native block on its connection): a small typed adapter over its Client.

Errors become ``ClickHouseError`` with a code and a ``retriable`` flag: network failures,
timeouts and the server's "try again later" codes are retriable; syntax, type and schema errors
are not. Rows are passed as tuples, never formatted into SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
from clickhouse_driver import Client
from clickhouse_driver import errors as driver_errors

from consumers.clickhouse import native_block
from consumers.clickhouse.errors import ClickHouseError
from filas.settings import ClickHouseSettings

# The driver logs every failed connect with a traceback before raising; we raise one clear
# ClickHouseError instead, so its warnings would only repeat it.
logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)
log = logging.getLogger(__name__)

# ClickHouse server error codes after which the same request can succeed later.
RETRIABLE_SERVER_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
    }
)
# Not retriable: 164 READONLY (the user's profile is read-only: a configuration error, never
# healed by waiting; a read-only replica is 242), 497 / 516 (access denied, wrong password).
READONLY = 164
# Sent with INSERTs only: a read-only (analyst) user may not change settings, so plain queries
# send none.
_INSERT_SETTINGS = {"insert_block_size": 1_048_576}
UNKNOWN_DATABASE = 81
UNKNOWN_TABLE = 60


def translate(exc: BaseException, what: str) -> ClickHouseError:
    """Our error for a clickhouse-driver (or socket) failure."""
    if isinstance(exc, driver_errors.ServerException):
        code = int(exc.code) if exc.code is not None else None
        first = str(exc.message).splitlines()[0] if exc.message else str(exc)
        return ClickHouseError(
            f"{what}: ClickHouse error {code}: {first}",
            code="clickhouse_server",
            retriable=code in RETRIABLE_SERVER_CODES,
            server_code=code,
        )
    if isinstance(
        exc,
        driver_errors.NetworkError
        | driver_errors.SocketTimeoutError
        | driver_errors.UnexpectedPacketFromServerError
        | OSError
        | EOFError,
    ):
        return ClickHouseError(
            f"{what}: ClickHouse unreachable: {type(exc).__name__}: {exc}",
            code="clickhouse_unavailable",
            retriable=True,
        )
    return ClickHouseError(
        f"{what}: {type(exc).__name__}: {exc}", code="clickhouse_client", retriable=False
    )


class ClickHouse:
    """A connection to one ClickHouse server and database (reconnects on the next call)."""

    def __init__(
        self,
        settings: ClickHouseSettings,
        *,
        database: str | None = None,
        connect_timeout_s: float = 5.0,
        send_receive_timeout_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.database = database if database is not None else settings.database
        self._client = Client(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password.get_secret_value(),
            database=self.database,
            connect_timeout=connect_timeout_s,
            send_receive_timeout=send_receive_timeout_s,
        )

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except ClickHouseError:
            raise
        except Exception as exc:  # the driver raises its own, socket and EOF errors
            # A broken connection must not be reused half-way through a packet.
            self._client.disconnect()
            raise translate(exc, what) from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a statement; values go in ``params`` (``%(name)s``), never into ``sql``."""
        with self._translated(sql.split("\n", 1)[0][:120]):
            rows: list[tuple[Any, ...]] = self._client.execute(sql, dict(params or {}))
        return rows

    def query_with_columns(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Like ``query``, with the result's column names."""
        with self._translated(sql.strip().split("\n", 1)[0][:120]):
            rows, types = self._client.execute(sql, dict(params or {}), with_column_types=True)
        return [name for name, _type in types], [tuple(r) for r in rows]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """Insert row tuples (or lists); returns the row count ClickHouse acknowledged.

        Row mode, not ``columnar=True``: transposing here (``zip``) cost the same as the driver's
        own per-column gather, about 1 us a row either way (decision 0056).
        """
        names = ", ".join(quote(c) for c in columns)
        with self._translated(f"INSERT INTO {table}"):
            written = self._client.execute(
                f"INSERT INTO {quote(table)} ({names}) VALUES", rows, settings=_INSERT_SETTINGS
            )
        return int(written) if isinstance(written, int) else len(rows)

    def insert_columns(
        self, table: str, columns: Sequence[str], data: Sequence[list[Any]] | Sequence[pl.Series]
    ) -> int:
        """Insert columns (one list or polars Series per column, all of one length).

        Series are sent as one Native block written from their buffers (native_block.py,
        decision 0122); a column type it does not cover sends the same columns through the
        driver. The driver rewrites each list in place (a Nullable column's None becomes its
        null value): pass lists nobody reads afterwards, new ones for a retry.
        """
        names = ", ".join(quote(c) for c in columns)
        query = f"INSERT INTO {quote(table)} ({names}) VALUES"
        if data and all(isinstance(c, pl.Series) for c in data):
            series = [c for c in data if isinstance(c, pl.Series)]
            with self._translated(f"INSERT INTO {table}"):
                try:
                    return native_block.insert(
                        self._client, query, columns, series, _INSERT_SETTINGS
                    )
                except native_block.NotCovered as exc:
                    log.debug("%s: INSERT through the driver (%s)", table, exc)
        lists = [c.to_list() if isinstance(c, pl.Series) else c for c in data]
        with self._translated(f"INSERT INTO {table}"):
            written = self._client.execute(
                query,
                lists,
                columnar=True,
                settings=_INSERT_SETTINGS,
            )
        return int(written) if isinstance(written, int) else len(lists[0]) if lists else 0

    def ensure_database(self) -> None:
        # Connecting to a missing database fails: create it from a connection to 'default'.
        admin = ClickHouse(self.settings, database="default")
        try:
            admin.query(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")
        finally:
            admin.close()

    def close(self) -> None:
        self._client.disconnect()


def quote(identifier: str) -> str:
    """A backquoted identifier (table and column names come from schemas and topic names)."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"
