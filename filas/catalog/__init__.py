"""The topic catalog as code: every Filas topic, looked up by name, never spelled as a string."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from filas.catalog import campaigns, ixc_state, logs, monitoring, network, radius, requests
from filas.catalog.spec import CleanupPolicy, TopicSpec
from filas.errors import UnknownTopicError

DEAD_LETTER_SCHEMA = "ixc.filas.dlq.DeadLetter"

_FAMILIES = (ixc_state, radius, network, campaigns, logs, requests, monitoring)


def _dead_letter_spec(spec: TopicSpec) -> TopicSpec:
    return TopicSpec(
        name=spec.dlq_name,
        value_schema=DEAD_LETTER_SCHEMA,
        key_field="source_topic",
        partitions=1,
        retention_ms=30 * 24 * 60 * 60 * 1000,
        retention_bytes=1024**3,
        replication_factor=spec.replication_factor,
        min_insync_replicas=spec.min_insync_replicas,
        dead_letter=False,
        description=f"Records of {spec.name} that could not be processed, with the reason.",
    )


@dataclass(frozen=True)
class Catalog:
    """All topic specs, optionally under a name prefix (per environment or per test)."""

    topics: Mapping[str, TopicSpec]
    prefix: str = ""

    @classmethod
    def build(cls, prefix: str = "") -> Catalog:
        specs: dict[str, TopicSpec] = {}
        for family in _FAMILIES:
            for spec in family.TOPICS:
                for s in (spec, _dead_letter_spec(spec)) if spec.dead_letter else (spec,):
                    named = replace(s, name=prefix + s.name) if prefix else s
                    specs[named.name] = named
        return cls(MappingProxyType(specs), prefix)

    def get(self, name: str) -> TopicSpec:
        """Look a topic up by its full name or by its catalog name (without the prefix)."""
        spec = self.topics.get(name) or self.topics.get(self.prefix + name)
        if spec is None:
            known = ", ".join(
                sorted(t.removeprefix(self.prefix) for t in self.topics if not t.endswith(".dlq"))
            )
            raise UnknownTopicError(f"unknown topic {name!r}; known topics: {known}")
        return spec

    def resolve(self, spec: TopicSpec) -> TopicSpec:
        """The catalog's version of a module-level spec (with this catalog's prefix applied)."""
        return self.get(spec.name)

    def only(self, *topics: TopicSpec | str) -> Catalog:
        """A catalog of just these topics (same prefix): apply or serve a few of them."""
        specs = [self.resolve(t) if isinstance(t, TopicSpec) else self.get(t) for t in topics]
        return Catalog(MappingProxyType({s.name: s for s in specs}), self.prefix)

    def dead_letter_for(self, spec: TopicSpec) -> TopicSpec:
        return self.get(self.resolve(spec).dlq_name)

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.topics.values())

    def __len__(self) -> int:
        return len(self.topics)


__all__ = ["DEAD_LETTER_SCHEMA", "Catalog", "CleanupPolicy", "TopicSpec"]
