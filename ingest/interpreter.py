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
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator

YOUNG_THRESHOLD = 50_000
SWITCH_INTERVAL_S = 0.0005


def settle() -> None:
    """Freeze what exists now, make young collections rarer and hand the GIL over sooner (see above)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


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
