"""SIMULATOR: fault injection for the fake IXC webservice.

A scripted sequence (consumed one listing request at a time) takes precedence; otherwise each
request fails with probability ``error_rate`` / ``slow_rate`` / ``malformed_rate`` drawn from a
seeded generator, so a failing run can be replayed.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from enum import StrEnum


class Fault(StrEnum):
    NONE = "none"
    ERROR_500 = "500"
    SLOW = "slow"
    MALFORMED = "malformed"


class FaultPlan:
    def __init__(
        self,
        *,
        script: Iterable[Fault | str] = (),
        error_rate: float = 0.0,
        slow_rate: float = 0.0,
        malformed_rate: float = 0.0,
        slow_s: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.script: deque[Fault] = deque(Fault(f) for f in script)
        self.error_rate = error_rate
        self.slow_rate = slow_rate
        self.malformed_rate = malformed_rate
        self.slow_s = slow_s
        self._rng = random.Random(seed)
        self.injected: list[Fault] = []

    def next(self) -> Fault:
        fault = self.script.popleft() if self.script else self._draw()
        if fault is not Fault.NONE:
            self.injected.append(fault)
        return fault

    def _draw(self) -> Fault:
        roll = self._rng.random()
        for fault, rate in (
            (Fault.ERROR_500, self.error_rate),
            (Fault.SLOW, self.slow_rate),
            (Fault.MALFORMED, self.malformed_rate),
        ):
            if roll < rate:
                return fault
            roll -= rate
        return Fault.NONE
