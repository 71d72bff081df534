"""The RADIUS gateway's packet handling without network: pyrad-built requests as a NAS sends."""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, AUTH_REQUESTS
from filas.settings import RadiusSettings
from producers.radius.events import ListSink
from producers.radius.gateway import DuplicateCache, RadiusGateway
from producers.radius.pyrad_adapter import (
    ACCESS_ACCEPT,
    ACCESS_REJECT,
    ACCESS_REQUEST,
    ACCOUNTING_REQUEST,
    ACCOUNTING_RESPONSE,
    RadiusCodec,
)
from streams.radius.replica import StateReplica

SECRET = b"s3cret"
NAS_IP = "10.0.0.1"
OLD_NAS_IP = "10.0.0.2"
SRC = (NAS_IP, 40000)
CODEC = RadiusCodec()


def subscriber(
    login: str,
    password: str | None = "pw",  # noqa: S107
    **extra: Any,
) -> dict[str, Any]:
    return {
        "login": login,
        "contract_id": extra.pop("contract_id", "c1"),
        "status": extra.pop("status", "ACTIVE"),
        "password": password,
        "download_kbps": 100_000,
        "upload_kbps": 20_000,
    } | extra


def make_gateway(**overrides: Any) -> tuple[RadiusGateway, ListSink]:
    replica = StateReplica()
    replica.put_nas(
        "1",
        {"nas_id": "1", "name": "bras", "ip": NAS_IP, "vendor": "MIKROTIK", "secret_ref": "r1"},
    )
    replica.put_nas(
        "2",
        {
            "nas_id": "2",
            "name": "old-bras",
            "ip": OLD_NAS_IP,
            "vendor": "ACCEL_PPP",
            "secret_ref": "r1",
            "requires_message_authenticator": False,
        },
    )
    replica.put_subscriber("ana", subscriber("ana"))
    replica.put_subscriber("fixo", subscriber("fixo", static_ipv4="100.64.0.9"))
    replica.put_subscriber("mac", subscriber("mac", mac="aabb.ccdd.eeff", bind_mac=True))
    replica.put_subscriber("off", subscriber("off", status="BLOCKED"))
    replica.put_subscriber("lento", subscriber("lento", status="REDUCED"))
    replica.put_subscriber("dev", subscriber("dev", contract_id="c-dev"))
    replica.put_subscriber("cancel", subscriber("cancel", contract_id="c-x"))
    replica.put_contract("c-dev", {"status": "BLOCKED"})
    replica.put_contract("c-x", {"status": "CANCELLED"})
    radius = RadiusSettings(nas_secrets={"r1": SecretStr(SECRET.decode())}, **overrides)
    sink = ListSink()
    return RadiusGateway(radius, replica, sink, CODEC), sink


def access(user: str, password: str, *, ma: bool = True, **attrs: Any) -> bytes:
    return CODEC.build_request(
        ACCESS_REQUEST, SECRET, {"User-Name": user} | attrs, password=password,
        message_authenticator=ma,
    )  # fmt: skip


def chap(user: str, password: str) -> bytes:
    challenge = os.urandom(16)
    digest = hashlib.md5(b"\x07" + password.encode() + challenge).digest()  # noqa: S324
    return CODEC.build_request(
        ACCESS_REQUEST,
        SECRET,
        {"User-Name": user, "CHAP-Password": b"\x07" + digest, "CHAP-Challenge": challenge},
    )


def reply_of(data: bytes | None) -> dict[str, list[Any]]:
    assert data is not None, "the gateway did not answer"
    return CODEC.decode_reply(data, SECRET)


def test_pap_accept_with_mikrotik_rate_limit() -> None:
    gateway, sink = make_gateway()
    reply = reply_of(gateway.handle_auth(access("ana", "pw"), SRC))
    assert reply["_code"] == [ACCESS_ACCEPT]
    assert reply["Mikrotik-Rate-Limit"] == ["20M/100M"]
    assert reply["Session-Timeout"] == [86400]
    assert "Message-Authenticator" in reply
    (request,) = sink.of(AUTH_REQUESTS)
    (decision,) = sink.of(AUTH_DECISIONS)
    assert request["auth_method"] == "PAP"
    assert decision["reason"] == "ok"
    assert decision["request_event_id"] == request["envelope"]["event_id"]
    assert "pw" not in {str(v) for v in [*request.values(), *decision.values()]}


@pytest.mark.parametrize("user", ["ana", "nobody"])
def test_replies_verify_as_a_nas_checks_them(user: str) -> None:
    gateway, _ = make_gateway()
    packet = access(user, "pw", **{"Proxy-State": b"state-1"})
    reply = gateway.handle_auth(packet, SRC)
    assert reply is not None
    assert CODEC.verify_reply(packet, reply, SECRET)
    assert not CODEC.verify_reply(packet, reply, b"other-secret")
    assert reply_of(reply)["Proxy-State"] == ["0x" + b"state-1".hex()]
    acct = CODEC.build_request(
        ACCOUNTING_REQUEST, SECRET, {"User-Name": user, "Acct-Status-Type": "Start"},
        message_authenticator=False,
    )  # fmt: skip
    acct_reply = gateway.handle_acct(acct, SRC)
    assert acct_reply is not None
    assert CODEC.verify_reply(acct, acct_reply, SECRET)


def test_chap_accept_and_wrong_chap_reject() -> None:
    gateway, sink = make_gateway()
    assert reply_of(gateway.handle_auth(chap("fixo", "pw"), SRC))["Framed-IP-Address"] == [
        "100.64.0.9"
    ]
    assert reply_of(gateway.handle_auth(chap("fixo", "nope"), SRC))["_code"] == [ACCESS_REJECT]
    assert [r["auth_method"] for r in sink.of(AUTH_REQUESTS)] == ["CHAP", "CHAP"]


@pytest.mark.parametrize(
    ("user", "password", "attrs", "reason"),
    [
        ("nobody", "pw", {}, "unknown_login"),
        ("ana", "bad", {}, "wrong_password"),
        ("mac", "pw", {"Calling-Station-Id": "11:22:33:44:55:66"}, "mac_mismatch"),
        ("mac", "pw", {}, "mac_mismatch"),
        ("off", "pw", {}, "disabled"),
        ("cancel", "pw", {}, "contract_inactive"),
        ("dev", "pw", {}, "blocked_non_payment"),
    ],
)
def test_reject_reasons(user: str, password: str, attrs: dict[str, str], reason: str) -> None:
    gateway, sink = make_gateway()
    reply = reply_of(gateway.handle_auth(access(user, password, **attrs), SRC))
    assert reply["_code"] == [ACCESS_REJECT]
    assert reply["Reply-Message"]
    (decision,) = sink.of(AUTH_DECISIONS)
    assert decision["reason"] == reason
    assert decision["decision"] == "reject"


def test_bound_mac_matches_in_any_notation() -> None:
    gateway, _ = make_gateway()
    packet = access("mac", "pw", **{"Calling-Station-Id": "aa-bb-cc-dd-ee-ff"})
    assert reply_of(gateway.handle_auth(packet, SRC))["_code"] == [ACCESS_ACCEPT]


def test_blocked_contract_into_block_pool_when_configured() -> None:
    gateway, sink = make_gateway(blocked_policy="block_pool", block_rate_limit="128k/128k")
    reply = reply_of(gateway.handle_auth(access("dev", "pw"), SRC))
    assert reply["_code"] == [ACCESS_ACCEPT]
    assert reply["Framed-Pool"] == ["bloqueados"]
    assert reply["Mikrotik-Rate-Limit"] == ["128k/128k"]
    assert sink.of(AUTH_DECISIONS)[0]["reason"] == "blocked_pool"


def test_reduced_login_keeps_service_at_reduced_rate() -> None:
    gateway, sink = make_gateway()
    reply = reply_of(gateway.handle_auth(access("lento", "pw"), SRC))
    assert reply["Mikrotik-Rate-Limit"] == ["1M/1M"]
    assert sink.of(AUTH_DECISIONS)[0]["reason"] == "reduced_speed"


def test_message_authenticator_required_unless_the_nas_opts_out() -> None:
    gateway, _ = make_gateway()
    assert gateway.handle_auth(access("ana", "pw", ma=False), SRC) is None
    assert gateway.stats.dropped_missing_message_authenticator == 1
    assert gateway.nas_sends_message_authenticator == {"1": False}
    # Old equipment whose NAS record opts out is served, without vendor attributes it lacks.
    reply = reply_of(gateway.handle_auth(access("ana", "pw", ma=False), (OLD_NAS_IP, 1)))
    assert reply["_code"] == [ACCESS_ACCEPT]
    assert "Mikrotik-Rate-Limit" not in reply
    # ... unless the operator forbids opt-outs.
    strict, _ = make_gateway(allow_message_authenticator_opt_out=False)
    assert strict.handle_auth(access("ana", "pw", ma=False), (OLD_NAS_IP, 1)) is None


def test_wrong_secret_or_tampered_packet_is_dropped() -> None:
    gateway, sink = make_gateway()
    forged = CODEC.build_request(ACCESS_REQUEST, b"other", {"User-Name": "ana"}, password="pw")
    assert gateway.handle_auth(forged, SRC) is None
    good = bytearray(access("ana", "pw"))
    good[-1] ^= 0xFF  # flip a bit of the Message-Authenticator's packet
    assert gateway.handle_auth(bytes(good), SRC) is None
    assert gateway.stats.dropped_bad_authenticator == 2
    assert sink.events == []


def test_unknown_nas_never_answered() -> None:
    gateway, sink = make_gateway()
    assert gateway.handle_auth(access("ana", "pw"), ("192.0.2.1", 1)) is None
    assert gateway.stats.dropped_unknown_nas == 1
    assert sink.events == []


def test_known_nas_without_secret_in_store_is_dropped() -> None:
    gateway, _ = make_gateway()
    gateway.replica.put_nas(
        "3", {"nas_id": "3", "name": "x", "ip": "10.0.0.3", "secret_ref": "missing"}
    )
    assert gateway.handle_auth(access("ana", "pw"), ("10.0.0.3", 1)) is None
    assert gateway.stats.dropped_no_secret == 1


def test_nas_moving_ip_follows_the_replica() -> None:
    gateway, _ = make_gateway()
    gateway.replica.put_nas(
        "1",
        {"nas_id": "1", "name": "bras", "ip": "10.0.0.9", "vendor": "MIKROTIK", "secret_ref": "r1"},
    )
    assert gateway.handle_auth(access("ana", "pw"), SRC) is None
    assert gateway.handle_auth(access("ana", "pw"), ("10.0.0.9", 1)) is not None


def test_retransmission_gets_the_cached_reply_and_no_second_decision() -> None:
    gateway, sink = make_gateway()
    packet = access("ana", "pw")
    first = gateway.handle_auth(packet, SRC)
    gateway.replica.put_subscriber("ana", subscriber("ana", password="changed"))
    assert gateway.handle_auth(packet, SRC) == first
    assert gateway.stats.duplicates == 1
    assert len(sink.of(AUTH_DECISIONS)) == 1
    # Another source port is another request (RFC 5080 keys on the source).
    assert reply_of(gateway.handle_auth(packet, (NAS_IP, 40001)))["_code"] == [ACCESS_REJECT]


def test_duplicate_cache_expires() -> None:
    cache = DuplicateCache(window_s=5)
    key = ("10.0.0.1", 1, 7, b"a" * 16)
    cache.put(key, b"reply", now=100.0)
    assert cache.get(key, now=104.0) == b"reply"
    assert cache.get(key, now=105.1) is None
    assert len(cache) == 0


def test_accounting_answered_and_published_with_gigawords_and_cause() -> None:
    gateway, sink = make_gateway()
    packet = CODEC.build_request(
        ACCOUNTING_REQUEST,
        SECRET,
        {
            "User-Name": "ana",
            "Acct-Status-Type": "Stop",
            "Acct-Session-Id": "81f00001",
            "Acct-Input-Octets": 10,
            "Acct-Input-Gigawords": 2,
            "Acct-Output-Octets": 7,
            "Acct-Session-Time": 3600,
            "Acct-Terminate-Cause": "Lost-Carrier",
            "Acct-Delay-Time": 3,
            "Framed-IP-Address": "100.64.1.1",
        },
        message_authenticator=False,
    )
    assert reply_of(gateway.handle_acct(packet, SRC))["_code"] == [ACCOUNTING_RESPONSE]
    (record,) = sink.of(ACCOUNTING)
    assert record["status_type"] == "stop"
    assert record["input_octets"] == 2 * 2**32 + 10
    assert record["terminate_cause"] == "lost_carrier"
    assert record["session_time_s"] == 3600
    assert record["delay_s"] == 3
    assert record["framed_ip_address"] == "100.64.1.1"
    assert record["nas_id"] == "1"
    # A retransmission is answered from the cache, and published once.
    assert gateway.handle_acct(packet, SRC) is not None
    assert len(sink.of(ACCOUNTING)) == 1


def test_accounting_on_is_keyed_by_the_nas() -> None:
    gateway, sink = make_gateway()
    packet = CODEC.build_request(
        ACCOUNTING_REQUEST, SECRET, {"Acct-Status-Type": "Accounting-On"},
        message_authenticator=False,
    )  # fmt: skip
    assert gateway.handle_acct(packet, SRC) is not None
    assert sink.of(ACCOUNTING)[0]["login"] == "@nas/1"


def test_accounting_with_wrong_secret_is_dropped() -> None:
    gateway, sink = make_gateway()
    packet = CODEC.build_request(
        ACCOUNTING_REQUEST, b"wrong", {"User-Name": "ana", "Acct-Status-Type": "Start"},
        message_authenticator=False,
    )  # fmt: skip
    assert gateway.handle_acct(packet, SRC) is None
    assert sink.events == []


def test_wrong_port_codes_are_dropped() -> None:
    gateway, _ = make_gateway()
    assert gateway.handle_acct(access("ana", "pw"), SRC) is None
    assert gateway.handle_auth(bytes([ACCOUNTING_REQUEST]) + access("ana", "pw")[1:], SRC) is None
    assert gateway.stats.dropped_unsupported == 2


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_garbage_never_raises(data: bytes) -> None:
    gateway, _ = make_gateway()
    for handler in (gateway.handle_auth, gateway.handle_acct):
        handler(data, SRC)
    assert gateway.stats.internal_errors == 0


@FUZZ
@given(
    code=st.sampled_from([ACCESS_REQUEST, ACCOUNTING_REQUEST]),
    identifier=st.integers(0, 255),
    body=st.binary(max_size=300),
)
def test_fuzz_valid_header_garbage_attributes_never_raises(
    code: int, identifier: int, body: bytes
) -> None:
    gateway, _ = make_gateway()
    packet = struct.pack("!BBH", code, identifier, 20 + len(body)) + os.urandom(16) + body
    reply = (gateway.handle_auth if code == ACCESS_REQUEST else gateway.handle_acct)(packet, SRC)
    assert reply is None  # no valid authenticator can come out of random bytes
    assert gateway.stats.internal_errors == 0


@FUZZ
@given(position=st.integers(0, 200), value=st.integers(0, 255))
def test_fuzz_mutated_valid_packets_never_raise(position: int, value: int) -> None:
    gateway, _ = make_gateway()
    packet = bytearray(access("ana", "pw", **{"Calling-Station-Id": "aa:bb:cc:dd:ee:ff"}))
    packet[position % len(packet)] = value
    gateway.handle_auth(bytes(packet), SRC)
    assert gateway.stats.internal_errors == 0
