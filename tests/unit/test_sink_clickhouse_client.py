"""clickhouse-driver errors become ClickHouseError with a code and a retriable flag (no network)."""

from __future__ import annotations

from clickhouse_driver import errors as driver_errors

from consumers.clickhouse.client import quote, translate


def test_network_failures_are_retriable() -> None:
    for exc in (
        driver_errors.NetworkError("Connection refused"),
        driver_errors.SocketTimeoutError("timed out"),
        ConnectionResetError("reset"),
        EOFError("Unexpected EOF while reading bytes"),
    ):
        error = translate(exc, "INSERT INTO t")
        assert error.retriable, exc
        assert error.code == "clickhouse_unavailable"


def test_server_codes_decide_retriable() -> None:
    too_many_parts = translate(driver_errors.ServerException("Too many parts", code=252), "INSERT")
    assert too_many_parts.retriable
    assert too_many_parts.server_code == 252
    syntax = translate(driver_errors.ServerException("Syntax error", code=62), "SELECT")
    assert not syntax.retriable
    assert syntax.code == "clickhouse_server"
    assert "62" in str(syntax)


def test_client_side_errors_are_not_retriable() -> None:
    error = translate(driver_errors.TypeMismatchError("bad value"), "INSERT")
    assert not error.retriable


def test_identifiers_are_backquoted_and_escaped() -> None:
    assert quote("radius_accounting") == "`radius_accounting`"
    assert quote("a`b") == "`a\\`b`"


def test_access_refusals_are_not_retried() -> None:
    # 164: the user's profile is read-only (an analyst credential given to the sink); waiting
    # never heals it. 242, a read-only replica table, does heal.
    readonly = translate(
        driver_errors.ServerException("Cannot execute query in readonly mode", code=164), "INSERT"
    )
    assert readonly.server_code == 164
    assert readonly.retriable is False
    denied = translate(driver_errors.ServerException("Access denied", code=291), "SELECT")
    assert denied.retriable is False
    assert translate(driver_errors.ServerException("read only", code=242), "INSERT").retriable
