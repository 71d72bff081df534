"""Waiting on Admin API futures: librdkafka errors become Filas errors with code and retriable."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from filas.errors import BrokerUnavailableError, FilasError

ADMIN_TIMEOUT_S = 15.0


def admin_result(future: Future[Any], what: str, timeout_s: float = ADMIN_TIMEOUT_S) -> Any:
    """The future's result, or a FilasError naming ``what`` failed and whether to retry."""
    try:
        return future.result(timeout=timeout_s)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        raise FilasError(
            f"{what}: {error.str()}", code="kafka_admin", retriable=error.retriable()
        ) from exc
    except TimeoutError as exc:
        raise BrokerUnavailableError(f"{what}: no answer in {timeout_s:.0f}s") from exc
