"""The homologation scenario as data: ordered steps, each naming the ``filas`` commands it needs.

``plan`` decides, before anything starts, which steps run and which are skipped and why (a
processor not landed yet, or a step the operator turned off), so the run works with the
processors that exist today and grows as they land. Pure: unit tests plan with fake command sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    needs: tuple[str, ...] = ()  # "group command" paths of the filas CLI
    after: tuple[str, ...] = ()  # steps that must have run (skipped if one was skipped)
    optional: bool = True  # False: the run fails instead of skipping
    off_reason: str | None = None  # set when the operator or the machine rules the step out


@dataclass(frozen=True)
class Planned:
    step: Step
    skip_reason: str | None

    @property
    def runs(self) -> bool:
        return self.skip_reason is None


def available_commands(group: click.Group, prefix: str = "") -> set[str]:
    """Every command path of a click group ("radius serve", "sink run", "up", ...)."""
    found: set[str] = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        found.add(path)
        if isinstance(command, click.Group):
            found |= available_commands(command, f"{path} ")
    return found


def plan(steps: Sequence[Step], available: Iterable[str]) -> list[Planned]:
    """Which steps run; a skipped step carries the reason printed for it."""
    have = set(available)
    planned: list[Planned] = []
    ran: set[str] = set()
    for step in steps:
        reason: str | None = None
        missing = [n for n in step.needs if n not in have]
        skipped_before = [a for a in step.after if a not in ran]
        if step.off_reason is not None:
            reason = step.off_reason
        elif missing:
            reason = "processor not available yet: " + ", ".join(f"filas {n}" for n in missing)
        elif skipped_before:
            reason = "needs step(s) that did not run: " + ", ".join(skipped_before)
        if reason is not None and not step.optional:
            raise click.UsageError(f"step {step.name} cannot run: {reason}")
        if reason is None:
            ran.add(step.name)
        planned.append(Planned(step, reason))
    return planned


def format_plan(planned: Sequence[Planned]) -> list[str]:
    lines = []
    for number, item in enumerate(planned, 1):
        mark = "run " if item.runs else "SKIP"
        extra = "" if item.runs else f"  ({item.skip_reason})"
        lines.append(f"  {number:>2}. [{mark}] {item.step.title}{extra}")
    return lines


StepFunction = Callable[[], None]
