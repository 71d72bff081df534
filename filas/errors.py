"""One exception root for Filas. Errors carry facts: a stable code and whether a retry can help.

Retry logic reads ``retriable``; it never parses messages. Third-party errors are wrapped at the
boundary with ``raise FilasError(...) from exc``.
"""

from __future__ import annotations


class FilasError(Exception):
    """Root of every error Filas raises on purpose."""

    code: str = "filas_error"
    retriable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retriable: bool | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if retriable is not None:
            self.retriable = retriable


class ConfigurationError(FilasError):
    code = "configuration"


class UnknownTopicError(FilasError):
    code = "unknown_topic"


class SchemaError(FilasError):
    """A schema file is missing, unparsable, or a change breaks compatibility."""

    code = "schema"


class ValidationError(FilasError):
    """A record does not match its schema. ``field`` names the offending field path."""

    code = "validation"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class DecodeError(FilasError):
    """Bytes on a topic are not a valid Confluent-framed Avro record."""

    code = "decode"


class RegistryError(FilasError):
    code = "registry"


class BrokerUnavailableError(FilasError):
    code = "broker_unavailable"
    retriable = True


class BackpressureTimeoutError(FilasError):
    """The producer's local queue stayed full for longer than the configured timeout."""

    code = "backpressure_timeout"
    retriable = True


class DeliveryError(FilasError):
    """The broker did not acknowledge a record."""

    code = "delivery"


class PlatformError(FilasError):
    """A local service (Kafka, registry, ClickHouse) failed to fetch, start or stop."""

    code = "platform"
