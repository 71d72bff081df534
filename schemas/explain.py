"""Say which field of a record breaks its schema, by path, in words a developer can act on.

fastavro's own validator names only the innermost record and field (``Envelope.event_id``), not
the path from the top (``envelope.event_id``), and prints whole schemas. This walk runs only after
a write has failed or when asked to validate, so it favours clarity over speed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Mismatch:
    path: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"field '{self.path or '<record>'}': expected {self.expected}, got {self.got}"


def explain_mismatch(schema: Any, datum: Any, named: Mapping[str, Any]) -> Mismatch | None:
    """The first field of ``datum`` that ``schema`` rejects, or None when the datum fits."""
    return _check(schema, datum, named, "")


def _got(datum: Any) -> str:
    if datum is _MISSING:
        return "nothing (field missing and it has no default)"
    if datum is None:
        return "None"
    text = repr(datum)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(datum).__name__} {shown}"


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return " or ".join(_describe(branch) for branch in schema)
    logical = schema.get("logicalType")
    if logical == "uuid":
        return "uuid string"
    if logical in ("timestamp-millis", "timestamp-micros"):
        return f"{logical} (datetime or int)"
    if logical == "decimal":
        return f"decimal({schema.get('precision')},{schema.get('scale', 0)})"
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        return f"{kind} {schema['name']}"
    return str(kind)


def _check(schema: Any, datum: Any, named: Mapping[str, Any], path: str) -> Mismatch | None:
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return _check_union(schema, datum, named, path)
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return _check_record(schema, datum, named, path)
        if kind == "array":
            return _check_array(schema, datum, named, path)
        if kind == "map":
            return _check_map(schema, datum, named, path)
        if kind == "enum":
            if isinstance(datum, str) and datum in schema["symbols"]:
                return None
            return Mismatch(path, f"one of {schema['symbols']} ({schema['name']})", _got(datum))
        if kind == "fixed":
            if isinstance(datum, bytes | bytearray) and len(datum) == schema["size"]:
                return None
            return Mismatch(path, f"{schema['size']} bytes ({schema['name']})", _got(datum))
        if "logicalType" in schema and not _logical_ok(schema, datum):
            return Mismatch(path, _describe(schema), _got(datum))
        if "logicalType" in schema:
            return None
        schema = kind
    if isinstance(schema, str) and _primitive_ok(schema, datum):
        return None
    return Mismatch(path, _describe(schema), _got(datum))


def _check_union(
    branches: list[Any], datum: Any, named: Mapping[str, Any], path: str
) -> Mismatch | None:
    if any(_check(branch, datum, named, path) is None for branch in branches):
        return None
    others = [b for b in branches if b != "null"]
    if datum is not None and datum is not _MISSING and len(others) == 1:
        # ["null", T] with a wrong non-null value: the problem is inside T, say where.
        return _check(others[0], datum, named, path)
    return Mismatch(path, _describe(branches), _got(datum))


def _check_record(
    schema: Mapping[str, Any], datum: Any, named: Mapping[str, Any], path: str
) -> Mismatch | None:
    if not isinstance(datum, Mapping):
        return Mismatch(path, f"record {schema['name']} (a mapping)", _got(datum))
    for field in schema["fields"]:
        name = field["name"]
        value = datum.get(name, _MISSING)
        if value is _MISSING and "default" in field:
            continue
        sub = f"{path}.{name}" if path else name
        if value is _MISSING:
            return Mismatch(sub, _describe(field["type"]), _got(value))
        mismatch = _check(field["type"], value, named, sub)
        if mismatch is not None:
            return mismatch
    return None


def _check_array(
    schema: Mapping[str, Any], datum: Any, named: Mapping[str, Any], path: str
) -> Mismatch | None:
    if not isinstance(datum, Sequence) or isinstance(datum, str | bytes):
        return Mismatch(path, f"array of {_describe(schema['items'])}", _got(datum))
    for index, item in enumerate(datum):
        mismatch = _check(schema["items"], item, named, f"{path}[{index}]")
        if mismatch is not None:
            return mismatch
    return None


def _check_map(
    schema: Mapping[str, Any], datum: Any, named: Mapping[str, Any], path: str
) -> Mismatch | None:
    if not isinstance(datum, Mapping):
        return Mismatch(path, f"map of {_describe(schema['values'])}", _got(datum))
    for key, value in datum.items():
        if not isinstance(key, str):
            return Mismatch(f"{path}[{key!r}]", "string map key", _got(key))
        mismatch = _check(schema["values"], value, named, f"{path}[{key!r}]")
        if mismatch is not None:
            return mismatch
    return None


def _is_int(datum: Any, bounds: tuple[int, int]) -> bool:
    if isinstance(datum, bool) or not isinstance(datum, int):
        return False
    return bounds[0] <= datum <= bounds[1]


def _primitive_ok(kind: str, datum: Any) -> bool:
    match kind:
        case "null":
            return datum is None
        case "boolean":
            return isinstance(datum, bool)
        case "int":
            return _is_int(datum, _INT_RANGE)
        case "long":
            return _is_int(datum, _LONG_RANGE)
        case "float" | "double":
            return isinstance(datum, int | float) and not isinstance(datum, bool)
        case "bytes":
            return isinstance(datum, bytes | bytearray)
        case "string":
            return isinstance(datum, str)
    return False


def _logical_ok(schema: Mapping[str, Any], datum: Any) -> bool:
    logical = schema["logicalType"]
    if logical == "uuid":
        if isinstance(datum, uuid.UUID):
            return True
        try:
            uuid.UUID(datum)
        except (TypeError, ValueError, AttributeError):
            return False
        return True
    if logical in ("timestamp-millis", "timestamp-micros"):
        return isinstance(datum, dt.datetime) or _is_int(datum, _LONG_RANGE)
    if logical == "date":
        return isinstance(datum, dt.date) or _is_int(datum, _INT_RANGE)
    if logical == "decimal":
        return _decimal_ok(schema, datum)
    return _primitive_ok(schema["type"], datum)


def _decimal_ok(schema: Mapping[str, Any], datum: Any) -> bool:
    if isinstance(datum, bytes | bytearray):
        return True
    if not isinstance(datum, Decimal):
        return False
    try:
        _sign, digits, exponent = datum.as_tuple()
    except InvalidOperation:
        return False
    if not isinstance(exponent, int):  # NaN / Infinity
        return False
    scale = int(schema.get("scale", 0))
    integer_digits = max(len(digits) + exponent, 0)
    return -exponent <= scale and integer_digits <= int(schema["precision"]) - scale
