"""Priority lanes for any topic family (docs/queues-lanes.md).

Declare: ``filas.catalog.lanes.lanes(spec, ("high", "bulk"))`` gives one TopicSpec per lane.
Produce: ``LaneRouter`` picks a record's lane topic from a field (or an explicit lane).
Consume: ``LaneConsumer`` drains the lanes in strict priority: one consumer per lane, and a lower
lane is read only when every higher lane returned nothing.
"""

from filas.lanes.consumer import LaneBatch, LaneConsumer, LaneListener
from filas.lanes.router import LaneRouter

__all__ = ["LaneBatch", "LaneConsumer", "LaneListener", "LaneRouter"]
