"""The interpreter settings of the service's processes: start-up heap frozen, young collections rarer, the GIL
handed over sooner."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from ingest import interpreter


@pytest.fixture
def restored_collector() -> Iterator[None]:
    with interpreter.restored_on_exit():
        yield


def test_settling_freezes_what_exists_and_raises_only_the_young_threshold(restored_collector: None) -> None:
    _, older, oldest = gc.get_threshold()
    interpreter.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (interpreter.YOUNG_THRESHOLD, older, oldest)


def test_settling_hands_the_gil_over_after_half_a_millisecond(restored_collector: None) -> None:
    interpreter.settle()
    assert sys.getswitchinterval() == pytest.approx(0.0005)


def test_cyclic_garbage_is_still_collected(restored_collector: None) -> None:
    interpreter.settle()
    collected: list[str] = []

    class Node:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            collected.append("node")

    Node()
    assert collected == []  # unreachable, but in a cycle: only the collector frees it
    # Containers that stay alive count towards a young collection (freed ones are subtracted again).
    alive = [[] for _ in range(interpreter.YOUNG_THRESHOLD + 1)]
    assert collected == ["node"]
    del alive


def test_what_settling_changed_is_put_back_after_a_restoring_block() -> None:
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    with interpreter.restored_on_exit():
        interpreter.settle()
    assert gc.get_freeze_count() == 0
    assert (gc.get_threshold(), sys.getswitchinterval()) == (threshold, interval)
