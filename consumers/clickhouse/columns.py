"""Avro -> ClickHouse column mapping, valid on ClickHouse 18.16 and on current releases.

One Avro field becomes one or more columns, each with a getter that turns the decoded record
(fastavro's Python values) into what clickhouse-driver writes for that column type:

| Avro | ClickHouse | value |
|---|---|---|
| boolean | UInt8 | 0/1 |
| int / long | Int32 / Int64 | as is |
| float / double | Float32 / Float64 | as is |
| string, uuid, bytes, fixed | String | str (uuid as text, bytes as raw bytes) |
| enum | String | symbol (no Enum8: a new symbol would need a migration before the data) |
| timestamp-millis/micros | ``x`` DateTime + ``x_ms`` UInt16 | epoch seconds, millisecond part |
| date | Date | as is |
| decimal(p, s) | Decimal(p, s) | Decimal |
| record (not null) | flattened ``parent_child`` columns | |
| array of scalars | Array(T) | list (null -> []) |
| map of scalars | ``x_keys`` / ``x_values`` Array(String) | parallel lists |
| anything else (union of several types, array of records, nullable record) | String | JSON |

``null | T`` becomes ``Nullable(T)`` except where ClickHouse has no Nullable (arrays, maps, the
flattened record: those fall back to empty values). No LowCardinality, DateTime64 or TTL: the
Debian package is 18.16. Fields whose name contains password/secret/token/senha never become
columns: credentials must never reach an analytics table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from consumers.clickhouse.errors import UnsupportedSchemaError

SECRET_MARKERS = ("password", "secret", "token", "senha")

Getter = Callable[[Mapping[str, Any]], Any]

_PRIMITIVES = {
    "boolean": "UInt8",
    "int": "Int32",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "string": "String",
    "bytes": "String",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One ClickHouse column: its name, type, and how to read its value from a decoded record."""

    name: str
    type: str
    get: Getter
    doc: str = ""
    # For the compiled row builder: the field path from the record, and the value conversion
    # (None: the decoded value as is). Empty path: only ``get`` knows how to read it.
    path: tuple[str, ...] = ()
    convert: Callable[[Any], Any] | None = None

    @property
    def nullable(self) -> bool:
        return self.type.startswith("Nullable(")


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def has_secret_fields(schema: Any) -> bool:
    """Whether any field, at any depth of the expanded schema, holds a credential."""
    if isinstance(schema, list):
        return any(has_secret_fields(s) for s in schema)
    if not isinstance(schema, dict):
        return False
    for field in schema.get("fields", ()):
        if is_secret(str(field.get("name", ""))) or has_secret_fields(field.get("type")):
            return True
    return any(has_secret_fields(schema.get(k)) for k in ("type", "items", "values"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


def to_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, default=_jsonable, ensure_ascii=False, sort_keys=True)


class _Types:
    """Resolves named-type references while walking a schema (first use defines, later refer)."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def resolve(self, avro: Any, namespace: str) -> Any:
        if isinstance(avro, dict) and avro.get("type") in ("record", "enum", "fixed"):
            name = avro["name"]
            full = name if "." in name else f"{avro.get('namespace', namespace)}.{name}"
            self.named[full] = avro
            self.named.setdefault(name, avro)
            return avro
        if isinstance(avro, str) and avro not in _PRIMITIVES and avro != "null":
            found = self.named.get(avro) or self.named.get(f"{namespace}.{avro}")
            if found is None:
                raise UnsupportedSchemaError(f"unknown named type {avro!r}")
            return found
        return avro


def _kind(avro: Any) -> str:
    if isinstance(avro, str):
        return avro
    if isinstance(avro, list):
        return "union"
    kind: Any = avro.get("logicalType") or avro["type"]
    if isinstance(kind, dict | list):  # {"type": {"type": ...}} nesting
        return _kind(kind)
    return str(kind)


def _scalar(avro: Any) -> tuple[str, Callable[[Any], Any]] | None:
    """(ClickHouse type, converter) for a single-column non-null Avro type, None otherwise."""
    kind = _kind(avro)
    if kind in ("int", "long", "float", "double", "string", "bytes"):
        return _PRIMITIVES[kind], _identity
    if kind == "boolean":
        return "UInt8", _bool
    if kind == "uuid":
        return "String", _str
    if kind == "enum":
        return "String", _identity
    if kind == "fixed":
        return "String", _identity
    if kind == "date":
        return "Date", _identity
    if kind == "decimal":
        return f"Decimal({int(avro['precision'])}, {int(avro.get('scale', 0))})", _identity
    if kind in ("time-millis", "time-micros"):
        base = avro["type"]
        return _PRIMITIVES[base], _time_value
    return None


def _identity(value: Any) -> Any:
    return value


def _bool(value: Any) -> int:
    return 1 if value else 0


def _str(value: Any) -> str:
    return str(value)


def _time_value(value: Any) -> Any:
    # fastavro returns datetime.time for time-* logical types; store the raw count.
    if hasattr(value, "hour"):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + (
            value.microsecond // 1000
        )
    return value


def _epoch_seconds(value: datetime) -> int:
    return int(value.timestamp())


def _millis_part(value: datetime) -> int:
    return value.microsecond // 1000


def _nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert_nullable(value: Any) -> Any:
        return None if value is None else convert(value)

    return convert_nullable


def _field_getter(name: str, parent: Getter | None) -> Getter:
    if parent is None:

        def get_top(record: Mapping[str, Any]) -> Any:
            return record.get(name)

        return get_top

    def get_nested(record: Mapping[str, Any]) -> Any:
        inner = parent(record)
        return None if inner is None else inner.get(name)

    return get_nested


def _compose(get: Getter, convert: Callable[[Any], Any]) -> Getter:
    if convert is _identity:
        return get

    def composed(record: Mapping[str, Any]) -> Any:
        return convert(get(record))

    return composed


def columns_for_schema(schema: Mapping[str, Any]) -> list[Column]:
    """The columns of a record schema (its expanded JSON form), in field order."""
    if schema.get("type") != "record":
        raise UnsupportedSchemaError(f"{schema.get('name')}: only record schemas become tables")
    types = _Types()
    types.resolve(schema, "")
    namespace = str(schema.get("namespace", ""))
    return _record_columns(schema, types, namespace, prefix="", parent=None, path=())


def _record_columns(
    record: Mapping[str, Any],
    types: _Types,
    namespace: str,
    prefix: str,
    parent: Getter | None,
    path: tuple[str, ...],
) -> list[Column]:
    columns: list[Column] = []
    for field in record["fields"]:
        name = str(field["name"])
        if is_secret(name):
            continue
        columns.extend(
            _field_columns(
                prefix + name,
                field["type"],
                types,
                str(record.get("namespace", namespace)),
                _field_getter(name, parent),
                str(field.get("doc", "")),
                (*path, name),
            )
        )
    return columns


def _field_columns(
    name: str,
    avro: Any,
    types: _Types,
    namespace: str,
    get: Getter,
    doc: str,
    path: tuple[str, ...],
) -> list[Column]:
    placed: list[Column] = []
    for column in _field_columns_of(name, avro, types, namespace, get, doc, path):
        if column.path:  # a flattened record's column, placed by the recursion
            placed.append(column)
        else:
            convert = None if column.convert is _identity else column.convert
            placed.append(replace(column, path=path, convert=convert))
    return placed


def _column(
    name: str, ch_type: str, get: Getter, convert: Callable[[Any], Any], doc: str
) -> Column:
    return Column(name, ch_type, _compose(get, convert), doc, convert=convert)


def _field_columns_of(
    name: str,
    avro: Any,
    types: _Types,
    namespace: str,
    get: Getter,
    doc: str,
    path: tuple[str, ...],
) -> list[Column]:
    avro = types.resolve(avro, namespace)
    nullable = False
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        nullable = len(branches) < len(avro)
        if len(branches) != 1:
            return [_column(name, "Nullable(String)", get, to_json, doc)]
        avro = types.resolve(branches[0], namespace)
    if isinstance(avro, dict) and isinstance(avro.get("type"), dict | list):
        avro = types.resolve(avro["type"], namespace)
    kind = _kind(avro)
    wrap = (lambda t: f"Nullable({t})") if nullable else (lambda t: t)

    if kind in ("timestamp-millis", "timestamp-micros"):
        seconds = _nullable(_epoch_seconds) if nullable else _epoch_seconds
        millis = _nullable(_millis_part) if nullable else _millis_part
        return [
            _column(name, wrap("DateTime"), get, seconds, doc),
            _column(f"{name}_ms", wrap("UInt16"), get, millis, f"{name}: milliseconds"),
        ]
    scalar = _scalar(avro)
    if scalar is not None:
        ch_type, convert = scalar
        if nullable and convert is not _identity:
            convert = _nullable(convert)
        return [_column(name, wrap(ch_type), get, convert, doc)]
    if kind == "record" and not nullable:
        return _record_columns(avro, types, namespace, f"{name}_", get, path)
    if kind == "array":
        items = types.resolve(avro["items"], namespace)
        item = _scalar(items)
        if item is not None and not (
            isinstance(items, list) or _kind(items) in ("record", "array", "map")
        ):
            item_type, convert = item
            return [_column(name, f"Array({item_type})", get, _list_of(convert), doc)]
        return [_column(name, "Array(String)", get, _list_of(_json_item), doc)]
    if kind == "map":
        values = types.resolve(avro["values"], namespace)
        convert = _identity if _kind(values) in ("string", "enum") else _json_item
        return [
            _column(f"{name}_keys", "Array(String)", get, _map_keys, f"{name}: keys"),
            _column(
                f"{name}_values", "Array(String)", get, _map_values(convert), f"{name}: values"
            ),
        ]
    return [_column(name, "Nullable(String)", get, to_json, doc)]


def _json_item(value: Any) -> str:
    if isinstance(value, str):
        return value
    return to_json(value) or ""


def _list_of(convert: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def convert_list(value: Sequence[Any] | None) -> list[Any]:
        if not value:
            return []
        if convert is _identity:
            return list(value)
        return [convert(v) for v in value]

    return convert_list


def _map_keys(value: Mapping[str, Any] | None) -> list[str]:
    return list(value) if value else []


def _map_values(convert: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def convert_values(value: Mapping[str, Any] | None) -> list[Any]:
        if not value:
            return []
        return [convert(v) for v in value.values()]

    return convert_values
