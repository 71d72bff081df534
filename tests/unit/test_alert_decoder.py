"""The alerting processor's PingResult decoders: same values as the serde, epoch millis; the
binary fast path equals fastavro on random records and refuses what fastavro would refuse."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from filas.catalog import Catalog
from filas.catalog.network import PING_RESULTS
from filas.errors import DecodeError
from producers.envelope import envelope
from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from schemas.wire import frame, unframe
from streams.network.service import ObservationDecoder, ResultDecoder, observation


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


def random_record(rng: random.Random) -> dict[str, Any]:
    def text(n: int) -> str:
        return "".join(rng.choice("aZ9-_.:çã€😀") for _ in range(n))

    def maybe_double() -> float | None:
        return None if rng.random() < 0.3 else rng.uniform(-1e6, 1e6)

    at = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(2**40))
    env = envelope(text(rng.randrange(0, 90)), occurred_at=at)
    env["correlation_id"] = None if rng.random() < 0.5 else text(rng.randrange(0, 200))
    env["event_id"] = uuid.UUID(int=rng.getrandbits(128))
    return {
        "envelope": env,
        "device_id": text(rng.choice((0, 1, 5, 63, 64, 65, 300))),
        "target_ip": rng.choice(("127.0.0.1", "::1", "2001:db8::1234:5678")),
        "probes_sent": rng.choice((0, 1, 3, 63, 64, 100, 2**31 - 1, -(2**31))),
        "probes_received": rng.choice((0, 1, 2, -1, 64, 2**20)),
        "loss_ratio": rng.random(),
        "rtt_min_ms": maybe_double(),
        "rtt_avg_ms": maybe_double(),
        "rtt_max_ms": maybe_double(),
        "jitter_ms": maybe_double(),
        "probed_at": at,
        "pinger_instance": text(rng.randrange(0, 130)),
    }


def test_the_fast_path_serves_the_current_schema() -> None:
    assert ObservationDecoder(SERDE).fast, (
        "schemas/ixc.filas.network.PingResult.avsc no longer has the layout "
        "streams/network/result_reader.py walks: update LAYOUT and read_observation"
    )


def test_fast_observation_equals_the_serdes_on_random_records() -> None:
    decoder = ObservationDecoder(SERDE)
    rng = random.Random(4)
    for _ in range(500):
        data = SERDE.serialize(random_record(rng))
        assert (
            decoder(data)
            == observation(ResultDecoder(SERDE)(data))
            == observation(SERDE.deserialize(data))
        )
    assert decoder(SERDE.serialize(RECORD)).probed_at_ms == 1_772_359_200_123


def test_fast_path_refuses_truncated_padded_and_bad_union_bodies() -> None:
    decoder = ObservationDecoder(SERDE)
    data = SERDE.serialize(RECORD)
    for cut in range(5, len(data)):
        with pytest.raises(DecodeError):
            decoder(data[:cut])
    with pytest.raises(DecodeError):
        decoder(data + b"\x00")
    body = bytearray(data)
    rtt_min_branch = len(data) - 1 - len("p1") - 6 - 3 * 9 - 9  # a null-or-double union byte
    assert body[rtt_min_branch] == 2
    body[rtt_min_branch] = 4
    with pytest.raises(DecodeError):
        decoder(bytes(body))


def test_other_writer_versions_skip_the_fast_path() -> None:
    data = frame(8, bytes(unframe(SERDE.serialize(RECORD))[1]))

    class Other:
        schema_id = 7
        schema = SERDE.schema

        def deserialize(self, value: bytes) -> dict[str, Any]:
            assert value == data
            return SERDE.deserialize(frame(7, bytes(unframe(value)[1])))

    assert ObservationDecoder(Other())(data) == observation(
        SERDE.deserialize(SERDE.serialize(RECORD))
    )
