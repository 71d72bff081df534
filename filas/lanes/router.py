"""Producer side of priority lanes: which lane topic a record goes to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from filas.catalog import Catalog, TopicSpec
from filas.errors import ValidationError


class LaneRouter:
    """Lane name -> the catalog's (prefixed) lane topic, for one family.

    ``family`` is the tuple ``filas.catalog.lanes.lanes`` returned (priority order). Records name
    their lane in ``field`` (e.g. ``CampaignMessage.lane``); a record without one goes to
    ``default`` (the lowest lane unless told otherwise), an unknown lane is a ValidationError.
    """

    def __init__(
        self,
        catalog: Catalog,
        family: Sequence[TopicSpec],
        *,
        field: str = "lane",
        default: str | None = None,
    ) -> None:
        if not family or any(spec.lane is None for spec in family):
            raise ValidationError("LaneRouter needs the specs filas.catalog.lanes.lanes returned")
        self.field = field
        self.specs: tuple[TopicSpec, ...] = tuple(catalog.resolve(spec) for spec in family)
        self._by_lane: dict[str, TopicSpec] = {str(s.lane): s for s in self.specs}
        self.default = default if default is not None else str(self.specs[-1].lane)
        if self.default not in self._by_lane:
            raise ValidationError(f"default lane {self.default!r} is not one of {self.lanes}")

    @property
    def lanes(self) -> tuple[str, ...]:
        return tuple(str(s.lane) for s in self.specs)

    def spec_for(self, lane: str | None) -> TopicSpec:
        name = self.default if lane is None or lane == "" else str(lane)
        spec = self._by_lane.get(name)
        if spec is None:
            raise ValidationError(
                f"unknown lane {name!r}; lanes of this family: {', '.join(self.lanes)}",
                field=self.field,
            )
        return spec

    def route(self, record: Mapping[str, Any]) -> TopicSpec:
        """The lane topic for ``record`` (by its ``field``)."""
        value = record.get(self.field)
        return self.spec_for(None if value is None else str(value))

    def priority(self, lane: str) -> int:
        """0 for the highest lane."""
        return self.lanes.index(self.spec_for(lane).lane or "")
