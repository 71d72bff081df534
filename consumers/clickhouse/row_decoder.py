"""Avro body -> ClickHouse row values in one generated function per table (the sink's hot path).

The general path decodes with fastavro into nested dicts (UUID objects, timezone-aware
datetimes), then the table's row builder flattens them and turns the datetimes back into epoch
seconds and milliseconds. Per accounting record that was about 18 us of decoding plus 3.5 us of
row building, most of the sink's CPU. This module compiles, once per table, straight-line Python
that reads the Avro binary body and yields the row's values directly: varints inline, strings
sliced and decoded, timestamps split arithmetically, enum symbols from a table, secret fields
skipped without being kept.

The values are exactly those of ``Table.row(fastavro.schemaless_reader(body))`` (a property test
holds them equal on samples of every schema and on random records). Shapes it does not compile
(unions other than ``null | T``, nullable records, arrays/maps of non-scalars, decimals, dates,
anything stored as JSON) raise ``Unsupported`` and the table keeps the general path. It is used
only for records written with the reader's own schema id; other writer versions go through
fastavro's schema resolution.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from consumers.clickhouse.columns import Column, _Types, is_secret

RowDecoder = Callable[[bytes, int], list[Any]]

_FLOAT = struct.Struct("<f").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from


class Unsupported(Exception):
    """A schema shape this compiler leaves to the general path."""


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


_CANONICAL_UUID = re.compile(
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII
).fullmatch


def _uuid(text: str) -> str:
    # fastavro returns uuid.UUID(text); the column stores str() of it (canonical lower case).
    # Already canonical (what every Filas producer writes): the same string, 10x cheaper.
    if _CANONICAL_UUID(text):
        return text
    return str(UUID(text))


_SCALAR_KINDS = ("boolean", "int", "long", "float", "double", "string", "bytes", "enum", "uuid")


class _Compiler:
    def __init__(self) -> None:
        self.types = _Types()
        self.lines: list[str] = []
        self.columns: list[str] = []  # column name per produced value, in order
        self.values: list[str] = []  # the expression (a local) per produced value
        self.namespace: dict[str, Any] = {
            "RL": _read_long,
            "F32": _FLOAT,
            "F64": _DOUBLE,
            "UUID_STR": _uuid,
        }
        self._n = 0

    def var(self) -> str:
        self._n += 1
        return f"v{self._n}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    # -- primitive readers: each leaves its value in a new local and returns its name ---------

    def long(self, indent: int) -> str:
        v = self.var()
        self.emit(indent, "b = buf[p]")
        self.emit(indent, "if b < 128:")
        self.emit(indent + 1, f"{v} = (b >> 1) ^ -(b & 1)")
        self.emit(indent + 1, "p += 1")
        self.emit(indent, "else:")
        # Multi-byte varint inline (timestamps, octet counters): no call per value.
        self.emit(indent + 1, "n = b & 0x7F")
        self.emit(indent + 1, "s = 7")
        self.emit(indent + 1, "p += 1")
        self.emit(indent + 1, "while True:")
        self.emit(indent + 2, "b = buf[p]")
        self.emit(indent + 2, "p += 1")
        self.emit(indent + 2, "n |= (b & 0x7F) << s")
        self.emit(indent + 2, "if b < 128:")
        self.emit(indent + 3, "break")
        self.emit(indent + 2, "s += 7")
        self.emit(indent + 1, f"{v} = (n >> 1) ^ -(n & 1)")
        return v

    def scalar(self, avro: Any, indent: int, namespace: str) -> str:
        """Read one non-null scalar; returns the local holding its column value."""
        kind = _kind(avro)
        if kind in ("int", "long"):
            return self.long(indent)
        if kind == "boolean":
            v = self.var()
            self.emit(indent, f"{v} = 1 if buf[p] else 0")
            self.emit(indent, "p += 1")
            return v
        if kind == "float":
            v = self.var()
            self.emit(indent, f"{v} = F32(buf, p)[0]")
            self.emit(indent, "p += 4")
            return v
        if kind == "double":
            v = self.var()
            self.emit(indent, f"{v} = F64(buf, p)[0]")
            self.emit(indent, "p += 8")
            return v
        if kind in ("string", "bytes", "uuid"):
            size = self.long(indent)
            self.emit(indent, f"if {size} < 0:")
            self.emit(indent + 1, f"raise ValueError('negative length ' + str({size}))")
            v = self.var()
            raw = f"buf[p:p + {size}]"
            if kind == "bytes":
                self.emit(indent, f"{v} = bytes({raw})")
            elif kind == "uuid":
                self.emit(indent, f"{v} = UUID_STR({raw}.decode())")
            else:
                self.emit(indent, f"{v} = {raw}.decode()")
            self.emit(indent, f"p += {size}")
            return v
        if kind == "enum":
            table = f"E{len(self.namespace)}"
            self.namespace[table] = tuple(avro["symbols"])
            index = self.long(indent)
            v = self.var()
            self.emit(indent, f"{v} = {table}[{index}]")
            return v
        raise Unsupported(f"scalar kind {kind}")

    # -- fields ------------------------------------------------------------------------------

    def record(self, avro: dict[str, Any], indent: int, namespace: str, prefix: str) -> None:
        namespace = str(avro.get("namespace", namespace))
        for field in avro["fields"]:
            name = str(field["name"])
            keep = not is_secret(name)
            self.field(prefix + name, field["type"], indent, namespace, keep)

    def field(self, name: str, avro: Any, indent: int, namespace: str, keep: bool) -> None:
        avro = self.types.resolve(avro, namespace)
        if isinstance(avro, dict) and isinstance(avro.get("type"), dict | list):
            avro = self.types.resolve(avro["type"], namespace)
        if isinstance(avro, list):
            self.nullable(name, avro, indent, namespace, keep)
            return
        kind = _kind(avro)
        if kind == "record":
            if keep:
                self.record(avro, indent, namespace, f"{name}_")
            else:
                self.skip_record(avro, indent, namespace)
            return
        values = self.value(name, avro, kind, indent, namespace)
        if keep:
            for column, v in values:
                self.columns.append(column)
                self.values.append(v)

    def value(
        self, name: str, avro: Any, kind: str, indent: int, namespace: str
    ) -> list[tuple[str, str]]:
        """Read a non-null, non-record value: (column, local) pairs."""
        if kind in ("timestamp-millis", "timestamp-micros"):
            raw = self.long(indent)
            seconds, millis = self.var(), self.var()
            unit = 1000 if kind == "timestamp-millis" else 1_000_000
            # int(datetime.timestamp()) truncates towards zero; the millisecond part is the
            # datetime's, always 0..999.
            self.emit(indent, f"{seconds} = int({raw} / {unit})")
            if unit == 1000:
                self.emit(indent, f"{millis} = {raw} % 1000")
            else:
                self.emit(indent, f"{millis} = ({raw} % 1000000) // 1000")
            return [(name, seconds), (f"{name}_ms", millis)]
        if kind in _SCALAR_KINDS:
            return [(name, self.scalar(avro, indent, namespace))]
        if kind == "array":
            items = self.types.resolve(avro["items"], namespace)
            if isinstance(items, list) or _kind(items) not in _SCALAR_KINDS:
                raise Unsupported("array of non-scalars")
            out = self.var()
            self.emit(indent, f"{out} = []")
            self.blocks(indent, lambda i: f"{out}.append({self.scalar(items, i, namespace)})")
            return [(name, out)]
        if kind == "map":
            values = self.types.resolve(avro["values"], namespace)
            if isinstance(values, list) or _kind(values) not in ("string", "enum"):
                raise Unsupported("map of non-strings")
            keys, vals = self.var(), self.var()
            self.emit(indent, f"{keys} = []")
            self.emit(indent, f"{vals} = []")

            def entry(i: int) -> str:
                key = self.scalar("string", i, namespace)
                value = self.scalar(values, i, namespace)
                return f"{keys}.append({key}); {vals}.append({value})"

            self.blocks(indent, entry)
            return [(f"{name}_keys", keys), (f"{name}_values", vals)]
        raise Unsupported(f"{name}: {kind}")

    def blocks(self, indent: int, item: Callable[[int], str]) -> None:
        """Avro array/map blocks: count (negative: a byte size follows), items, 0 ends."""
        count = self.long(indent)
        self.emit(indent, f"while {count}:")
        self.emit(indent + 1, f"if {count} < 0:")
        self.emit(indent + 2, f"{count} = -{count}")
        self.emit(indent + 2, "_size, p = RL(buf, p)")
        self.emit(indent + 1, f"for _ in range({count}):")
        statement = item(indent + 2)
        self.emit(indent + 2, statement)
        next_count = self.long(indent + 1)
        self.emit(indent + 1, f"{count} = {next_count}")

    def nullable(
        self, name: str, union: list[Any], indent: int, namespace: str, keep: bool
    ) -> None:
        branches = [self.types.resolve(b, namespace) for b in union]
        if len(union) != 2 or "null" not in union:
            raise Unsupported(f"{name}: union {union}")
        null_index = union.index("null")
        inner = branches[1 - null_index]
        if isinstance(inner, dict) and isinstance(inner.get("type"), dict | list):
            inner = self.types.resolve(inner["type"], namespace)
        kind = _kind(inner)
        if kind in ("record", "array", "map") or isinstance(inner, list):
            raise Unsupported(f"{name}: nullable {kind}")
        index = self.long(indent)
        self.emit(indent, f"if {index} == {1 - null_index}:")
        produced = self.value(name, inner, kind, indent + 1, namespace)
        self.emit(indent, f"elif {index} == {null_index}:")
        for _column, v in produced:
            self.emit(indent + 1, f"{v} = None")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise ValueError('union index ' + str({index}))")
        if keep:
            for column, v in produced:
                self.columns.append(column)
                self.values.append(v)

    def skip_record(self, avro: dict[str, Any], indent: int, namespace: str) -> None:
        namespace = str(avro.get("namespace", namespace))
        for field in avro["fields"]:
            self.field(str(field["name"]), field["type"], indent, namespace, keep=False)


def _kind(avro: Any) -> str:
    if isinstance(avro, str):
        return avro
    if isinstance(avro, list):
        return "union"
    kind: Any = avro.get("logicalType") or avro["type"]
    if isinstance(kind, dict | list):
        return _kind(kind)
    if avro.get("logicalType") and kind not in (
        "uuid",
        "timestamp-millis",
        "timestamp-micros",
    ):
        raise Unsupported(f"logical type {kind}")
    return str(kind)


def compile_row_decoder(
    schema: dict[str, Any], columns: Sequence[Column], label: str
) -> RowDecoder:
    """The row decoder for ``schema`` (expanded JSON), or Unsupported.

    ``columns`` are the table's data columns: the decoder must produce exactly those, in order.
    """
    if schema.get("type") != "record":
        raise Unsupported("not a record")
    compiler = _Compiler()
    compiler.types.resolve(schema, "")
    compiler.record(schema, 1, str(schema.get("namespace", "")), "")
    expected = [c.name for c in columns]
    if compiler.columns != expected:
        raise Unsupported(f"{label}: columns differ from the table's ({compiler.columns})")
    body = ["def decode_row(buf, p):", *compiler.lines]
    # Slices never fail: a truncated body shows as a position past the end.
    body.append("    if p > len(buf):")
    body.append("        raise EOFError('truncated Avro body')")
    body.append("    return [" + ", ".join(compiler.values) + "]")
    source = "\n".join(body)
    namespace = compiler.namespace
    exec(compile(source, f"<row decoder {label}>", "exec"), namespace)  # noqa: S102
    decoder: RowDecoder = namespace["decode_row"]
    return decoder
