"""Every ``.avsc`` file under ``schemas/``, parsed once at start-up, looked up by full name.

Serializers receive ``ParsedSchema`` objects from here and never touch files or JSON themselves.
Named types referenced across files (``ixc.filas.common.Envelope``) resolve from sibling files
named by full name, so each file stays one record and the registry still gets a self-contained
schema (``ParsedSchema.canonical``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from filas.errors import SchemaError, ValidationError
from schemas.explain import explain_mismatch
from schemas.sources import SourceRepository, check_documented, read_sources

SCHEMAS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class ParsedSchema:
    """One schema, ready for fastavro and for the registry.

    ``parsed`` is fastavro's parsed form (pass it to ``schemaless_writer``/``reader``; do not
    mutate it). ``canonical`` is the fully expanded JSON (docs, defaults and logical types kept)
    that is registered. ``fingerprint`` is the CRC-64-AVRO of the Parsing Canonical Form, as hex:
    equal fingerprints mean the same binary encoding.
    """

    fullname: str
    parsed: Any
    canonical: str
    fingerprint: str

    @property
    def named_types(self) -> Mapping[str, Any]:
        """Every named type the schema defines or references, by full name (fastavro's own map)."""
        named: Mapping[str, Any] = self.parsed.get("__named_schemas", {})
        return named

    @property
    def field_count(self) -> int:
        fields: list[Any] = self.parsed.get("fields", [])
        return len(fields)


def parse_source(fullname: str, sources: Mapping[str, Any]) -> ParsedSchema:
    """Parse ``fullname`` out of ``sources`` (full name -> decoded JSON of one ``.avsc``).

    Also used on old git revisions by the compatibility test, hence not tied to a directory.
    """
    try:
        parsed = load_schema(fullname, repo=SourceRepository(sources))
    except SchemaError:
        raise
    except Exception as exc:  # fastavro raises bare Exception subclasses of many kinds
        raise SchemaError(f"schema {fullname}: cannot parse: {exc}") from exc
    expanded = _strip_fastavro_keys(parsed)
    try:
        # load_schema inlines each named type at its first use, so the result must stand alone;
        # the registry receives exactly this text.
        parse_schema(expanded, _write_hint=False)
    except Exception as exc:
        raise SchemaError(f"schema {fullname}: expanded form does not stand alone: {exc}") from exc
    return ParsedSchema(
        fullname=fullname,
        parsed=parsed,
        canonical=json.dumps(expanded, ensure_ascii=False, separators=(",", ":")),
        fingerprint=fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"),
    )


def _strip_fastavro_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_fastavro_keys(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_strip_fastavro_keys(v) for v in node]
    return node


@dataclass(frozen=True)
class SchemaCatalog:
    """Immutable map of full name -> ``ParsedSchema``. Build it once with ``load``."""

    schemas: Mapping[str, ParsedSchema]

    @classmethod
    def load(cls, directory: Path = SCHEMAS_DIR) -> SchemaCatalog:
        sources = read_sources(directory)
        for fullname, source in sources.items():
            check_documented(fullname, source)
        parsed = {name: parse_source(name, sources) for name in sorted(sources)}
        return cls(MappingProxyType(parsed))

    def get(self, fullname: str) -> ParsedSchema:
        try:
            return self.schemas[fullname]
        except KeyError:
            raise SchemaError(
                f"unknown schema {fullname!r}; known: {', '.join(sorted(self.schemas))}"
            ) from None

    def validate(self, fullname: str, record: Mapping[str, Any]) -> None:
        """Raise ``ValidationError`` naming the first offending field path, if any."""
        validate_record(self.get(fullname), record)

    def __iter__(self) -> Iterator[ParsedSchema]:
        return iter(self.schemas.values())

    def __len__(self) -> int:
        return len(self.schemas)

    def __contains__(self, fullname: object) -> bool:
        return fullname in self.schemas


def validate_record(schema: ParsedSchema, record: Mapping[str, Any]) -> None:
    mismatch = explain_mismatch(schema.parsed, record, schema.named_types)
    if mismatch is not None:
        raise ValidationError(f"{schema.fullname}: {mismatch}", field=mismatch.path)
