"""Homologation SIMULATOR of IXC Provedor's webservice: not IXC, never for production data.

A deterministic fake ISP (``dataset``) served over the same listing API IXC has (``server``),
with fault injection (``faults``) and admin endpoints under ``/_sim/`` to mutate data.
"""

from producers.ixc.simulator.dataset import SimulatedIsp
from producers.ixc.simulator.faults import Fault, FaultPlan
from producers.ixc.simulator.server import IxcSimulator

__all__ = ["Fault", "FaultPlan", "IxcSimulator", "SimulatedIsp"]
