"""Logging for CLI commands: warnings only for one-shot commands, full shipping for services."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from filas.logs import configure_logging
from filas.settings import Settings


def configure_cli_logging(settings: Settings) -> None:
    """One-shot commands (up, topics, emit, ...) log warnings as JSON to stderr, shipping none:
    the broker may not even run yet, and a command must never wait on its own logs."""
    configure_logging(settings, level=logging.WARNING, ship=False)


@contextmanager
def service_logging(settings: Settings, service: str) -> Iterator[None]:
    """Long-running processes (sink, gateway, poller) log INFO as JSON to stderr and ship every
    line to ``filas.logs`` without blocking; the shipper is flushed when the service stops."""
    handle = configure_logging(settings, service)
    try:
        yield
    finally:
        handle.close()
