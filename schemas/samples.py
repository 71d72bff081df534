"""Deterministic sample records generated from a schema, for compatibility checks and tests.

Variant ``i`` picks enum symbol ``i`` (modulo the count) everywhere; unions take branch ``i`` for
the first variants and then their first non-null branch, so an optional enum still shows every
symbol. The variants from ``sample_records`` thus exercise every symbol and every branch at least
once: removing a symbol or a branch a writer still uses shows up as a read failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_BASE_MILLIS = 1_764_800_000_000  # 2025-12-03, fixed so samples never change between runs
_MAX_VARIANTS = 64


def variant_count(schema: Any, named: Mapping[str, Any]) -> int:
    """How many variants cover every enum symbol and union branch reachable from ``schema``."""
    widest = 2
    seen: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if node in named and node not in seen:
                seen.add(node)
                stack.append(named[node])
        elif isinstance(node, list):
            widest = max(widest, len(node))
            stack.extend(node)
        elif isinstance(node, dict):
            if "name" in node:
                seen.add(node["name"])
            kind = node["type"]
            if kind == "enum":
                widest = max(widest, len(node["symbols"]))
            elif kind in ("record", "error"):
                stack.extend(field["type"] for field in node["fields"])
            elif kind == "array":
                stack.append(node["items"])
            elif kind == "map":
                stack.append(node["values"])
            elif isinstance(kind, dict | list | str) and kind in named:
                stack.append(kind)
    # +1: an optional enum shows its symbols from variant 1 on (variant 0 is its null branch).
    return min(widest + 1, _MAX_VARIANTS)


def sample_records(schema: Any, named: Mapping[str, Any]) -> list[Any]:
    return [sample(schema, named, i) for i in range(variant_count(schema, named))]


def sample(schema: Any, named: Mapping[str, Any], variant: int) -> Any:
    """One datum of ``schema``, the same every time for the same ``variant``."""
    if isinstance(schema, str):
        return named_or_primitive(schema, named, variant)
    if isinstance(schema, list):
        if variant < len(schema):
            return sample(schema[variant], named, variant)
        non_null = [branch for branch in schema if branch != "null"] or schema
        return sample(non_null[0], named, variant)
    kind = schema["type"]
    logical = schema.get("logicalType")
    if logical is not None:
        return _logical(schema, logical, variant)
    if kind in ("record", "error"):
        return {f["name"]: sample(f["type"], named, variant) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][variant % len(schema["symbols"])]
    if kind == "array":
        return [sample(schema["items"], named, variant + k) for k in range(variant % 3)]
    if kind == "map":
        return {f"k{k}": sample(schema["values"], named, variant + k) for k in range(variant % 3)}
    if kind == "fixed":
        return bytes([variant % 256]) * schema["size"]
    return named_or_primitive(kind, named, variant)


def named_or_primitive(kind: str, named: Mapping[str, Any], variant: int) -> Any:
    if kind in named:
        return sample(named[kind], named, variant)
    primitives: dict[str, Any] = {
        "null": None,
        "boolean": variant % 2 == 0,
        "int": variant * 7 + 1,
        "long": variant * 1_000_003 + 2,
        "float": variant + 0.5,
        "double": variant + 0.25,
        "bytes": bytes([variant % 256, 0xFF, 0x00]),
        "string": f"sample-{variant}-ção",
    }
    if kind not in primitives:
        raise ValueError(f"no sample for type {kind!r}")
    return primitives[kind]


def _logical(schema: Mapping[str, Any], logical: str, variant: int) -> Any:
    if logical == "uuid":
        return str(uuid.UUID(int=variant + 1))
    if logical in ("timestamp-millis", "local-timestamp-millis"):
        return _BASE_MILLIS + variant * 1000
    if logical in ("timestamp-micros", "local-timestamp-micros"):
        return (_BASE_MILLIS + variant * 1000) * 1000
    if logical == "date":
        return 20_425 + variant
    if logical in ("time-millis", "time-micros"):
        return variant * 1000
    if logical == "decimal":
        scale = int(schema.get("scale", 0))
        return Decimal(variant * 100 + 99).scaleb(-scale)
    return sample(schema["type"], {}, variant)
