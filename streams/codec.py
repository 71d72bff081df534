"""Faust codec for Confluent-framed Avro, one per topic, sharing ``AvroSerde`` with producers.

Faust codecs are synchronous, so the serde (schema id registered, writer schemas cached) is built
at start-up and the codec never waits on the registry for its own schema. Faust swallows codec
errors on the consuming side (the record is logged and skipped); agents that must not lose bad
records consume ``value_serializer="raw"`` and use ``streams.raw_decoder.RawDecoder`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.serializers import codecs

from filas.catalog.spec import TopicSpec
from filas.errors import ValidationError
from schemas.serde import AvroSerde

CODEC_PREFIX = "filas-avro:"


def codec_name(spec: TopicSpec) -> str:
    """Name to pass as ``value_serializer`` for ``spec``'s topic."""
    return f"{CODEC_PREFIX}{spec.name}"


class AvroCodec(faust.Codec):  # type: ignore[misc]
    """Encode a mapping (or a Faust Record) with the topic's serde; decode to a plain dict."""

    def __init__(self, serde: AvroSerde, **kwargs: Any) -> None:
        # Faust's Codec.clone() rebuilds codecs from kwargs: keep the serde among them.
        super().__init__(serde=serde, **kwargs)
        self.serde = serde

    def _dumps(self, obj: Any) -> bytes:
        if hasattr(obj, "to_representation"):
            obj = obj.to_representation()
        if not isinstance(obj, Mapping):
            raise ValidationError(
                f"{self.serde.spec.name}: expected a mapping or faust.Record, got "
                f"{type(obj).__name__}"
            )
        return self.serde.serialize(obj)

    def _loads(self, s: bytes) -> Any:
        return self.serde.deserialize(s)


def register_codec(serde: AvroSerde) -> str:
    """Register the codec of ``serde``'s topic with Faust and return its name."""
    name = codec_name(serde.spec)
    codecs.register(name, AvroCodec(serde=serde))
    return name
