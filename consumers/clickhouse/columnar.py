"""A batch of Avro bodies -> ClickHouse columns in native code (polars' Avro reader, Rust).

The compiled row decoder (row_decoder.py) still spends ~8 us of Python per accounting record.
Here the sink hands a whole fetch of Confluent-framed messages, as they are, to
``polars.read_avro`` framed as ONE Avro object-container-file block, and turns the resulting
frame into the table's columns with vectorised expressions (docs/decisions/0120).

* No slicing per message: the schema given to polars starts with a 5-byte ``fixed`` field, so
  each message's Confluent header is read as a field and the values are joined as they are.
* The schema is REWRITTEN into one with the identical binary encoding that polars reads
  exactly as today's path does: defaults/docs dropped (polars rejects ``default``); enums ->
  ``long`` (the index, mapped to symbols here; an unknown index fails the batch); maps ->
  arrays of key/value records; ``int`` -> ``long`` (no silent 32-bit wrap); ``boolean`` ->
  ``fixed(1)`` (polars reads any byte but 1 as false, today's path any non-zero as true);
  logical types stripped (uuid checked/canonicalised and timestamps split here, exactly as the
  row decoder does); every named type a fresh copy with a unique name.
* Alignment is checked: every record's header field must equal the schema id's header, and a
  sentinel record (a valid body behind 5 random bytes) must come out last. A body with trailing
  or missing bytes shifts what follows, so it fails the batch instead of landing shifted values.

Any failure (``ComputeError``, ``OSError``, a Rust panic, a check) raises ``BatchDecodeError``;
the sink then takes the per-record path for that fetch, which dead-letters the poison record
with its reason. One known leniency remains (decision 0120): polars takes any union index but
the null branch's as the value branch, where today's path dead-letters an index outside 0/1.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
from polars.exceptions import PanicException

from consumers.clickhouse.columns import Column, _kind, _Types, is_secret
from consumers.clickhouse.row_decoder import Unsupported, _uuid

HEADER_FIELD = "_filas_confluent_header"
_HEADER_SIZE = 5
_SYNC = b"FilasColumnarSyn"  # 16 bytes; only ever read back by polars itself
_CANONICAL_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# int(raw / unit) in Python is exact for |raw| <= 2**53 in f64 too (raw converts exactly and
# IEEE division is correctly rounded, as Python's int true division is).
_EXACT_F64 = 2**53


class BatchDecodeError(Exception):
    """The batch could not be decoded natively (poison inside, or an unexpected shape)."""


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _avro_map(entries: dict[str, bytes]) -> bytes:
    out = bytearray(_varint(len(entries)))
    for key, value in entries.items():
        raw = key.encode()
        out += _varint(len(raw)) + raw + _varint(len(value)) + value
    return bytes(out + _varint(0))


# -- column plan: per table column, a polars expression and an optional Python check --------

Post = Callable[[list[Any]], list[Any]]


def _uuids(values: list[Any]) -> list[Any]:
    # Only when some value is not canonical (never from a Filas producer): as the row decoder.
    return [None if v is None else _uuid(v) for v in values]


class _Planner:
    def __init__(self) -> None:
        self.types = _Types()
        self.names = 0
        self.exprs: list[pl.Expr] = []
        self.columns: list[str] = []
        self.uuids: list[tuple[int, pl.Expr]] = []  # (index into exprs, the string read)
        self.timestamps: list[pl.Expr] = []  # raw longs whose f64 division must stay exact

    def fresh(self, kind: str) -> str:
        self.names += 1
        return f"{kind}{self.names}"

    # -- schema rewrite (same bytes, a shape polars reads like today's path) ------------------

    def rewrite(self, avro: Any, namespace: str, depth: int = 0) -> Any:
        if depth > 32:
            raise Unsupported("schema too deep (recursive?)")
        avro = self.types.resolve(avro, namespace)
        if isinstance(avro, list):
            return [self.rewrite(b, namespace, depth + 1) for b in avro]
        if isinstance(avro, str):
            return {"int": "long", "boolean": self._bool()}.get(avro, avro)
        kind = avro.get("type")
        if isinstance(kind, dict | list):
            return self.rewrite(kind, namespace, depth + 1)
        logical = avro.get("logicalType")
        if logical in ("uuid", "timestamp-millis", "timestamp-micros"):
            return self.rewrite(kind, namespace, depth + 1)
        if logical is not None:
            raise Unsupported(f"logical type {logical}")
        if kind == "record":
            inner = str(avro.get("namespace", namespace))
            return {
                "type": "record",
                "name": self.fresh("R"),
                "fields": [
                    {"name": f["name"], "type": self.rewrite(f["type"], inner, depth + 1)}
                    for f in avro["fields"]
                ],
            }
        if kind == "enum":
            return "long"
        if kind == "fixed":
            return {"type": "fixed", "name": self.fresh("F"), "size": int(avro["size"])}
        if kind == "array":
            return {"type": "array", "items": self.rewrite(avro["items"], namespace, depth + 1)}
        if kind == "map":
            value = self.rewrite(avro["values"], namespace, depth + 1)
            return {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": self.fresh("M"),
                    "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": value}],
                },
            }
        if kind in ("int", "boolean"):
            return self.rewrite(kind, namespace, depth + 1)
        if kind in ("null", "long", "float", "double", "string", "bytes"):
            return kind
        raise Unsupported(f"type {kind}")

    def _bool(self) -> dict[str, Any]:
        return {"type": "fixed", "name": self.fresh("B"), "size": 1}

    # -- columns (the walk of row_decoder._Compiler, producing expressions) --------------------

    def record(
        self, avro: dict[str, Any], base: pl.Expr | None, namespace: str, prefix: str
    ) -> None:
        namespace = str(avro.get("namespace", namespace))
        for field in avro["fields"]:
            name = str(field["name"])
            if is_secret(name):
                continue  # decoded by polars, never selected
            expr = pl.col(name) if base is None else base.struct.field(name)
            self.field(prefix + name, field["type"], expr, namespace)

    def field(self, name: str, avro: Any, expr: pl.Expr, namespace: str) -> None:
        avro = self.types.resolve(avro, namespace)
        if isinstance(avro, dict) and isinstance(avro.get("type"), dict | list):
            avro = self.types.resolve(avro["type"], namespace)
        if isinstance(avro, list):
            branches = [self.types.resolve(b, namespace) for b in avro]
            if len(avro) != 2 or "null" not in avro:
                raise Unsupported(f"{name}: union {avro}")
            inner = branches[1 - avro.index("null")]
            if isinstance(inner, dict) and isinstance(inner.get("type"), dict | list):
                inner = self.types.resolve(inner["type"], namespace)
            if _kind(inner) in ("record", "array", "map") or isinstance(inner, list):
                raise Unsupported(f"{name}: nullable {_kind(inner)}")
            self.value(name, inner, expr, namespace)
            return
        if _kind(avro) == "record":
            self.record(avro, expr, namespace, f"{name}_")
            return
        self.value(name, avro, expr, namespace)

    def add(self, column: str, expr: pl.Expr) -> None:
        self.columns.append(column)
        self.exprs.append(expr.alias(f"c{len(self.exprs)}"))

    def value(self, name: str, avro: Any, expr: pl.Expr, namespace: str) -> None:
        kind = _kind(avro)
        if kind in ("timestamp-millis", "timestamp-micros"):
            unit = 1000 if kind == "timestamp-millis" else 1_000_000
            self.timestamps.append(expr)
            # As row_decoder: seconds = int(raw / unit) (towards zero), ms from the floor modulo.
            self.add(name, (expr / unit).cast(pl.Int64))
            millis = expr % 1000 if unit == 1000 else (expr % 1_000_000) // 1000
            self.add(f"{name}_ms", millis)
            return
        if kind == "array":
            items = self.types.resolve(avro["items"], namespace)
            if isinstance(items, list) or _kind(items) not in _SCALARS:
                raise Unsupported("array of non-scalars")
            if _kind(items) == "uuid":
                raise Unsupported("array of uuids")
            self.add(name, expr.list.eval(self.scalar(items, pl.element())))
            return
        if kind == "map":
            values = self.types.resolve(avro["values"], namespace)
            if isinstance(values, list) or _kind(values) not in ("string", "enum"):
                raise Unsupported("map of non-strings")
            key = pl.element().struct.field("key")
            value = self.scalar(values, pl.element().struct.field("value"))
            self.add(f"{name}_keys", expr.list.eval(key))
            self.add(f"{name}_values", expr.list.eval(value))
            return
        if kind not in _SCALARS:
            raise Unsupported(f"{name}: {kind}")
        if kind == "uuid":
            self.uuids.append((len(self.exprs), expr))
        self.add(name, self.scalar(avro, expr))

    def scalar(self, avro: Any, expr: pl.Expr) -> pl.Expr:
        kind = _kind(avro)
        if kind == "boolean":
            return (expr != b"\x00").cast(pl.UInt8)
        if kind == "enum":
            symbols = list(avro["symbols"])
            return expr.replace_strict(list(range(len(symbols))), symbols, return_dtype=pl.String)
        return expr


_SCALARS = ("boolean", "int", "long", "float", "double", "string", "bytes", "enum", "uuid")


class ColumnarDecoder:
    """Decodes a batch of Confluent-framed bodies (all with the same header) into columns."""

    def __init__(self, schema: dict[str, Any], columns: Sequence[Column], label: str) -> None:
        if schema.get("type") != "record":
            raise Unsupported("not a record")
        planner = _Planner()
        rewritten = planner.rewrite(schema, "")
        planner.types = _Types()
        planner.types.resolve(schema, "")
        planner.record(schema, None, str(schema.get("namespace", "")), "")
        if planner.columns != [c.name for c in columns]:
            raise Unsupported(f"{label}: columns differ from the table's ({planner.columns})")
        header_type = {"type": "fixed", "name": planner.fresh("H"), "size": _HEADER_SIZE}
        rewritten["fields"].insert(0, {"name": HEADER_FIELD, "type": header_type})
        self.label = label
        self._exprs = planner.exprs
        # Per batch, one row of flags: the timestamps' range, then whether each uuid column
        # is canonical already (else its values go through the row decoder's canonicaliser).
        self._uuid_columns = [i for i, _expr in planner.uuids]
        self._flags = [
            *(((t >= -_EXACT_F64) & (t <= _EXACT_F64)).all() for t in planner.timestamps),
            *(expr.str.contains(_CANONICAL_UUID).all() for _i, expr in planner.uuids),
        ]
        self._timestamps = len(planner.timestamps)
        self._file_header = (
            b"Obj\x01"
            + _avro_map({"avro.schema": json.dumps(rewritten).encode(), "avro.codec": b"null"})
            + _SYNC
        )
        self._sentinel_header = b"\xff" + os.urandom(_HEADER_SIZE - 1)  # never a magic byte 0
        self._sentinel: bytes | None = None

    def set_sentinel_body(self, body: bytes) -> None:
        """A valid Avro body (no header) of the schema, read last as the alignment check."""
        self._sentinel = self._sentinel_header + body

    def decode(self, header: bytes, values: Sequence[bytes]) -> list[list[Any]]:
        """The table's data columns for ``values`` as Python lists; BatchDecodeError."""
        return [s.to_list() for s in self.decode_series(header, values)]

    def decode_series(self, header: bytes, values: Sequence[bytes]) -> list[pl.Series]:
        """The table's data columns for ``values`` (each ``header`` + body); BatchDecodeError.

        polars Series, written to ClickHouse from their buffers (native_block.py, 0122)."""
        if self._sentinel is None:
            raise BatchDecodeError(f"{self.label}: no sentinel body")
        count = len(values)
        if not count:
            return [pl.Series(f"c{i}", []) for i in range(len(self._exprs))]
        # One copy of the bodies: the block's byte size is summed first, then a single join.
        size = sum(map(len, values)) + len(self._sentinel)
        block = (self._file_header, _varint(count + 1), _varint(size))
        ocf = b"".join((*block, *values, self._sentinel, _SYNC))
        try:
            frame = pl.read_avro(io.BytesIO(ocf))
            if frame.height != count + 1:
                raise BatchDecodeError(f"{self.label}: {frame.height} records for {count}")
            lazy = frame.lazy()
            headers = pl.col(HEADER_FIELD)
            flags = lazy.select(
                (headers.head(count) == pl.lit(header, dtype=pl.Binary)).all(),
                (headers.last() == pl.lit(self._sentinel_header, dtype=pl.Binary)).alias("s"),
                *(flag.alias(f"f{i}") for i, flag in enumerate(self._flags)),
            )
            # One native call for both (each call gives the GIL up and must win it back).
            checked, out = pl.collect_all([flags, lazy.head(count).select(self._exprs)])
            aligned, last, *rest = checked.row(0)
            if not (aligned and last):
                raise BatchDecodeError(f"{self.label}: records not aligned with the messages")
            if not all(rest[: self._timestamps]):
                raise BatchDecodeError(f"{self.label}: timestamp beyond 2**53")
            columns = out.get_columns()
            for i, canonical in zip(self._uuid_columns, rest[self._timestamps :], strict=True):
                if not canonical:
                    columns[i] = pl.Series(_uuids(columns[i].to_list()), dtype=pl.String)
        except BatchDecodeError:
            raise
        except (Exception, PanicException) as exc:  # polars: ComputeError, OSError, a panic
            raise BatchDecodeError(f"{self.label}: {type(exc).__name__}: {exc}") from exc
        return columns
