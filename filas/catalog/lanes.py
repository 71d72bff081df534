"""Priority lanes for any topic family: one topic per lane, declared from one spec.

``lanes(MESSAGES, ("transactional", "bulk"))`` turns the family's spec into
``campaign.messages.transactional`` and ``campaign.messages.bulk`` (highest priority first), each
a full TopicSpec (same key, schema, partitions and retention unless overridden) with ``lane`` set.
``filas.lanes`` routes records to them and drains them highest lane first
(docs/queues-lanes.md, docs/decisions/0075-priority-lanes-one-topic-per-lane.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from filas.catalog.spec import TopicSpec
from filas.errors import ConfigurationError


def lane_topic_name(base: str, lane: str) -> str:
    return f"{base}.{lane}"


def lanes(
    spec: TopicSpec,
    names: Sequence[str],
    *,
    partitions: Mapping[str, int] | None = None,
    retention_ms: Mapping[str, int] | None = None,
) -> tuple[TopicSpec, ...]:
    """One spec per lane, in priority order (``names[0]`` is drained first).

    ``partitions`` / ``retention_ms`` override the base spec for some lanes (a transactional lane
    rarely needs the bulk lane's size).
    """
    if not names:
        raise ConfigurationError(f"{spec.name}: a lane family needs at least one lane")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{spec.name}: duplicate lane names {list(names)}")
    out: list[TopicSpec] = []
    for name in names:
        if not name or "." in name:
            raise ConfigurationError(f"{spec.name}: lane name {name!r} must be a non-empty word")
        out.append(
            replace(
                spec,
                name=lane_topic_name(spec.name, name),
                lane=name,
                partitions=(partitions or {}).get(name, spec.partitions),
                retention_ms=(retention_ms or {}).get(name, spec.retention_ms),
                description=f"{spec.description} Lane {name!r} (priority {len(out) + 1} of "
                f"{len(names)}).",
            )
        )
    return tuple(out)
