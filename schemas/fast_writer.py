"""A per-schema Avro encoder compiled to Python source, for the producer hot path.

fastavro's generic writer interprets the schema for every record (type dispatch per field,
a validation pass per union branch) and tops out near 100k records/s for a typical 20-field
event here. The producer benchmark must reach half of Kafka's Java ProducerPerformance, so each
record schema is compiled once into straight-line code: one ``bytearray``, small varints
appended directly, enum symbols looked up in precomputed tables. Logical types still go through
fastavro's own converters, so the bytes are identical to fastavro's (a unit test checks this on
samples of every schema). Shapes it does not handle (unions other than ``["null", T]``,
recursive types, bytes defaults) raise ``Unsupported`` at compile time and the caller keeps
fastavro. Bad values raise (TypeError, KeyError, ValueError, ...) and the caller explains them.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Mapping
from typing import Any

from fastavro.write import LOGICAL_WRITERS

Encoder = Callable[[Mapping[str, Any]], bytes]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_NATIVE_LOGICAL = {"string": str, "long": int, "int": int}


class Unsupported(Exception):
    """The schema uses a shape this compiler leaves to fastavro."""


def _long(out: bytearray, n: int) -> None:
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise ValueError(f"{n} does not fit in an Avro long")
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _int(out: bytearray, n: int) -> None:
    if not _INT_MIN <= n <= _INT_MAX:
        raise ValueError(f"{n} does not fit in an Avro int")
    _long(out, n)


def _boolean(value: Any) -> int:
    if value is True:
        return 1
    if value is False:
        return 0
    raise TypeError(f"expected a bool, got {type(value).__name__}")


def _null(value: Any) -> None:
    if value is not None:
        raise TypeError(f"expected None, got {type(value).__name__}")


def _zigzag_bytes(n: int) -> bytes:
    out = bytearray()
    _long(out, n)
    return bytes(out)


class _Compiler:
    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.names = itertools.count()
        self.consts: dict[str, Any] = {
            "_long": _long,
            "_int": _int,
            "_boolean": _boolean,
            "_null": _null,
            "_pack_float": struct.Struct("<f").pack,
            "_pack_double": struct.Struct("<d").pack,
        }
        self.expanding: list[str] = []

    def const(self, value: Any) -> str:
        name = f"_c{next(self.names)}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        return f"v{next(self.names)}"

    def emit(self, schema: Any, value: str, indent: str) -> list[str]:
        if isinstance(schema, str) and schema in self.named:
            if schema in self.expanding:
                raise Unsupported(f"recursive type {schema}")
            self.expanding.append(schema)
            try:
                return self.emit(self.named[schema], value, indent)
            finally:
                self.expanding.pop()
        if isinstance(schema, list):
            return self.union(schema, value, indent)
        if isinstance(schema, dict):
            return self.complex(schema, value, indent)
        return self.primitive(schema, value, indent)

    def primitive(self, kind: str, value: str, indent: str) -> list[str]:
        i = indent
        match kind:
            case "null":
                return [f"{i}_null({value})"]
            case "boolean":
                return [f"{i}append(_boolean({value}))"]
            case "int" | "long":
                writer = "_int" if kind == "int" else "_long"
                return [
                    f"{i}if 0 <= {value} < 64:",
                    f"{i}    append({value} << 1)",
                    f"{i}else:",
                    f"{i}    {writer}(b, {value})",
                ]
            case "float" | "double":
                return [f"{i}b += _pack_{kind}({value})"]
            case "string":
                encoded = self.var()
                return [f"{i}{encoded} = {value}.encode()", *self.sized(encoded, indent)]
            case "bytes":
                return self.sized(value, indent)
        raise Unsupported(f"type {kind!r}")

    def sized(self, value: str, indent: str) -> list[str]:
        i = indent
        size = self.var()
        return [
            f"{i}{size} = len({value})",
            f"{i}if {size} < 64:",
            f"{i}    append({size} << 1)",
            f"{i}else:",
            f"{i}    _long(b, {size})",
            f"{i}b += {value}",
        ]

    def union(self, branches: list[Any], value: str, indent: str) -> list[str]:
        if len(branches) != 2 or "null" not in branches:
            raise Unsupported("unions other than a nullable type")
        null_index = branches.index("null")
        other = branches[1 - null_index]
        i = indent
        return [
            f"{i}if {value} is None:",
            f"{i}    append({null_index << 1})",
            f"{i}else:",
            f"{i}    append({(1 - null_index) << 1})",
            *self.emit(other, value, indent + "    "),
        ]

    def complex(self, schema: Mapping[str, Any], value: str, indent: str) -> list[str]:
        kind = schema["type"]
        i = indent
        logical = schema.get("logicalType")
        if logical is not None and f"{kind}-{logical}" in LOGICAL_WRITERS:
            convert = self.const(LOGICAL_WRITERS[f"{kind}-{logical}"])
            spec = self.const(schema)
            native = _NATIVE_LOGICAL.get(kind)
            converted = self.var()
            lines = [f"{i}{converted} = {value}"]
            if native is not None:
                # Values already in wire form (uuid str, epoch-millis int) skip the converter.
                lines.append(f"{i}if type({converted}) is not {native.__name__}:")
                lines.append(f"{i}    {converted} = {convert}({converted}, {spec})")
            else:
                lines.append(f"{i}{converted} = {convert}({converted}, {spec})")
            return lines + self.emit(kind, converted, indent)
        match kind:
            case "record" | "error":
                return self.record(schema, value, indent)
            case "enum":
                table = {s: _zigzag_bytes(n) for n, s in enumerate(schema["symbols"])}
                return [f"{i}b += {self.const(table)}[{value}]"]
            case "fixed":
                size = int(schema["size"])
                return [
                    f"{i}if len({value}) != {size}:",
                    f"{i}    raise ValueError('fixed {schema['name']} needs {size} bytes')",
                    f"{i}b += {value}",
                ]
            case "array":
                item = self.var()
                return [
                    f"{i}if {value}:",
                    f"{i}    _long(b, len({value}))",
                    f"{i}    for {item} in {value}:",
                    *self.emit(schema["items"], item, indent + "        "),
                    f"{i}append(0)",
                ]
            case "map":
                key, item, encoded = self.var(), self.var(), self.var()
                return [
                    f"{i}if {value}:",
                    f"{i}    _long(b, len({value}))",
                    f"{i}    for {key}, {item} in {value}.items():",
                    f"{i}        {encoded} = {key}.encode()",
                    *self.sized(encoded, indent + "        "),
                    *self.emit(schema["values"], item, indent + "        "),
                    f"{i}append(0)",
                ]
        return self.emit(kind, value, indent)

    def record(self, schema: Mapping[str, Any], value: str, indent: str) -> list[str]:
        lines: list[str] = []
        for field in schema["fields"]:
            name, kind = field["name"], field["type"]
            field_value = self.var()
            if "default" in field:
                if _has_bytes(kind, self.named):
                    raise Unsupported("defaults of bytes type (JSON-encoded in the schema)")
                lookup = f"{value}.get({name!r}, {self.const(field['default'])})"
            elif isinstance(kind, list) and "null" in kind:
                lookup = f"{value}.get({name!r})"  # fastavro writes null for a missing optional
            else:
                lookup = f"{value}[{name!r}]"
            lines.append(f"{indent}{field_value} = {lookup}")
            lines += self.emit(kind, field_value, indent)
        return lines


def _has_bytes(schema: Any, named: Mapping[str, Any]) -> bool:
    if isinstance(schema, list):
        return any(_has_bytes(branch, named) for branch in schema[:1])  # defaults use branch 0
    if isinstance(schema, dict):
        return schema["type"] in ("bytes", "fixed")
    return schema in ("bytes", "fixed") or (schema in named and named[schema]["type"] == "fixed")


def compile_encoder(schema: Any, named: Mapping[str, Any], header: bytes = b"") -> Encoder:
    """An encoder writing ``header`` then the Avro binary body of a record of ``schema``.

    ``schema``/``named`` are fastavro's parsed schema and its named types. Raises
    ``Unsupported`` when the schema has a shape left to fastavro.
    """
    compiler = _Compiler(named)
    body = compiler.emit(schema, "record", "    ")
    compiler.consts["_HEADER"] = header
    names = sorted(compiler.consts)
    # A factory makes the constants closure cells (fast lookups) instead of module globals; the
    # bound ``append`` saves an attribute lookup per written byte run.
    source = "\n".join(
        [
            f"def make({', '.join(names)}):",
            "  def encode(record):",
            "    b = bytearray(_HEADER)",
            "    append = b.append",
            *body,
            "    return bytes(b)",
            "  return encode",
        ]
    )
    namespace: dict[str, Any] = {}
    # The source is generated from our own schema files, never from input data.
    exec(compile(source, f"<avro encoder {schema.get('name', '?')}>", "exec"), namespace)  # noqa: S102
    encode: Encoder = namespace["make"](**compiler.consts)
    return encode
