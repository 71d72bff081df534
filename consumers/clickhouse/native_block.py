"""An INSERT's Native block written straight from polars columns (decision 0122).

clickhouse-driver encodes a ``columnar=True`` INSERT value by value in Python (Nullable and
DateTime loops, one ``bytes`` per string): ~3 us of GIL-held work per accounting row. Here each
column's Native-format bytes come from its buffers in a few numpy/polars calls (C loops):

* fixed width (``[U]Int8-64``, ``Float32/64``, ``DateTime`` = UInt32 seconds): little-endian
  array bytes, after a range check (a value the type cannot hold is not covered);
* ``Nullable(T)``: the null map (one byte a row, 1 = null), then T with nulls as T's default;
* ``String``: per value a LEB128 length and the UTF-8 bytes, interleaved with numpy;
* ``Array(T)``: UInt64 cumulative end offsets, then the flattened T.

Anything else (a type, a dtype, a value out of range, a compressed connection, column names
that differ from the server's sample block) raises ``NotCovered`` before a byte of data is sent;
the INSERT is then ended with an empty block (no rows, no part) and the caller takes the
driver's own path, so a block this module cannot write exactly is never sent.

clickhouse-driver internals relied on (pinned to 0.2.11 in pyproject.toml; mirrors its
``Client.execute`` -> ``process_insert_query`` -> ``send_data`` and ``Connection.send_data`` ->
``BlockOutputStream.write``): ``Client.disconnect_on_error``, ``Client.receive_sample_block``,
``Client.receive_profile_events``, ``Client.receive_end_of_insert_query``, ``Client.connection``
with ``send_query``, ``send_external_tables``, ``send_data``, ``fout``, ``compression`` and
``server_info.used_revision``, ``block.BlockInfo``/``ColumnOrientedBlock``, the ``defines``
revisions and the ``writer``/``varint`` helpers. They are used because the driver has no public
way to send pre-encoded column bytes on its Native-protocol connection.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from clickhouse_driver import defines
from clickhouse_driver.block import BlockInfo, ColumnOrientedBlock
from clickhouse_driver.protocol import ClientPacketTypes
from clickhouse_driver.varint import write_varint
from clickhouse_driver.writer import write_binary_str, write_binary_uint8

Chunks = list[bytes]


class NotCovered(Exception):
    """This writer does not encode the column (or connection) exactly: use the driver's path."""


_INTS: dict[str, tuple[str, int, int]] = {
    "UInt8": ("<u1", 0, 2**8 - 1),
    "UInt16": ("<u2", 0, 2**16 - 1),
    "UInt32": ("<u4", 0, 2**32 - 1),
    "UInt64": ("<u8", 0, 2**64 - 1),
    "Int8": ("<i1", -(2**7), 2**7 - 1),
    "Int16": ("<i2", -(2**15), 2**15 - 1),
    "Int32": ("<i4", -(2**31), 2**31 - 1),
    "Int64": ("<i8", -(2**63), 2**63 - 1),
    "DateTime": ("<u4", 0, 2**32 - 1),  # seconds since the epoch
}
_FLOATS = {"Float32": (pl.Float32, "<f4"), "Float64": (pl.Float64, "<f8")}
_DATETIME_TZ = re.compile(r"^DateTime\('[^']*'\)$")


def encode(ch_type: str, series: pl.Series) -> Chunks:
    """The Native-format bytes of one column of ClickHouse type ``ch_type``; NotCovered."""
    if ch_type.startswith("Nullable(") and ch_type.endswith(")"):
        inner = ch_type[9:-1]
        nulls = series.is_null()
        if not nulls.any():
            return [bytes(len(series)), *encode(inner, series)]
        return [
            nulls.to_numpy().view(np.uint8).tobytes(),
            *encode(inner, series.fill_null(_default(inner, series.dtype))),
        ]
    if series.null_count():
        raise NotCovered(f"{ch_type}: nulls in a non-Nullable column")
    if ch_type.startswith("Array(") and ch_type.endswith(")"):
        return _array(ch_type[6:-1], series)
    if ch_type == "String":
        return [_strings(series)]
    if _DATETIME_TZ.match(ch_type):
        ch_type = "DateTime"
    fixed = _INTS.get(ch_type)
    if fixed is not None:
        fmt, low, high = fixed
        if not series.dtype.is_integer():
            raise NotCovered(f"{ch_type}: dtype {series.dtype}")
        if len(series) and (series.min() < low or series.max() > high):  # type: ignore[operator]
            raise NotCovered(f"{ch_type}: a value out of range")
        return [series.to_numpy().astype(fmt, copy=False).tobytes()]
    floats = _FLOATS.get(ch_type)
    if floats is not None and series.dtype == floats[0]:
        return [series.to_numpy().astype(floats[1], copy=False).tobytes()]
    raise NotCovered(f"{ch_type}: not covered (dtype {series.dtype})")


def _default(ch_type: str, dtype: Any) -> Any:
    if ch_type == "String":
        return b"" if dtype == pl.Binary else ""
    if ch_type in _INTS or _DATETIME_TZ.match(ch_type) or ch_type in _FLOATS:
        return 0
    raise NotCovered(f"Nullable({ch_type}): not covered")


def _array(inner: str, series: pl.Series) -> Chunks:
    if not isinstance(series.dtype, pl.List):
        raise NotCovered(f"Array({inner}): dtype {series.dtype}")
    lengths = series.list.len().to_numpy()
    offsets = np.cumsum(lengths, dtype="<u8")
    flat = series.explode(empty_as_null=False)
    if len(flat) != (int(offsets[-1]) if len(offsets) else 0):
        raise NotCovered(f"Array({inner}): flattened length differs")
    return [offsets.tobytes(), *encode(inner, flat)]


def _strings(series: pl.Series) -> bytes:
    """ClickHouse String column: per value, its byte length as LEB128, then its bytes."""
    count = len(series)
    if not count:
        return b""
    if series.dtype == pl.String:
        lengths = series.str.len_bytes().to_numpy().astype(np.int64)
        # As one bytes object, never a Python str (String is UTF-8 already).
        joined: bytes = series.str.join("").cast(pl.Binary).item()
        data = np.frombuffer(joined, dtype=np.uint8)
    elif series.dtype == pl.Binary:
        values: list[bytes] = series.to_list()
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=count)
        data = np.frombuffer(b"".join(values), dtype=np.uint8)
    else:
        raise NotCovered(f"String: dtype {series.dtype}")
    if len(data) != int(lengths.sum()):
        raise NotCovered("String: joined bytes differ from the lengths")
    first = int(lengths[0])
    if first < 128 and bool((lengths == first).all()):
        # All one short length (topics, uuids, fixed codes): a matrix of length byte + bytes.
        matrix = np.empty((count, first + 1), dtype=np.uint8)
        matrix[:, 0] = first
        matrix[:, 1:] = data.reshape(count, first)
        return matrix.tobytes()
    # Varint byte count per value (a length is < 2**32: at most 5 bytes).
    width = np.ones(count, dtype=np.int64)
    for bits in (7, 14, 21, 28):
        width += lengths >= (1 << bits)
    ends = np.cumsum(width + lengths)
    starts = ends - width - lengths
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    is_data = np.ones(len(out), dtype=bool)
    for k in range(int(width.max())):
        has = width > k
        at = starts[has] + k if k else starts
        part = (lengths[has] if k else lengths) >> (7 * k)
        more = (width[has] if k else width) > k + 1
        out[at] = (part & 0x7F) | (more.astype(np.int64) << 7)
        is_data[at] = False
    out[is_data] = data
    return out.tobytes()


def insert(
    client: Any,
    query: str,
    names: Sequence[str],
    columns: Sequence[pl.Series],
    settings: dict[str, Any],
) -> int:
    """INSERT ``columns`` (``query`` is ``INSERT INTO t (names) VALUES``) as one Native block on
    ``client``'s connection; returns the rows sent. NotCovered (nothing inserted) if any column
    is not encoded here. Driver and socket errors propagate as the driver raises them."""
    if client.connection.compression:
        raise NotCovered("compressed connection")
    rows = len(columns[0]) if columns else 0
    if any(len(c) != rows for c in columns):
        raise ValueError("columns of different lengths")
    with client.disconnect_on_error(query, settings):
        connection = client.connection
        connection.send_query(query)
        connection.send_external_tables(None)
        sample = client.receive_sample_block()
        types = sample.columns_with_types if sample else []
        try:
            if [name for name, _t in types] != list(names):
                raise NotCovered(f"server's columns {types} differ from {list(names)}")
            encoded = [encode(t, c) for (_n, t), c in zip(types, columns, strict=True)]
        except Exception as exc:  # NotCovered, or an encoding failure (polars, numpy)
            # End the INSERT with no data: no rows, no part; the caller uses the driver.
            connection.send_data(ColumnOrientedBlock())
            client.receive_profile_events()
            client.receive_end_of_insert_query()
            if isinstance(exc, NotCovered):
                raise
            raise NotCovered(f"encoding failed: {type(exc).__name__}: {exc}") from exc
        _send_block(connection, types, rows, encoded)
        client.receive_profile_events()
        connection.send_data(ColumnOrientedBlock())  # the empty block: end of data
        client.receive_profile_events()
        client.receive_end_of_insert_query()
    return rows


def _send_block(
    connection: Any, types: Sequence[tuple[str, str]], rows: int, encoded: Sequence[Chunks]
) -> None:
    """A DATA packet, as ``Connection.send_data`` + ``BlockOutputStream.write`` write it."""
    fout = connection.fout
    revision = connection.server_info.used_revision
    write_varint(ClientPacketTypes.DATA, fout)
    if revision >= defines.DBMS_MIN_REVISION_WITH_TEMPORARY_TABLES:
        write_binary_str("", fout)
    if revision >= defines.DBMS_MIN_REVISION_WITH_BLOCK_INFO:
        BlockInfo().write(fout)
    write_varint(len(types), fout)
    write_varint(rows, fout)
    for (name, ch_type), chunks in zip(types, encoded, strict=True):
        write_binary_str(name, fout)
        write_binary_str(ch_type, fout)
        if revision >= defines.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION:
            write_binary_uint8(0, fout)
        for chunk in chunks:
            fout.write(chunk)
    fout.flush()
