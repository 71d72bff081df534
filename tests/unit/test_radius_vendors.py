"""Rate limits per NAS vendor: parsing, the dialects, Access-Accept and CoA-Request alike."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from filas.catalog.radius import AUTH_DECISIONS
from filas.settings import RadiusSettings
from producers.radius.events import ListSink
from producers.radius.gateway import RadiusGateway
from producers.radius.pyrad_adapter import ACCESS_ACCEPT
from producers.radius.vendors import Rate, parse_rate, rate_attributes
from streams.radius.replica import StateReplica
from tests.unit.test_radius_coa import BLOCK, UNBLOCK, FakeNas, harness, settings, status_event
from tests.unit.test_radius_gateway import CODEC, SECRET, access, subscriber

CISCO_UP = (
    "lcp:interface-config#1=rate-limit input 20000000 3750000 7500000 "
    "conform-action transmit exceed-action drop"
)
CISCO_DOWN = (
    "lcp:interface-config#2=rate-limit output 100000000 18750000 37500000 "
    "conform-action transmit exceed-action drop"
)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20M/100M", Rate(20_000, 100_000)),
        ("256k/512k", Rate(256, 512)),
        ("1G/1G", Rate(1_000_000, 1_000_000)),
        ("1.5M/3M 2M/4M 1M/2M 10/10", Rate(1_500, 3_000)),  # bursts ignored
        ("64000/128000", Rate(64, 128)),  # RouterOS: a bare number is bit/s
        ("fast", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_rate(text: str | None, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("MIKROTIK", {"Mikrotik-Rate-Limit": "20M/100M"}),
        (
            "HUAWEI",
            {"Huawei-Input-Average-Rate": 20_000_000, "Huawei-Output-Average-Rate": 100_000_000},
        ),
        ("JUNIPER", {"ERX-Service-Activate:1": "filas-rate(100000000,20000000)"}),
        ("CISCO", {"Cisco-AVPair": (CISCO_UP, CISCO_DOWN)}),
        ("ACCEL_PPP", {"Filter-Id": "100000/20000"}),
        ("OTHER", {}),
    ],
)
def test_rate_attributes_per_vendor(vendor: str, expected: dict[str, Any]) -> None:
    assert rate_attributes(vendor, "20M/100M") == expected
    assert rate_attributes(vendor, None) == {}


def test_juniper_service_template_is_configurable() -> None:
    got = rate_attributes("JUNIPER", "1M/2M", "svc-plano({down_kbps}k,{up_kbps}k)")
    assert got == {"ERX-Service-Activate:1": "svc-plano(2000k,1000k)"}


def gateway_for(vendor: str) -> tuple[RadiusGateway, ListSink]:
    replica = StateReplica()
    replica.put_nas(
        "1", {"nas_id": "1", "name": "bras", "ip": "10.0.0.1", "vendor": vendor, "secret_ref": "r"}
    )
    replica.put_subscriber("ana", subscriber("ana"))
    sink = ListSink()
    radius = RadiusSettings(nas_secrets={"r": SecretStr(SECRET.decode())})
    return RadiusGateway(radius, replica, sink, CODEC), sink


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("MIKROTIK", {"Mikrotik-Rate-Limit": ["20M/100M"]}),
        (
            "HUAWEI",
            {
                "Huawei-Input-Average-Rate": [20_000_000],
                "Huawei-Output-Average-Rate": [100_000_000],
            },
        ),
        ("CISCO", {"Cisco-AVPair": [CISCO_UP, CISCO_DOWN]}),
        ("ACCEL_PPP", {"Filter-Id": ["100000/20000"]}),
    ],
)
def test_access_accept_carries_the_vendor_dialect(vendor: str, expected: dict[str, Any]) -> None:
    gateway, sink = gateway_for(vendor)
    raw = gateway.handle_auth(access("ana", "pw"), ("10.0.0.1", 1))
    assert raw is not None
    reply = CODEC.decode_reply(raw, SECRET)
    assert reply["_code"] == [ACCESS_ACCEPT]
    for name, values in expected.items():
        assert reply[name] == values
    others = {"Mikrotik-Rate-Limit", "Huawei-Input-Average-Rate", "Cisco-AVPair", "Filter-Id"}
    assert not (others - set(expected)) & set(reply)
    (decision,) = sink.of(AUTH_DECISIONS)
    assert decision["rate_limit"] == "20M/100M"
    assert set(expected) <= set(decision["reply_attributes"])


def test_juniper_accept_carries_a_tagged_service_activate() -> None:
    gateway, _ = gateway_for("JUNIPER")
    raw = gateway.handle_auth(access("ana", "pw"), ("10.0.0.1", 1))
    assert raw is not None
    # Vendor-Specific(26) len, vendor 4874, ERX-Service-Activate(65) len, tag 1, value
    value = b"filas-rate(100000000,20000000)"
    vsa = bytes((26, len(value) + 9)) + (4874).to_bytes(4, "big") + bytes((65, len(value) + 3))
    assert vsa + b"\x01" + value in raw


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        (
            "HUAWEI",
            {"Huawei-Input-Average-Rate": [256_000], "Huawei-Output-Average-Rate": [256_000]},
        ),
        ("ACCEL_PPP", {"Filter-Id": ["256/256"]}),
        ("OTHER", {}),
    ],
)
def test_block_coa_speaks_the_nas_dialect(vendor: str, expected: dict[str, Any]) -> None:
    nas = FakeNas().start()
    try:
        h = harness(nas, settings(coa_block_action="coa"), vendor=vendor)
        (result,) = h.processor.handle(status_event(*BLOCK))
        (got,) = nas.received
        assert result["outcome"] == "ACK"
        for name, values in expected.items():
            assert got.attributes[name] == values
        assert "Mikrotik-Rate-Limit" not in got.attributes
        assert got.attributes["Framed-Pool"] == ["bloqueados"]
        assert set(result["attributes"]) == set(expected) | {"Framed-Pool"}
    finally:
        nas.stop()


def test_unblock_coa_to_cisco_carries_both_avpairs() -> None:
    nas = FakeNas().start()
    try:
        h = harness(nas, vendor="CISCO")
        (result,) = h.processor.handle(status_event(*UNBLOCK))
        (got,) = nas.received
        assert result["outcome"] == "ACK"
        assert got.attributes["Cisco-AVPair"] == [
            CISCO_UP.replace("20000000 3750000 7500000", "50000000 9375000 18750000"),
            CISCO_DOWN,
        ]
        assert result["attributes"]["Cisco-AVPair"].count("\n") == 1
    finally:
        nas.stop()
