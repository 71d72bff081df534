"""Errors of the ClickHouse sink. Retry logic reads ``retriable``, never the message."""

from __future__ import annotations

from filas.errors import FilasError, SchemaError


class ClickHouseError(FilasError):
    """A ClickHouse call failed. ``server_code`` is ClickHouse's own error number when known."""

    code = "clickhouse"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retriable: bool | None = None,
        server_code: int | None = None,
    ) -> None:
        super().__init__(message, code=code, retriable=retriable)
        self.server_code = server_code


class UnsupportedSchemaError(SchemaError):
    """An Avro schema shape the table mapping cannot express."""


class RowConversionError(FilasError):
    """A decoded record does not fit its table's columns (skip it to the DLQ)."""

    code = "row_conversion"
