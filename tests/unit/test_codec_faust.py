"""The Faust side: the Avro codec round-trips through an agent, and raw agents dead-letter
undecodable records (with the reason) instead of letting Faust skip them silently."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust
import pytest
from faust.serializers import codecs

from filas.catalog import Catalog
from filas.catalog.radius import AUTH_DECISIONS
from filas.errors import DecodeError, RegistryError
from filas.settings import RegistrySettings
from schemas.catalog import SchemaCatalog
from schemas.dead_letter import SourceRecord, dead_letter
from schemas.registry_client import SchemaRegistry
from schemas.serde import AvroSerde
from streams.codec import AvroCodec, codec_name, register_codec
from streams.raw_decoder import RawDecoder

SCHEMAS = SchemaCatalog.load()
CATALOG = Catalog.build()


class ListSink:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))


@pytest.fixture
def registry() -> SchemaRegistry:
    return SchemaRegistry(RegistrySettings(url=f"mock://{uuid.uuid4()}"))


@pytest.fixture
def serde(registry: SchemaRegistry) -> AvroSerde:
    return AvroSerde.for_topic(AUTH_DECISIONS, SCHEMAS, registry)


@pytest.fixture
def dlq_serde(registry: SchemaRegistry) -> AvroSerde:
    return AvroSerde.for_topic(CATALOG.dead_letter_for(AUTH_DECISIONS), SCHEMAS, registry)


@pytest.fixture
async def app() -> AsyncIterator[faust.App]:
    # Built inside the test's running loop so Faust adopts it. The broker is never contacted:
    # test_context() runs agents in memory.
    app = faust.App(f"test-{uuid.uuid4()}", broker="kafka://127.0.0.1:39999", store="memory://")
    yield app
    # Iterating a stream builds the (never started) consumer, whose thread opens an event loop
    # of its own. Left open, its ResourceWarning fires from a later GC pass, becomes an error
    # under our warning filters and can surface as CPython 3.11's "AST constructor recursion
    # depth mismatch" in whatever module pytest compiles next.
    consumer = app._consumer
    if consumer is not None:
        consumer._thread.thread_loop.close()


def agent_of(app: faust.App, topic: Any, fun: Callable[[Any], Awaitable[None]]) -> Any:
    """``@app.agent(topic)`` without the untyped decorator (mypy --strict)."""
    register: Any = app.agent(topic)
    return register(fun)


def decision() -> dict[str, Any]:
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": 1_764_850_000_000,
            "source_system": "radius-gateway",
        },
        "login": "ana.lima@fibra",
        "request_event_id": str(uuid.uuid4()),
        "decision": "accept",
        "reason": "ok",
        "nas_ip_address": "10.20.0.1",
        "latency_us": 900,
        "decided_at": 1_764_850_000_000,
        "gateway_instance": "radius-gw-2",
    }


def test_codec_round_trip_by_name(serde: AvroSerde) -> None:
    name = register_codec(serde)
    assert name == codec_name(AUTH_DECISIONS)
    codec = codecs.get_codec(name)
    data = codec.dumps(decision())
    assert data[0] == 0
    assert codec.loads(data)["login"] == "ana.lima@fibra"


def test_codec_clone_keeps_the_serde(serde: AvroSerde) -> None:
    clone = AvroCodec(serde=serde).clone()
    assert isinstance(clone, AvroCodec)
    assert clone.serde is serde


async def test_agent_receives_decoded_record_through_the_codec(
    app: faust.App, serde: AvroSerde
) -> None:
    name = register_codec(serde)
    topic = app.topic(AUTH_DECISIONS.name, value_serializer=name)
    seen: list[Any] = []

    async def collect(stream: Any) -> None:
        async for value in stream:
            seen.append(value)

    consume = agent_of(app, topic, collect)

    # The test channel must be the serializing topic itself, or put() would skip the codec.
    async with consume.test_context(channel=topic) as agent:
        await agent.put(value=serde.serialize(decision()), key=b"ana.lima@fibra")
    assert [v["login"] for v in seen] == ["ana.lima@fibra"]
    assert seen[0]["reason"] == "ok"


async def test_raw_agent_dead_letters_garbage_with_the_reason(
    app: faust.App, serde: AvroSerde, dlq_serde: AvroSerde
) -> None:
    sink = ListSink()
    decoder = RawDecoder(serde, dlq_serde, sink, processor="test-decisions-sink")
    topic = app.topic(AUTH_DECISIONS.name, value_serializer="raw", key_serializer="raw")
    good: list[dict[str, Any]] = []

    async def collect(stream: Any) -> None:
        async for event in stream.events():
            record = await decoder.decode_faust(event.message)
            if record is not None:
                good.append(record)

    consume = agent_of(app, topic, collect)

    async with consume.test_context() as agent:
        await agent.put(value=serde.serialize(decision()), key=b"ana.lima@fibra")
        await agent.put(value=b"not avro at all", key=b"who")

    assert [r["login"] for r in good] == ["ana.lima@fibra"]
    assert decoder.dead_lettered == 1
    [(key, value)] = sink.sent
    assert key == AUTH_DECISIONS.name.encode()
    letter = dlq_serde.deserialize(value)
    assert letter["source_topic"] == AUTH_DECISIONS.name
    assert letter["error_code"] == "decode"
    assert letter["error_type"] == "DecodeError"
    assert "unknown magic byte" in letter["error_message"]
    assert letter["raw_value"] == b"not avro at all"
    assert letter["raw_key"] == b"who"
    assert letter["processor"] == "test-decisions-sink"
    assert letter["retriable"] is False


async def test_retriable_errors_are_raised_not_buried(
    serde: AvroSerde, dlq_serde: AvroSerde
) -> None:
    class DownRegistry(SchemaRegistry):
        def writer_schema(self, schema_id: int) -> Any:
            raise RegistryError("registry unreachable", retriable=True)

    down = AvroSerde(
        serde.spec, serde.schema, serde.schema_id, DownRegistry(serde._registry.settings)
    )
    sink = ListSink()
    decoder = RawDecoder(down, dlq_serde, sink, processor="p")
    other_version = b"\x00\x00\x00\x03\xe7" + b"\x00"
    with pytest.raises(RegistryError):
        await decoder.decode(SourceRecord("t", 0, 1, None, None, other_version))
    assert sink.sent == []


def test_dead_letter_record_fits_the_schema(dlq_serde: AvroSerde) -> None:
    source = SourceRecord("radius.auth-decisions", 7, 12345, 1_764_850_000_000, None, None)
    record = dead_letter(source, ValueError("boom"), "proc", failed_at_ms=1_764_850_000_001)
    SCHEMAS.validate("ixc.filas.dlq.DeadLetter", record)
    assert record["error_code"] == "unexpected"
    assert record["raw_value"] == b""
    back = dlq_serde.deserialize(dlq_serde.serialize(record))
    assert back["source_offset"] == 12345
    assert back["raw_key"] is None


def test_dead_letter_carries_filas_error_facts() -> None:
    source = SourceRecord("t", 0, 1, None, b"k", b"v")
    record = dead_letter(source, DecodeError("bad" * 5000), "proc")
    assert record["error_code"] == "decode"
    assert len(record["error_message"]) == 4096


def test_dead_letter_can_redact_secret_values() -> None:
    source = SourceRecord("ixc.subscribers", 0, 1, None, b"login", b"...senha...")
    record = dead_letter(source, DecodeError("bad"), "radius-gateway", redact_value=True)
    assert record["raw_value"] == b""
    assert record["raw_key"] == b"login"
