"""Structured JSON logging for every Filas process, configured once at the entrypoint.

Libraries only call ``logging.getLogger(__name__)``; an entrypoint calls :func:`configure_logging`
once. Lines go to stderr as JSON and, through a bounded queue drained by a background thread, to
the ``filas.logs`` topic as ``ixc.filas.log.LogRecord`` events. Secrets are redacted before either.
"""

from filas.logs.configure import LoggingHandle, configure_logging
from filas.logs.context import bind_correlation, correlation_id, correlation_of
from filas.logs.records import JsonFormatter, Redactor, log_event, settings_secrets
from filas.logs.shipping import KafkaLogSink, LogSink, ShippingHandler

__all__ = [
    "JsonFormatter",
    "KafkaLogSink",
    "LogSink",
    "LoggingHandle",
    "Redactor",
    "ShippingHandler",
    "bind_correlation",
    "configure_logging",
    "correlation_id",
    "correlation_of",
    "log_event",
    "settings_secrets",
]
