"""Errors of the RADIUS gateway. A bad packet is counted and dropped: control flow, not a crash."""

from __future__ import annotations

from filas.errors import FilasError


class RadiusError(FilasError):
    code = "radius"


class MalformedPacket(RadiusError):
    """Received bytes are not a RADIUS packet we can decode (dropped and counted)."""

    code = "radius_malformed"
