"""The schema registry behind one small typed adapter (confluent-kafka's client inside).

Confluent-compatible registries (Confluent, Apicurio's ``/apis/ccompat/v7``, and the ``mock://``
in-process fake for unit tests) all speak through ``SchemaRegistryClient``. Subjects follow the
configured strategy; ids and writer schemas are cached because codecs must stay synchronous and
a registry round trip per record would dominate the hot path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

# The client uses httpx2 when installed, else httpx; catch the transport errors of that one.
from confluent_kafka.schema_registry.common._httpx_compat import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro.schema import parse_schema

from filas.catalog import Catalog
from filas.errors import RegistryError
from filas.settings import RegistrySettings, SubjectStrategy
from schemas.catalog import ParsedSchema, SchemaCatalog

_T = TypeVar("_T")
# Confluent error code 409 (HTTP) / 409xx: the new schema breaks the subject's compatibility.
_INCOMPATIBLE_STATUS = 409
_NOT_FOUND_STATUS = 404
_MOCK_SCHEME = "mock://"


def subject_for(strategy: SubjectStrategy, topic: str, fullname: str) -> str:
    """The registry subject of ``topic``'s value schema under Confluent's naming strategies."""
    match strategy:
        case SubjectStrategy.TOPIC_NAME:
            return f"{topic}-value"
        case SubjectStrategy.RECORD_NAME:
            return fullname
        case SubjectStrategy.TOPIC_RECORD_NAME:
            return f"{topic}-{fullname}"
    raise RegistryError(f"unsupported subject strategy {strategy!r}")


class SchemaRegistry:
    """Registers catalog schemas and resolves schema ids, with caches in both directions.

    Thread-safe: producers serialize from several threads, and the caches are filled under a
    lock so one id is fetched once.
    """

    def __init__(
        self, settings: RegistrySettings, client: SchemaRegistryClient | None = None
    ) -> None:
        self.settings = settings
        self._client = client if client is not None else _new_client(settings)
        # Keyed by the full schema text, not the fingerprint: the Parsing Canonical Form drops
        # docs and defaults, and a version that only adds a default is still a new version.
        self._ids: dict[tuple[str, str], int] = {}
        self._writers: dict[int, Any] = {}
        self._compat_set: set[str] = set()
        # confluent's mock client fakes subjects and ids but sends compatibility calls over HTTP.
        self._compat_supported = not settings.url.startswith(_MOCK_SCHEME)
        self._lock = threading.Lock()

    def subject(self, topic: str, fullname: str) -> str:
        return subject_for(self.settings.subject_strategy, topic, fullname)

    def register(self, topic: str, schema: ParsedSchema) -> int:
        """Register ``schema`` under ``topic``'s subject (idempotent) and return its id.

        Sets the subject's compatibility level first, so a breaking change is rejected by the
        registry itself (``RegistryError`` with code ``schema_incompatible``).
        """
        subject = self.subject(topic, schema.fullname)
        key = (subject, schema.canonical)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        with self._lock:
            if key in self._ids:
                return self._ids[key]
            if self._compat_supported and subject not in self._compat_set:
                level = self.settings.compatibility
                _call(f"set compatibility {level} on {subject}", lambda: self._set_compat(subject))
                self._compat_set.add(subject)
            schema_id = _call(
                f"register {schema.fullname} under {subject}",
                lambda: int(
                    self._client.register_schema(subject, Schema(schema.canonical, "AVRO"))
                ),
            )
            self._ids[key] = schema_id
            # Our own schema is its writer schema: no fetch needed to read what we write.
            self._writers.setdefault(schema_id, schema.parsed)
            return schema_id

    def lookup(self, topic: str, schema: ParsedSchema) -> int:
        """Id of ``schema`` already registered under ``topic``'s subject, without registering.

        For consumers and producers whose registry credentials may only read; a schema that
        was never registered is ``RegistryError(code="not_found")``.
        """
        subject = self.subject(topic, schema.fullname)
        key = (subject, schema.canonical)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        registered = _call(
            f"look up {schema.fullname} under {subject}",
            lambda: self._client.lookup_schema(subject, _avro(schema)),
        )
        schema_id = int(registered.schema_id)
        with self._lock:
            self._ids[key] = schema_id
            self._writers.setdefault(schema_id, schema.parsed)
        return schema_id

    def register_all(
        self, catalog: Catalog, schemas: SchemaCatalog | None = None
    ) -> dict[str, int]:
        """Register every topic's value schema (``.dlq`` topics included); subject -> id."""
        schemas = schemas if schemas is not None else SchemaCatalog.load()
        registered: dict[str, int] = {}
        for spec in catalog:
            schema = schemas.get(spec.value_schema)
            registered[self.subject(spec.name, schema.fullname)] = self.register(spec.name, schema)
        return registered

    def is_compatible(self, topic: str, schema: ParsedSchema) -> bool:
        """Ask the registry whether ``schema`` may be registered next under ``topic``'s subject."""
        subject = self.subject(topic, schema.fullname)
        return bool(
            _call(
                f"test compatibility of {schema.fullname} under {subject}",
                lambda: self._client.test_compatibility(subject, _avro(schema)),
            )
        )

    def compatibility(self, topic: str, fullname: str) -> str:
        subject = self.subject(topic, fullname)
        return str(
            _call(
                f"get compatibility of {subject}", lambda: self._client.get_compatibility(subject)
            )
        )

    def writer_schema(self, schema_id: int) -> Any:
        """fastavro-parsed writer schema for ``schema_id``, fetched once and cached."""
        cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            if schema_id in self._writers:
                return self._writers[schema_id]
            registered = _call(
                f"fetch schema id {schema_id}", lambda: self._client.get_schema(schema_id)
            )
            if registered.schema_type not in (None, "AVRO"):
                raise RegistryError(
                    f"schema id {schema_id} is {registered.schema_type}, not AVRO",
                    code="schema_not_avro",
                )
            try:
                parsed = parse_schema(json.loads(registered.schema_str))
            except Exception as exc:  # fastavro raises many kinds on a bad schema
                raise RegistryError(f"schema id {schema_id} does not parse: {exc}") from exc
            self._writers[schema_id] = parsed
            return parsed

    def close(self) -> None:
        """Close the HTTP session; the ids and writer schemas already cached stay usable."""
        self._client.close()

    def _get_compat(self, subject: str) -> Any:
        return self._client.get_compatibility(subject_name=subject)

    def _set_compat(self, subject: str) -> None:
        try:
            self._client.set_compatibility(subject_name=subject, level=self.settings.compatibility)
        except SchemaRegistryError as exc:
            # Apicurio answers 409 "rule already exists" when another process set the rule for
            # a new subject at the same moment: fine if it holds the level we want.
            if int(exc.http_status_code or 0) != _INCOMPATIBLE_STATUS:
                raise
            current = self._get_compat(subject)
            if str(current).upper() != self.settings.compatibility.upper():
                raise


def _avro(schema: ParsedSchema) -> Schema:
    return Schema(schema.canonical, "AVRO")


def _new_client(settings: RegistrySettings) -> SchemaRegistryClient:
    try:
        # new_client returns confluent's in-process mock for mock:// URLs (unit tests).
        client: SchemaRegistryClient = SchemaRegistryClient.new_client(settings.client_config())
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"bad registry configuration: {exc}", code="configuration") from exc
    return client


def _call(what: str, action: Callable[[], _T]) -> _T:
    """Run one registry call, translating its errors into ``RegistryError`` with facts."""
    try:
        return action()
    except SchemaRegistryError as exc:
        status = int(exc.http_status_code or 0)
        if status == _INCOMPATIBLE_STATUS:
            raise RegistryError(
                f"{what}: rejected as incompatible: {exc.error_message}",
                code="schema_incompatible",
            ) from exc
        if status == _NOT_FOUND_STATUS:
            raise RegistryError(
                f"{what}: not found: {exc.error_message}", code="not_found"
            ) from exc
        raise RegistryError(
            f"{what}: HTTP {status} error {exc.error_code}: {exc.error_message}",
            retriable=status >= 500 or status == 429,
        ) from exc
    except httpx.TransportError as exc:
        raise RegistryError(
            f"{what}: registry unreachable: {exc}", code="registry_unavailable", retriable=True
        ) from exc
