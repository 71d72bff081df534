"""Turn plain JSON (what an operator types) into the Python values the Avro serializer expects.

JSON has no timestamps, decimals or unions; operators should not have to write Avro's JSON
encoding (``{"string": "x"}``). Timestamps take ISO-8601 text or epoch milliseconds, decimals take
text or numbers, and a missing envelope is filled in (new event id, now, the given source).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from filas.errors import ValidationError
from producers.envelope import envelope
from schemas.catalog import ParsedSchema

_ENVELOPE = "ixc.filas.common.Envelope"


def record_from_json(
    schema: ParsedSchema, data: Mapping[str, Any], *, source_system: str
) -> dict[str, Any]:
    """Coerce ``data`` to ``schema``'s types; a missing ``envelope`` is generated."""
    value = dict(data)
    fields = {f["name"]: f for f in schema.parsed.get("fields", [])}
    if "envelope" in fields:
        given = value.get("envelope") or {}
        value["envelope"] = {**envelope(source_system), **given}
    coerced: dict[str, Any] = _coerce(schema.parsed, value, "", schema.named_types)
    return coerced


def _coerce(schema: Any, value: Any, path: str, named: Mapping[str, Any]) -> Any:
    if isinstance(schema, str):
        if schema in named:
            return _coerce(named[schema], value, path, named)
        return value
    if isinstance(schema, list):
        return _coerce_union(schema, value, path, named)
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if kind == "record":
        if not isinstance(value, Mapping):
            raise ValidationError(f"field {path or '<root>'!r}: expected an object", field=path)
        out: dict[str, Any] = {}
        for field in schema["fields"]:
            name = field["name"]
            sub = f"{path}.{name}" if path else name
            if name in value:
                out[name] = _coerce(field["type"], value[name], sub, named)
            elif "default" in field:
                out[name] = field["default"]
            else:
                raise ValidationError(f"field {sub!r}: required and missing", field=sub)
        return out
    if kind == "array" and isinstance(value, list):
        return [_coerce(schema["items"], v, f"{path}[{i}]", named) for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, Mapping):
        return {k: _coerce(schema["values"], v, f"{path}.{k}", named) for k, v in value.items()}
    if logical in ("timestamp-millis", "timestamp-micros"):
        return _timestamp(value, path)
    if logical == "decimal":
        return _decimal(value, path)
    if isinstance(kind, dict | list):
        return _coerce(kind, value, path, named)
    return value


def _coerce_union(branches: list[Any], value: Any, path: str, named: Mapping[str, Any]) -> Any:
    if value is None:
        return None
    for branch in branches:
        if branch == "null":
            continue
        try:
            return _coerce(branch, value, path, named)
        except ValidationError:
            continue
    return value


def _timestamp(value: Any, path: str) -> Any:
    if isinstance(value, datetime | int):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"field {path!r}: {value!r} is not an ISO-8601 timestamp", field=path
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValidationError(f"field {path!r}: expected a timestamp, got {value!r}", field=path)


def _decimal(value: Any, path: str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(f"field {path!r}: {value!r} is not a decimal", field=path) from None
