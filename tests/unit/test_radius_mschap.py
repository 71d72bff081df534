"""MS-CHAPv2 (RFC 2759 / 2548 / 3079): the RFC's test vectors, and the gateway's answers."""

from __future__ import annotations

import os

import pytest

from filas.catalog.radius import AUTH_DECISIONS, AUTH_REQUESTS
from producers.radius import mschap
from producers.radius.pyrad_adapter import ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_REQUEST
from tests.unit.test_radius_gateway import CODEC, SECRET, SRC, make_gateway, reply_of

# RFC 2759 section 9.2.
USER = "User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")


def test_md4_matches_rfc_1320() -> None:
    assert mschap.md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert mschap.md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    assert (
        mschap.md4(
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
        ).hex()
        == "e33b4ddc9c38f2199c3e7b164fcc0536"
    )


def test_rfc_2759_section_9_2_vectors() -> None:
    assert mschap.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER).hex().upper() == (
        "D02E4386BCE91226"
    )
    assert mschap.nt_password_hash(PASSWORD).hex().upper() == "44EBBA8D5312B8D611474411F56989AE"
    assert mschap.md4(mschap.nt_password_hash(PASSWORD)).hex().upper() == (
        "41C00C584BD2D91C4017A2A12FA59F3F"
    )
    assert mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD) == (
        NT_RESPONSE
    )
    assert mschap.authenticator_response(
        PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    ) == ("S=407A5589115FD0D6209F510FE9C04566932CDA56")


def test_rfc_3079_mppe_keys_as_freeradius_sends_them() -> None:
    master = mschap.master_key(PASSWORD, NT_RESPONSE)
    assert master.hex().upper() == "FDECE3717A8C838CB388E527AE3CDD31"  # RFC 3079 3.5.3
    # FreeRADIUS 3.2.1 (rlm_mschap) answered this request with these keys (radclient -x).
    assert mschap.asymmetric_start_key(master, server_send=True).hex() == (
        "8b7cdc149b993a1ba118cb153f56dccb"
    )
    assert mschap.asymmetric_start_key(master, server_send=False).hex() == (
        "d5f0e9521e3ea9589645e86051c82226"
    )


def test_mppe_key_salt_encryption_round_trips() -> None:
    key = os.urandom(16)
    authenticator = os.urandom(16)
    encrypted = mschap.encrypt_mppe_key(key, SECRET, authenticator, b"\x80\x01")
    assert len(encrypted) == 2 + 32
    assert encrypted[:2] == b"\x80\x01"
    assert key not in encrypted
    assert mschap.decrypt_mppe_key(encrypted, SECRET, authenticator) == key
    assert mschap.decrypt_mppe_key(encrypted, b"other", authenticator) != key


def test_domain_prefix_is_not_hashed() -> None:
    assert mschap.username_for_hash("EMPRESA\\joao") == "joao"
    assert mschap.username_for_hash("joao@fibra") == "joao@fibra"


def mschap_request(user: str, password: str, ident: int = 7) -> tuple[bytes, bytes, bytes]:
    challenge, peer = os.urandom(16), os.urandom(16)
    nt = mschap.generate_nt_response(challenge, peer, mschap.username_for_hash(user), password)
    response = bytes((ident, 0)) + peer + bytes(8) + nt
    data = CODEC.build_request(
        ACCESS_REQUEST,
        SECRET,
        {"User-Name": user, "MS-CHAP-Challenge": challenge, "MS-CHAP2-Response": response},
    )
    return data, challenge, response


def test_gateway_accepts_mschapv2_with_success_and_mppe_keys() -> None:
    gateway, sink = make_gateway()
    data, challenge, response = mschap_request("ana", "pw")
    raw = gateway.handle_auth(data, SRC)
    reply = reply_of(raw)
    assert reply["_code"] == [ACCESS_ACCEPT]
    assert reply["Mikrotik-Rate-Limit"] == ["20M/100M"]
    assert raw is not None
    assert CODEC.verify_reply(data, raw, SECRET)
    success = bytes.fromhex(str(reply["MS-CHAP2-Success"][0])[2:])
    parsed = mschap.MsChapV2.parse(challenge, response)
    assert parsed is not None
    assert success[0] == 7
    assert success[1:].decode() == mschap.authenticator_response(
        "pw", parsed.nt_response, parsed.peer_challenge, challenge, "ana"
    )
    master = mschap.master_key("pw", parsed.nt_response)
    recv = bytes.fromhex(str(reply["MS-MPPE-Recv-Key"][0])[2:])
    send = bytes.fromhex(str(reply["MS-MPPE-Send-Key"][0])[2:])
    assert recv[:2] != send[:2], "each salt in a packet is unique"
    assert recv[0] & 0x80
    assert send[0] & 0x80
    assert mschap.decrypt_mppe_key(recv, SECRET, data[4:20]) == mschap.asymmetric_start_key(
        master, server_send=False
    )
    assert mschap.decrypt_mppe_key(send, SECRET, data[4:20]) == mschap.asymmetric_start_key(
        master, server_send=True
    )
    (request,) = sink.of(AUTH_REQUESTS)
    assert request["auth_method"] == "MSCHAPV2"
    (decision,) = sink.of(AUTH_DECISIONS)
    assert decision["reason"] == "ok"


@pytest.mark.parametrize(
    ("user", "password", "reason", "code"),
    [
        ("ana", "wrong", "wrong_password", 691),
        ("nobody", "pw", "unknown_login", 691),
        ("off", "pw", "disabled", 647),
    ],
)
def test_gateway_rejects_mschapv2_with_ms_chap_error(
    user: str, password: str, reason: str, code: int
) -> None:
    gateway, sink = make_gateway()
    data, challenge, _ = mschap_request(user, password, ident=9)
    reply = reply_of(gateway.handle_auth(data, SRC))
    assert reply["_code"] == [ACCESS_REJECT]
    assert "MS-CHAP2-Success" not in reply
    assert "MS-MPPE-Recv-Key" not in reply
    (error,) = reply["MS-CHAP-Error"]
    text = str(error)
    assert text.startswith("\x09E=") or text.startswith("\tE=")
    assert f"E={code} R=0 C={challenge.hex().upper()} V=3 M=" in text
    (decision,) = sink.of(AUTH_DECISIONS)
    assert decision["reason"] == reason


def test_truncated_mschapv2_response_is_a_wrong_password() -> None:
    gateway, _ = make_gateway()
    data = CODEC.build_request(
        ACCESS_REQUEST,
        SECRET,
        {
            "User-Name": "ana",
            "MS-CHAP-Challenge": os.urandom(16),
            "MS-CHAP2-Response": b"\x01" * 20,
        },
    )
    reply = reply_of(gateway.handle_auth(data, SRC))
    assert reply["_code"] == [ACCESS_REJECT]
    assert "MS-CHAP-Error" not in reply
