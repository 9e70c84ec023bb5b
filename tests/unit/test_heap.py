"""The service's collector settings: start-up heap frozen, young collections rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from config import heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settling_freezes_what_exists_and_raises_only_the_young_threshold(restored_collector: None) -> None:
    _, older, oldest = gc.get_threshold()
    heap.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, older, oldest)


def test_cyclic_garbage_is_still_collected(restored_collector: None) -> None:
    heap.settle()
    collected: list[str] = []

    class Node:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            collected.append("node")

    Node()
    assert collected == []  # unreachable, but in a cycle: only the collector frees it
    # Containers that stay alive count towards a young collection (freed ones are subtracted again).
    alive = [[] for _ in range(heap.YOUNG_THRESHOLD + 1)]
    assert collected == ["node"]
    del alive
