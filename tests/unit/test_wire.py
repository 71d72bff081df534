"""Confluent framing: magic byte, big-endian id, and clear errors on anything else."""

from __future__ import annotations

import pytest

from filas.errors import DecodeError
from schemas.wire import frame, header, unframe


def test_header_is_magic_zero_and_big_endian_id() -> None:
    assert header(1) == b"\x00\x00\x00\x00\x01"
    assert header(0x01020304) == b"\x00\x01\x02\x03\x04"


def test_round_trip() -> None:
    schema_id, body = unframe(frame(4242, b"avro-body"))
    assert schema_id == 4242
    assert bytes(body) == b"avro-body"


def test_empty_body_is_allowed() -> None:
    # A record with no fields encodes to zero bytes.
    assert unframe(header(7)) == (7, memoryview(b""))


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_short_data_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match="too short"):
        unframe(data)


@pytest.mark.parametrize("data", [b'{"login": "x"}', b"\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00"])
def test_unknown_magic_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match="unknown magic byte"):
        unframe(data)


def test_null_value_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="null value"):
        unframe(None)


def test_schema_id_must_fit() -> None:
    with pytest.raises(ValueError, match="4 unsigned bytes"):
        header(2**32)
