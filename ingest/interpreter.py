"""The interpreter's settings in each of the service's processes (`parkwatch run` and its ingest worker),
applied once the process has built what it runs; the benchmark applies them too where it runs parts of the
service in its own process.

Collector:
- What is built by then (~100,000 objects: modules, schemas, the service) lives as long as the process:
  it is frozen, out of the cyclic collector's way, so a full collection, which stops every thread, walks
  only what was made since.
- The youngest generation is collected after 50,000 new container objects instead of 700. The service
  allocates in bursts of batches (a drained batch of 5,000 points is some 50,000 dicts, tuples and
  points), nearly all freed by reference counting; at 700 the collector walked each batch over and over.
  The benchmark's spool drain went from 50,577 to 57,031 readings/s (single runs). Cyclic garbage (exceptions with
  their tracebacks, mostly) is still collected, after 50,000 allocations rather than 700.

Switch interval (how long a thread may keep the GIL while another waits for it): 0.5 ms instead of 5 ms.
A thread that gives up the GIL for I/O (every SQLite statement, fsync, socket write) must wait to get it back
while a busy thread holds it, up to the switch interval each time. The path of an alert gives it up some
twenty times (the spool commit, the hand-over to the service, the alert's transaction, the webhook), and
while the drainer read and encoded a batch of 5,000 points (60 to 120 ms of Python every second under the
benchmark's live load) each of those waits took the full 5 ms: every crossing that met a drained batch
was notified 60 to 130 ms late (traced per stage, 2026-12-03). At 0.5 ms the alert latency's p99 went from
96 - 129 ms to 45 ms, and the ingest rate did not drop (single runs; the README has the figures).

C heap (glibc's malloc, where the C library is glibc; elsewhere nothing changes):
- At most two arenas (`MALLOC_ARENAS`) instead of up to eight per core: each thread that met contention got
  an arena of its own, and memory freed in one is reused only by the threads on it.
- Blocks of 128 KiB and more always mapped on their own (`MMAP_THRESHOLD`), and unmapped when freed. By
  default glibc raises that threshold to the size of each such block freed, up to 32 MiB: after the first
  drained batch the drainer's request bodies (about 1.2 MB each) came from the arenas, and left holes there.
- In the benchmark's memory part (6 simulated hours, the service's process), the free memory glibc held went
  from 5.1 MB at 0.56 h to 9.9 MB at 6 h by default, and stayed at 0.6 - 1.3 MB with these settings. Python's
  small objects (`pymalloc`, 1 MiB arenas of its own) are not affected.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import platform
import sys
from collections.abc import Iterator
from typing import Any

YOUNG_THRESHOLD = 50_000
SWITCH_INTERVAL_S = 0.0005
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed
_M_ARENA_MAX = -8  # mallopt's parameter numbers (glibc's malloc.h)
_M_MMAP_THRESHOLD = -3


def settle() -> None:
    """Freeze what exists now, make young collections rarer, hand the GIL over sooner and keep the C heap
    compact (see above)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    tune_malloc()


def tune_malloc() -> bool:
    """Apply `MALLOC_ARENAS` and `MMAP_THRESHOLD` where the C library is glibc; whether it was applied. The
    settings last for the process (the environment's MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_ do the same
    for a process that is not the service's)."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_ARENA_MAX, MALLOC_ARENAS) == 1 and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def c_heap() -> dict[str, int] | None:
    """glibc's heap of this process in bytes (mallinfo2, all arenas): `used` by live blocks, `free` inside
    the arenas and not given back to the system, `mapped` in blocks mapped on their own; None where the C
    library is not glibc (2.33 or later). For the benchmark and the tests, which see the settings' effect."""
    mallinfo2 = _glibc_function("mallinfo2")
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"used": info.uordblks, "free": info.fordblks, "mapped": info.hblkhd}


def _glibc_function(name: str) -> Any:
    """A function of the C library this process runs on, where that is glibc; else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def restored_on_exit() -> Iterator[None]:
    """Put back what `settle` changes when the block ends (the heap unfrozen), for a process that settles
    only for a while: the benchmark's drain, the tests."""
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)
