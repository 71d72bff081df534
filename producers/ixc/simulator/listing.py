"""SIMULATOR: IXC's listing semantics over in-memory records (filter, sort, page). Pure.

Mirrors what the real webservice does with ``qtype``/``query``/``oper``, ``grid_param``
(``[{"TB", "OP", "P"}]`` extra AND filters), ``sortname``/``sortorder`` and ``page``/``rp``.
Values compare as numbers when both sides are integers (ids), otherwise as strings (IXC's
``YYYY-MM-DD HH:MM:SS`` dates order correctly as strings).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Record = Mapping[str, str]


class ListingError(ValueError):
    """A listing body the simulator (and IXC) would refuse."""


def _key(value: str) -> tuple[int, int, str]:
    stripped = value.strip()
    if stripped.lstrip("-").isdigit():
        return (0, int(stripped), "")
    return (1, 0, value)


_OPS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda a, b: _key(a) == _key(b),
    "!=": lambda a, b: _key(a) != _key(b),
    ">": lambda a, b: _key(a) > _key(b),
    ">=": lambda a, b: _key(a) >= _key(b),
    "<": lambda a, b: _key(a) < _key(b),
    "<=": lambda a, b: _key(a) <= _key(b),
    "L": lambda a, b: b.lower() in a.lower(),
}


def _column(form: str, qualified: str) -> str:
    """``cliente.id`` -> ``id``; a column of another form is refused like IXC does."""
    table, _, column = qualified.rpartition(".")
    if table and table != form:
        raise ListingError(f"column {qualified!r} is not on form {form!r}")
    return column


@dataclass(frozen=True, slots=True)
class Condition:
    column: str
    oper: str
    value: str

    def matches(self, record: Record) -> bool:
        return _OPS[self.oper](record.get(self.column, ""), self.value)


def conditions(form: str, body: Mapping[str, str]) -> list[Condition]:
    found: list[Condition] = []
    if body.get("qtype"):
        found.append(_condition(form, body["qtype"], body.get("oper", "="), body.get("query", "")))
    if body.get("grid_param"):
        try:
            grid = json.loads(body["grid_param"])
            for item in grid:
                found.append(_condition(form, str(item["TB"]), str(item["OP"]), str(item["P"])))
        except (ValueError, TypeError, KeyError) as exc:
            raise ListingError(f"bad grid_param: {exc}") from exc
    return found


def _condition(form: str, column: str, oper: str, value: str) -> Condition:
    if oper not in _OPS:
        raise ListingError(f"unknown oper {oper!r}")
    return Condition(_column(form, column), oper, value)


def list_records(
    form: str, records: Iterable[Record], body: Mapping[str, str]
) -> tuple[int, list[Record]]:
    """(total matching, records of the requested page)."""
    try:
        page = max(1, int(body.get("page", "1") or "1"))
        rows = max(1, int(body.get("rp", "20") or "20"))
    except ValueError as exc:
        raise ListingError(f"page/rp must be numbers: {exc}") from exc
    wanted = conditions(form, body)
    matching = [r for r in records if all(c.matches(r) for c in wanted)]
    sort_column = _column(form, body.get("sortname") or f"{form}.id")
    descending = body.get("sortorder", "asc").lower() == "desc"
    # Stable secondary order on id, as MySQL's primary key usually gives in practice.
    matching.sort(key=lambda r: _key(r.get("id", "")), reverse=descending)
    matching.sort(key=lambda r: _key(r.get(sort_column, "")), reverse=descending)
    start = (page - 1) * rows
    return len(matching), matching[start : start + rows]
