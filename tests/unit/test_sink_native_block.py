"""native_block's column bytes equal ClickHouse's Native format written value by value (a plain
Python reference), for random columns; the integration test checks what the server lands."""

from __future__ import annotations

import struct
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.clickhouse.native_block import NotCovered, encode


def leb128(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def reference(ch_type: str, values: list[Any]) -> bytes:
    if ch_type.startswith("Nullable("):
        inner = ch_type[9:-1]
        default: Any = "" if inner == "String" else 0
        nulls = bytes(1 if v is None else 0 for v in values)
        return nulls + reference(inner, [default if v is None else v for v in values])
    if ch_type.startswith("Array("):
        ends, flat, total = [], [], 0
        for items in values:
            total += len(items)
            ends.append(total)
            flat.extend(items)
        return struct.pack(f"<{len(ends)}Q", *ends) + reference(ch_type[6:-1], flat)
    if ch_type == "String":
        return b"".join(leb128(len(v.encode())) + v.encode() for v in values)
    fmt = {"UInt16": "H", "UInt32": "I", "UInt64": "Q", "Int32": "i", "Int64": "q"}
    fmt |= {"DateTime": "I", "Float64": "d"}
    return struct.pack(f"<{len(values)}{fmt[ch_type]}", *values)


def encoded(ch_type: str, series: pl.Series) -> bytes:
    return b"".join(encode(ch_type, series))


TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="aé😀", min_size=100, max_size=6000),  # 1-, 2- and 3-byte lengths
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXT), max_size=40))
def test_strings_and_nullable_strings(values: list[str | None]) -> None:
    filled = ["" if v is None else v for v in values]
    assert encoded("String", pl.Series(filled, dtype=pl.String)) == reference("String", filled)
    series = pl.Series(values, dtype=pl.String)
    assert encoded("Nullable(String)", series) == reference("Nullable(String)", values)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.text(max_size=200), max_size=4), max_size=30))
def test_arrays_of_strings(values: list[list[str]]) -> None:
    series = pl.Series(values, dtype=pl.List(pl.String))
    assert encoded("Array(String)", series) == reference("Array(String)", values)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 2**32 - 1)), max_size=30),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30),
)
def test_integers_and_datetimes(seconds: list[int | None], longs: list[int]) -> None:
    series = pl.Series(seconds, dtype=pl.Int64)
    assert encoded("Nullable(DateTime)", series) == reference("Nullable(DateTime)", seconds)
    assert encoded("Nullable(UInt32)", series) == reference("Nullable(UInt32)", seconds)
    assert encoded("Int64", pl.Series(longs, dtype=pl.Int64)) == reference("Int64", longs)


def test_a_length_of_four_leb128_bytes_and_uniform_short_strings() -> None:
    values = ["x" * (2**21), "", "é" * 70]
    assert encoded("String", pl.Series(values)) == reference("String", values)
    same = ["abc"] * 5
    assert encoded("String", pl.Series(same)) == reference("String", same)


def test_edges_of_the_integer_types() -> None:
    top = [0, 2**64 - 1]
    assert encoded("UInt64", pl.Series(top, dtype=pl.UInt64)) == reference("UInt64", top)
    assert encoded("Float64", pl.Series([1.5, -0.0])) == reference("Float64", [1.5, -0.0])


def test_nullable_inside_an_array_is_a_null_map_over_the_flattened_values() -> None:
    values = [["a", None], []]
    series = pl.Series(values, dtype=pl.List(pl.String))
    assert encoded("Array(Nullable(String))", series) == reference(
        "Array(Nullable(String))", values
    )


@pytest.mark.parametrize(
    ("ch_type", "series"),
    [
        ("UInt16", pl.Series([70_000])),
        ("DateTime", pl.Series([-1])),
        ("Int32", pl.Series([2**31])),
        ("String", pl.Series(["a", None])),  # a null in a non-Nullable column
        ("Float32", pl.Series([1.0], dtype=pl.Float64)),  # a dtype that does not match
        ("Date", pl.Series([1])),
        ("Decimal(12, 2)", pl.Series([1])),
        ("String", pl.Series([1, 2])),
    ],
)
def test_not_covered(ch_type: str, series: pl.Series) -> None:
    with pytest.raises(NotCovered):
        encode(ch_type, series)
