"""Raw ``.avsc`` sources: reading them from a directory and the rules every file must follow.

Kept apart from parsing so the compatibility test can feed sources read from old git revisions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastavro.repository.base import AbstractSchemaRepository, SchemaRepositoryError

from filas.errors import SchemaError

SUFFIX = ".avsc"
_NAMED = ("record", "enum", "fixed", "error")


class SourceRepository(AbstractSchemaRepository):  # type: ignore[misc]
    """fastavro repository over already-read sources, so named types resolve by full name."""

    def __init__(self, sources: Mapping[str, Any]) -> None:
        self._sources = sources

    def load(self, name: str) -> Any:
        try:
            # fastavro injects referenced types into the dict it gets: hand out a copy.
            return copy.deepcopy(self._sources[name])
        except KeyError:
            raise SchemaRepositoryError(f"no schema file for {name}") from None


def fullname_of(source: Mapping[str, Any]) -> str:
    name = str(source.get("name", ""))
    namespace = source.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def parse_source_text(file_name: str, text: str) -> tuple[str, Any]:
    """Decode one file and check it is named by its full name; returns (full name, JSON)."""
    try:
        source = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{file_name}: not valid JSON: {exc}") from exc
    if not isinstance(source, dict) or source.get("type") not in _NAMED:
        raise SchemaError(f"{file_name}: must hold one named type (record, enum or fixed)")
    fullname = fullname_of(source)
    if file_name != fullname + SUFFIX:
        raise SchemaError(
            f"{file_name}: defines {fullname}; the file must be named {fullname}{SUFFIX}"
        )
    return fullname, source


def read_sources(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise SchemaError(f"schema directory {directory} does not exist")
    sources: dict[str, Any] = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        fullname, source = parse_source_text(path.name, path.read_text(encoding="utf-8"))
        sources[fullname] = source
    if not sources:
        raise SchemaError(f"no {SUFFIX} files in {directory}")
    return sources


def check_documented(fullname: str, source: Any) -> None:
    """Every record field, inline nested records included, must carry a non-empty ``doc``."""
    for path in undocumented_fields(source):
        raise SchemaError(f"schema {fullname}: field '{path}' has no doc")


def undocumented_fields(node: Any, prefix: str = "") -> list[str]:
    missing: list[str] = []
    if isinstance(node, list):
        for branch in node:
            missing += undocumented_fields(branch, prefix)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "error"):
            for field in node.get("fields", []):
                path = f"{prefix}{field.get('name')}"
                if not str(field.get("doc", "")).strip():
                    missing.append(path)
                missing += undocumented_fields(field.get("type"), path + ".")
        elif kind == "array":
            missing += undocumented_fields(node.get("items"), prefix)
        elif kind == "map":
            missing += undocumented_fields(node.get("values"), prefix)
        elif isinstance(kind, dict | list):
            missing += undocumented_fields(kind, prefix)
    return missing
