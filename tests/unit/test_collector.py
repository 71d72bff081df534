"""``fewer_collections`` (decisions 0123, 0131): while inside, what was alive is frozen out of
the collector's passes and the youngest generation collects less often; both undone on exit,
and cycles made inside are still collected."""

from __future__ import annotations

import gc
import weakref

import pytest

from filas.collector import THRESHOLD, fewer_collections


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_freezes_and_raises_the_first_threshold_then_restores() -> None:
    before = gc.get_threshold()
    with fewer_collections(12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_restores_when_the_loop_raises() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("loop failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_inside_are_still_collected() -> None:
    with fewer_collections():
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # a cycle: reference counting alone keeps it
        gc.collect()
        assert gone() is None


def test_overlapping_users_restore_only_when_the_last_exits() -> None:
    before = gc.get_threshold()
    sink, ingress = fewer_collections(), fewer_collections()
    sink.__enter__()
    ingress.__enter__()
    sink.__exit__(None, None, None)  # the first in exits first: the other still runs
    assert gc.get_threshold()[0] == THRESHOLD
    assert gc.get_freeze_count() > 0
    ingress.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
