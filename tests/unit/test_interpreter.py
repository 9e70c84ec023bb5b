"""The interpreter settings of the service's processes: start-up heap frozen, young collections rarer, the GIL
handed over sooner, the C heap kept compact."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the C heap settings are glibc's")


_PROBE = """
import sys
from ingest import interpreter

if sys.argv[1] == "tuned":
    assert interpreter.tune_malloc()
larger = bytearray(8 << 20)
del larger  # by default glibc now serves blocks up to 8 MiB from its arenas, and keeps them there
before = interpreter.c_heap()["mapped"]
block = bytearray(1 << 20)
print(interpreter.c_heap()["mapped"] - before)
"""


def _mapped_growth(mode: str) -> int:
    """Bytes glibc mapped on their own for a 1 MiB block after an 8 MiB one was freed, in a fresh process
    (in this one, earlier tests leave free blocks in the arenas that malloc would take first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's defaults, whatever ours
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2], env=env)
    return int(done.stdout)


@glibc_only
def test_a_large_block_is_mapped_on_its_own_even_after_a_larger_one_was_freed() -> None:
    assert _mapped_growth("tuned") >= 1 << 20
    assert _mapped_growth("default") == 0  # glibc's own behaviour, which the settings change


def test_the_c_heap_is_left_alone_where_the_c_library_is_not_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda *args, **kwargs: ("", ""))
    assert interpreter.tune_malloc() is False
    assert interpreter.c_heap() is None
