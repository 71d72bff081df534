"""Filas: the event-streaming backbone for IXC Provedor."""

__version__ = "0.1.0"
