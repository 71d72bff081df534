"""The alerting processor's PingResult decoder: same values as the serde, epoch millis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from filas.catalog import Catalog
from filas.catalog.network import PING_RESULTS
from filas.errors import DecodeError
from producers.envelope import envelope
from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from schemas.wire import frame, unframe
from streams.network.service import ResultDecoder, observation


class NoRegistry:
    def writer_schema(self, schema_id: int) -> Any:
        raise AssertionError("the decoder must not ask the registry for its own version")


SPEC = Catalog.build().resolve(PING_RESULTS)
SERDE = AvroSerde(SPEC, SchemaCatalog.load().get(SPEC.value_schema), 7, NoRegistry())  # type: ignore[arg-type]
AT = datetime(2026, 3, 1, 10, 0, 0, 123_000, tzinfo=UTC)
RECORD = {
    "envelope": envelope("test", occurred_at=AT),
    "device_id": "onu-1",
    "target_ip": "127.0.0.1",
    "probes_sent": 3,
    "probes_received": 2,
    "loss_ratio": 1 / 3,
    "rtt_min_ms": 0.5,
    "rtt_avg_ms": 0.7,
    "rtt_max_ms": 0.9,
    "jitter_ms": 0.1,
    "probed_at": AT,
    "pinger_instance": "p1",
}


def test_same_values_as_the_serde_with_millis() -> None:
    data = SERDE.serialize(RECORD)
    fast = ResultDecoder(SERDE)(data)
    slow = SERDE.deserialize(data)
    assert fast["probed_at"] == 1_772_359_200_123
    assert observation(fast) == observation(slow)
    assert fast["envelope"]["event_id"] == str(slow["envelope"]["event_id"])
    assert {k: v for k, v in fast.items() if k not in ("probed_at", "envelope")} == {
        k: v for k, v in slow.items() if k not in ("probed_at", "envelope")
    }


def test_other_writer_versions_go_through_the_serde() -> None:
    calls: list[bytes] = []

    class Spy:
        schema_id = 8
        schema = SERDE.schema

        def deserialize(self, data: bytes) -> dict[str, Any]:
            calls.append(data)
            return SERDE.deserialize(frame(7, bytes(unframe(data)[1])))

    data = SERDE.serialize(RECORD)
    assert ResultDecoder(Spy())(data)["device_id"] == "onu-1"
    assert calls == [data]


def test_garbage_is_a_decode_error() -> None:
    decoder = ResultDecoder(SERDE)
    with pytest.raises(DecodeError):
        decoder(b"\x00\x00\x00\x00\x07\xff\xff")
    with pytest.raises(DecodeError):
        decoder(b"not avro")
