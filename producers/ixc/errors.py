"""Errors of the IXC adapter. Each carries a stable code and a ``retriable`` flag (filas.errors).

Retry logic (the client's backoff, the poller's loop) reads ``retriable``; it never parses text.
"""

from __future__ import annotations

from filas.errors import FilasError


class IxcError(FilasError):
    """Root of the IXC adapter's errors."""

    code = "ixc"


class IxcUnavailableError(IxcError):
    """IXC kept answering 5xx, timing out or refusing connections after every retry."""

    code = "ixc_unavailable"
    retriable = True


class IxcMalformedResponseError(IxcError):
    """IXC answered 200 with a body that is not the listing JSON we expect, after every retry."""

    code = "ixc_malformed_response"
    retriable = True


class IxcRequestRejectedError(IxcError):
    """IXC answered 4xx: wrong user/token (401/403), unknown form (404) or a bad query.

    Not retriable: the same request will be refused again until someone fixes the config.
    """

    code = "ixc_request_rejected"
    retriable = False

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class IxcProtocolError(IxcError):
    """IXC's answer contradicts the query (e.g. an ignored filter would make the poller loop or
    move its watermark backwards). Not retriable: this IXC version needs a code change."""

    code = "ixc_protocol"
    retriable = False


class IxcMappingError(IxcError):
    """One IXC record cannot become an event. ``field`` names the offending IXC field.

    The poller reports it through its dead-letter port and carries on with the other records.
    """

    code = "ixc_mapping"
    retriable = False

    def __init__(self, message: str, *, form: str, record_id: str | None, field: str) -> None:
        super().__init__(f"{form} id={record_id}: field {field!r}: {message}")
        self.form = form
        self.record_id = record_id
        self.field = field


class WatermarkError(IxcError):
    """The watermark file exists but cannot be read; refusing to start from zero silently."""

    code = "ixc_watermark"
