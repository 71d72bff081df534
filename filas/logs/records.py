"""One log line as data: redaction, the JSON shape on stderr, and the LogRecord event."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import traceback
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, SecretStr

from filas.logs.context import correlation_id

MASK = "***"
SECRET_KEYS = ("password", "passwd", "secret", "token", "senha", "authorization", "api_key")
# Secrets shorter than this are not searched for in text: they would mask ordinary words.
_MIN_SECRET_CHARS = 4
_KEY_VALUE = re.compile(
    r"(?P<key>[\w.-]*(?:" + "|".join(SECRET_KEYS) + r")[\w.-]*)"
    r"(?P<sep>['\"]?\s*[=:]\s*['\"]?)(?P<value>[^\s'\",;&}]+)",
    re.IGNORECASE,
)
# Attributes every logging.LogRecord has; anything else came from ``extra=`` and is context.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "correlation_id", "filas_event"}
)
_LEVELS = ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO"))
HOST = socket.gethostname()


def settings_secrets(settings: BaseModel) -> list[str]:
    """Every non-empty ``SecretStr`` value anywhere in a settings tree (dicts included)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if secret:
                found.append(secret)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    return found


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SECRET_KEYS)


class Redactor(logging.Filter):
    """Masks known secret values anywhere in a line, and values of secret-looking keys.

    As a filter it rewrites the record in place (message, ``extra`` context, traceback) before any
    handler formats it, so neither stderr nor Kafka ever sees the secret. It never drops a line.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True
        )

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", value)

    def value(self, key: str, value: Any) -> Any:
        if _is_secret_key(key) and value not in (None, ""):
            return MASK
        if isinstance(value, Mapping):
            return {k: self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(key, v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, SecretStr):
            return MASK
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        # Skip only our own earlier pass: another configuration's redactor (a handler left on the
        # root logger) may know fewer secrets, and its pass must not count as ours.
        if getattr(record, "filas_redacted", None) is self:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the caller
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.text(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = self.text("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.text(record.stack_info)
        for key, item in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and key != "filas_redacted":
                setattr(record, key, self.value(key, item))
        record.filas_redacted = self
        return True


class CorrelationFilter(logging.Filter):
    """Copies the caller's correlation id onto the record (in the caller's thread and context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = correlation_id.get()
        return True


def _level_name(levelno: int) -> str:
    for floor, name in _LEVELS:
        if levelno >= floor:
            return name
    return "DEBUG"


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _STANDARD_ATTRS and k != "filas_redacted" and not k.startswith("_")
    }


def _exception(record: logging.LogRecord) -> str | None:
    if record.exc_text:
        return record.exc_text
    if record.exc_info and record.exc_info[0] is not None:
        return "".join(traceback.format_exception(*record.exc_info))
    return None


def log_event(record: logging.LogRecord, service: str) -> dict[str, Any]:
    """The ``ixc.filas.log.LogRecord`` event for a (redacted) logging record."""
    correlation = getattr(record, "correlation_id", None)
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.fromtimestamp(record.created, UTC),
            "source_system": service,
            "correlation_id": correlation,
        },
        "level": _level_name(record.levelno),
        "logger": record.name,
        "message": record.getMessage(),
        "service": service,
        "host": HOST,
        "pid": record.process or os.getpid(),
        "extra": {k: v if isinstance(v, str) else repr(v) for k, v in _context(record).items()},
        "exception": _exception(record),
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, correlation, host, pid."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": _level_name(record.levelno),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "correlation_id": getattr(record, "correlation_id", None),
            "host": HOST,
            "pid": record.process or os.getpid(),
        }
        context = _context(record)
        if context:
            line["extra"] = context
        exception = _exception(record)
        if exception:
            line["exception"] = exception
        return json.dumps(line, default=repr, ensure_ascii=False)
