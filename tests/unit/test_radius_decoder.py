"""The hand-written request decoder returns what pyrad returns; its checks agree with pyrad's."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyrad import packet as rp
from pyrad.dictionary import Dictionary

from producers.radius.errors import MalformedPacket
from producers.radius.pyrad_adapter import (
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    DICTIONARY_PATH,
    RadiusCodec,
)

SECRET = b"s3cret"
CODEC = RadiusCodec()
DICT = Dictionary(str(DICTIONARY_PATH))
HIDDEN = {"User-Password", "CHAP-Password", "Message-Authenticator", "MS-CHAP2-Response"}


def plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value if isinstance(value, int | str) else str(value)


def pyrad_view(data: bytes) -> dict[str, tuple[Any, ...]]:
    cls = rp.AcctPacket if data[0] == ACCOUNTING_REQUEST else rp.AuthPacket
    pkt = cls(packet=data, secret=SECRET, dict=DICT)
    out: dict[str, tuple[Any, ...]] = {}
    for key in list(pkt.keys()):
        if isinstance(key, str) and key not in HIDDEN:
            out[key] = tuple(
                "0x" + v.hex()
                if isinstance(v, bytes)
                else v
                if isinstance(v, int | str)
                else str(v)
                for v in pkt[key]
            )
    return out


ACCESS: dict[str, Any] = {
    "User-Name": "joão@fibra",
    "NAS-IP-Address": "10.0.0.1",
    "NAS-Port": 15728640,
    "NAS-Port-Id": "ether1.100",
    "NAS-Port-Type": "Ethernet",
    "Service-Type": "Framed-User",
    "Framed-Protocol": "PPP",
    "Calling-Station-Id": "AA:BB:CC:DD:EE:FF",
    "Called-Station-Id": "pppoe-server",
    "NAS-Identifier": "bras-1",
    "Mikrotik-Realm": "fibra",
    "Proxy-State": b"\x01\x02",
    "MS-CHAP-Challenge": os.urandom(16),
}
ACCOUNTING: dict[str, Any] = {
    "User-Name": "ana",
    "Acct-Status-Type": "Interim-Update",
    "Acct-Session-Id": "81a00001",
    "Acct-Input-Octets": 123456,
    "Acct-Output-Octets": 7,
    "Acct-Input-Gigawords": 2,
    "Acct-Session-Time": 3600,
    "Acct-Terminate-Cause": "Lost-Carrier",
    "Framed-IP-Address": "100.64.0.9",
    "Framed-IPv6-Prefix": "2001:db8:1::/64",
    "Delegated-IPv6-Prefix": "2001:db8:ff00::/56",
    "Event-Timestamp": 1_700_000_000,
}


@pytest.mark.parametrize(
    ("code", "attributes"), [(ACCESS_REQUEST, ACCESS), (ACCOUNTING_REQUEST, ACCOUNTING)]
)
def test_decoded_attributes_equal_pyrads(code: int, attributes: dict[str, Any]) -> None:
    data = CODEC.build_request(code, SECRET, attributes, password="pw" if code == 1 else None)
    request = CODEC.decode(data, SECRET)
    assert dict(request.attributes) == pyrad_view(data)
    assert request.text("Service-Type") == "Framed-User" or code == ACCOUNTING_REQUEST
    assert CODEC.message_authenticator_valid(request)
    if code == ACCOUNTING_REQUEST:
        assert CODEC.accounting_authenticator_valid(request)
        assert request.number("Acct-Input-Gigawords") == 2


def test_signature_checks_fail_with_the_wrong_secret() -> None:
    data = CODEC.build_request(ACCOUNTING_REQUEST, SECRET, ACCOUNTING)
    request = CODEC.decode(data, b"other")
    assert not CODEC.accounting_authenticator_valid(request)
    assert not CODEC.message_authenticator_valid(request)
    access = CODEC.decode(CODEC.build_request(ACCESS_REQUEST, SECRET, ACCESS, password="pw"), b"x")
    assert not CODEC.message_authenticator_valid(access)
    assert not CODEC.check_pap(access, "pw")


@pytest.mark.parametrize("password", ["pw", "a" * 16, "senha longa com espaço " * 3, "ç"])
def test_pap_of_every_length(password: str) -> None:
    request = CODEC.decode(
        CODEC.build_request(ACCESS_REQUEST, SECRET, {"User-Name": "x"}, password=password), SECRET
    )
    assert CODEC.credential(request) == "PAP"
    assert CODEC.check_pap(request, password)
    assert not CODEC.check_pap(request, password + "x")
    assert not CODEC.check_pap(request, password[:-1])


def test_trailing_padding_is_ignored_and_bad_lengths_are_malformed() -> None:
    data = CODEC.build_request(ACCESS_REQUEST, SECRET, ACCESS, password="pw")
    padded = CODEC.decode(data + b"\x00" * 7, SECRET)
    assert CODEC.message_authenticator_valid(padded)
    broken = bytearray(data)
    broken[21] = 1  # first attribute's length < 2
    with pytest.raises(MalformedPacket):
        CODEC.decode(bytes(broken), SECRET)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.text(min_size=1, max_size=60),
    port=st.integers(min_value=0, max_value=2**32 - 1),
    vsa=st.binary(min_size=0, max_size=40),
    status=st.sampled_from(["Start", "Stop", "Interim-Update", "Accounting-On"]),
)
def test_decoder_matches_pyrad_on_generated_packets(
    name: str, port: int, vsa: bytes, status: str
) -> None:
    attributes: dict[str, Any] = {
        "User-Name": name,
        "NAS-Port": port,
        "Acct-Status-Type": status,
        "Vendor-Specific": b"\x00\x00\x3a\x8c" + vsa,  # Mikrotik id + arbitrary sub-attributes
    }
    data = CODEC.build_request(ACCOUNTING_REQUEST, SECRET, attributes)
    try:
        expected = pyrad_view(data)
    except Exception:
        if len(data) <= 4096:
            CODEC.decode(data, SECRET)
        return
    got = dict(CODEC.decode(data, SECRET).attributes)
    got.pop("Vendor-Specific", None)
    expected.pop("Vendor-Specific", None)
    assert got == expected
